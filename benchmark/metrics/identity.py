"""Optional identity similarity: ArcFace cosine between generated and ground-truth face crops.

Both crops are cut at the ground-truth face box (the split's boxes are square, 1.3x the landmark
box) and resized to 112x112; there is no landmark alignment, because the harness receives boxes,
not landmarks. The embedder is insightface's ArcFace (``buffalo_l/w600k_r50.onnx``) when insightface
and its weights are present; otherwise the metric is reported unavailable.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..weights import WeightsConfig
from .frame import WindowedFrameMetric, face_regions
from .networks import NetworkUnavailable

ARCFACE_SIZE = 112
# uint8 RGB crops (N, 112, 112, 3) -> embeddings (N, D)
Embedder = Callable[[np.ndarray], np.ndarray]


def face_crops(frames: torch.Tensor, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``uint8 (N, 112, 112, 3)`` crops of ``frames[i]`` at ``regions[i]`` (bilinear, antialiased)."""
    from torchvision.transforms.v2 import functional as tvF

    crops = []
    for frame, (x0, y0, x1, y1) in zip(frames, regions):
        crop = frame[y0:y1, x0:x1].permute(2, 0, 1)
        crops.append(tvF.resize(crop, [ARCFACE_SIZE, ARCFACE_SIZE], interpolation=tvF.InterpolationMode.BILINEAR, antialias=True))
    return torch.stack(crops).permute(0, 2, 3, 1).cpu().numpy()


class IdentitySimilarity(WindowedFrameMetric):
    """Cosine similarity of face embeddings per frame with a face box; frames without one are skipped."""

    def __init__(self, num_windows: int, embedder: Embedder, **kwargs) -> None:
        super().__init__(num_windows, **kwargs)
        self.embedder = embedder

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int, face_boxes: np.ndarray | None) -> None:
        height, width = generated.shape[1:3]
        regions = face_regions(face_boxes, len(generated), width, height)
        indices = [i for i, region in enumerate(regions) if region is not None]
        scores = [math.nan] * len(regions)
        if indices:
            boxes = [regions[i] for i in indices]
            gen_embeddings = np.asarray(self.embedder(face_crops(generated[indices], boxes)), dtype=np.float64)
            gt_embeddings = np.asarray(self.embedder(face_crops(ground_truth[indices], boxes)), dtype=np.float64)
            dots = (gen_embeddings * gt_embeddings).sum(axis=1)
            norms = np.linalg.norm(gen_embeddings, axis=1) * np.linalg.norm(gt_embeddings, axis=1)
            for i, dot, norm in zip(indices, dots, norms):
                scores[i] = float(dot / norm) if norm > 0 else math.nan
        self._add_scores(window, scores)


def build_arcface(weights: WeightsConfig) -> tuple[Embedder, str]:
    """insightface's ArcFace recogniser from the located ``buffalo_l`` pack (CPU or CUDA provider)."""
    try:
        from insightface.model_zoo import get_model
    except ImportError as exc:
        raise NetworkUnavailable("insightface is not installed: pip install 'everanimate-bench[face]'") from exc
    location = weights.locate("arcface")
    if not location.present:
        raise NetworkUnavailable(f"ArcFace weights not found ({location.missing}): {weights.how_to_fix('arcface')}")
    model_path = location.path / "w600k_r50.onnx"
    recogniser = get_model(str(model_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    recogniser.prepare(ctx_id=0)

    def embed(crops_rgb: np.ndarray) -> np.ndarray:
        return recogniser.get_feat([np.ascontiguousarray(crop[..., ::-1]) for crop in crops_rgb])

    return embed, f"insightface ArcFace {model_path}"
