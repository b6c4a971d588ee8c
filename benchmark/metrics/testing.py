"""Stand-in networks and synthetic clips for tests and performance runs (no weights, no files).

Numbers computed with these are checks of the machinery, never benchmark results.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .networks import seeded


class PooledFeatures(nn.Module):
    """A cheap FID stand-in: ``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, dim)`` by average-pooling to a
    ``grid x grid`` map and a fixed random projection. Per-sample arithmetic only, so a sample's
    features do not depend on the batch it is in."""

    def __init__(self, dim: int = 16, grid: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.grid = grid
        self.feature_dim = dim
        with seeded(seed):
            projection = torch.randn(3 * grid * grid, dim) / (3 * grid * grid) ** 0.5
        self.register_buffer("projection", projection)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(images, self.grid).flatten(1)
        return torch.relu(pooled @ self.projection + 0.1) * 4


def tiny_videomae(num_frames: int = 4, image_size: int = 32, hidden_size: int = 32, seed: int = 0) -> nn.Module:
    """A randomly initialised one-layer ``VideoMAEModel`` that builds offline in milliseconds."""
    from transformers import VideoMAEConfig, VideoMAEModel

    config = VideoMAEConfig(
        image_size=image_size,
        patch_size=16,
        num_frames=num_frames,
        tubelet_size=2,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
    )
    with seeded(seed):
        return VideoMAEModel(config).eval()


def clip_seed(clip_id: str) -> int:
    return int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:4], "little")


def synthetic_clip(clip_id: str, num_frames: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Ground truth, a drifting "generated" copy and face boxes, all determined by ``clip_id``.

    The ground truth is a smooth moving pattern with a moving square (the "face"); the generated
    video adds noise and a colour shift that grow with time, so every metric drifts. Every 7th
    frame has no face box.
    """
    rng = np.random.default_rng(clip_seed(clip_id))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    channels = [127 + 90 * np.sin(xx / (7 + 3 * c) + yy / (11 + c) + phase[c] + t / (9 + c)) for c in range(3)]
    truth = np.stack(channels, -1)
    corners, side = _square_corners(phase[0], num_frames, width, height)
    boxes = np.full((num_frames, 4), np.nan)
    colour = rng.uniform(30, 220, 3)
    for i, (x0, y0) in enumerate(corners):
        truth[i, max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = colour
        if i % 7 != 6:
            boxes[i] = (x0 - 0.5, y0 + 0.25, x0 + side + 0.5, y0 + side)
    growth = (np.arange(num_frames, dtype=np.float32) / max(num_frames, 1))[:, None, None, None]
    noise = rng.normal(0, 1, truth.shape).astype(np.float32) * (4 + 20 * growth)
    generated = truth + noise + 25 * growth * np.array([1, -1, 0.5], np.float32)
    to_uint8 = lambda a: torch.from_numpy(np.clip(np.rint(a), 0, 255).astype(np.uint8))  # noqa: E731
    return to_uint8(generated), to_uint8(truth), boxes


def _square_corners(phase: float, num_frames: int, width: int, height: int) -> tuple[list[tuple[int, int]], int]:
    """Top-left corners (x, y) of :func:`synthetic_clip`'s moving square per frame, and its side."""
    side = max(8, min(width, height) // 4)
    centre_x = (width / 2 + width / 4 * np.sin(np.arange(num_frames) / 13 + phase)).astype(int)
    centre_y = (height / 2 + height / 5 * np.cos(np.arange(num_frames) / 17)).astype(int)
    return [(int(x) - side // 2, int(y) - side // 2) for x, y in zip(centre_x, centre_y)], side


def synthetic_person_masks(clip_id: str, num_frames: int, width: int, height: int) -> np.ndarray:
    """Exact person masks ``bool (T, H, W)`` of :func:`synthetic_clip`: its moving square (the "person")."""
    phase = np.random.default_rng(clip_seed(clip_id)).uniform(0, 2 * np.pi, 3)[0]
    corners, side = _square_corners(phase, num_frames, width, height)
    masks = np.zeros((num_frames, height, width), dtype=bool)
    for mask, (x0, y0) in zip(masks, corners):
        mask[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = True
    return masks


def synthetic_person_regions(clip_id: str, num_frames: int, width: int, height: int):
    """:func:`synthetic_person_masks` as :class:`~.regions.PersonRegions`."""
    from .regions import PersonRegions

    return PersonRegions.from_masks(synthetic_person_masks(clip_id, num_frames, width, height))


def batches(frames: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """``frames`` as an iterator of ``size``-frame batches (the last may be shorter)."""
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


class FramePool:
    """Endless synthetic 480p-style video without holding it: frame ``i`` is pool frame ``i % n``
    rolled by ``i // n`` pixels, so consecutive cycles differ and nothing repeats exactly."""

    def __init__(self, frames: torch.Tensor) -> None:
        self.frames = frames

    def iterate(self, num_frames: int, batch_size: int) -> Iterator[torch.Tensor]:
        count = len(self.frames)
        for start in range(0, num_frames, batch_size):
            indices = range(start, min(start + batch_size, num_frames))
            yield torch.stack([torch.roll(self.frames[i % count], shifts=i // count, dims=1) for i in indices])


class StubFaceEmbedder:
    """An ArcFace stand-in: ``uint8 (N, 112, 112, 3)`` crops -> ``(N, dim)`` pooled projections."""

    def __init__(self, dim: int = 16, seed: int = 0) -> None:
        self.features = PooledFeatures(dim=dim, seed=seed)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return self.features(images).double().numpy()


def stand_in_networks(vmae_window_frames: int, seed: int = 0) -> dict[str, object]:
    """Every metric network as a small seeded stand-in: LPIPS AlexNet with random backbone (real
    heads), a pooled-projection FID extractor, a one-layer VideoMAE and a stub face embedder."""
    from .networks import lpips_with_random_backbone

    return {
        "lpips": lpips_with_random_backbone("alex", seed=seed),
        "inception": PooledFeatures(seed=seed),
        "videomae": tiny_videomae(num_frames=vmae_window_frames, seed=seed),
        "arcface": StubFaceEmbedder(seed=seed),
    }
