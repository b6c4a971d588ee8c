"""Training and evaluation data for the synthetic preset: whole clips of a split held in memory as
uint8 tensors, read once from the split's videos (the same files the benchmark scores against) and
cached next to the training run, keyed by the split's content hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from benchmark.files import temporary_sibling


@dataclass
class ClipArrays:
    """One clip: ``video`` and ``pose`` ``uint8 (T, H, W, 3)``, ``face`` ``uint8 (T, S, S, 3)``."""

    clip_id: str
    video: torch.Tensor
    pose: torch.Tensor
    face: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])


def load_clips(split_name: str, cache_dir: str | Path | None = None, max_clips: int | None = None, frames: tuple[int, int] | None = None) -> list[ClipArrays]:
    """All (or the first ``max_clips``) clips of a split, frames ``[start, stop)`` of each when given."""
    from benchmark.splits.registry import resolve_split
    from benchmark.video import read_frames

    split = resolve_split(split_name)
    records = split.clips[:max_clips] if max_clips else split.clips
    start, stop = frames if frames is not None else (0, None)
    tag = f"{split.name}-{split.content_hash}-{len(records)}-{start}-{stop}"
    cache = Path(cache_dir) / f"clips-{tag}.safetensors" if cache_dir is not None else None
    if cache is not None and cache.exists():
        tensors = load_file(str(cache))
        return [ClipArrays(r.id, tensors[f"{r.id}/video"], tensors[f"{r.id}/pose"], tensors[f"{r.id}/face"]) for r in records]
    clips = []
    for record in tqdm(records, desc=f"reading {split.name}", leave=False):
        read = {field: read_frames(split.path(record, field), start, stop, clip_id=record.id) for field in ("video", "pose_video", "face_video")}
        clips.append(ClipArrays(record.id, read["video"], read["pose_video"], read["face_video"]))
    if cache is not None:
        tensors = {f"{c.clip_id}/{name}": getattr(c, name).contiguous() for c in clips for name in ("video", "pose", "face")}
        with temporary_sibling(cache) as tmp:
            save_file(tensors, str(tmp))
    return clips


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 (..., T, H, W, 3)`` -> float ``(..., 3, T, H, W)`` in [-1, 1]."""
    return frames.movedim(-1, -4).float() / 127.5 - 1.0


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of float videos ``(B, 3, T, H, W)`` in [-1, 1] after uint8 quantisation: the mean
    over frames of the benchmark's per-frame PSNR (MAX 255, capped at 100 dB,
    :func:`benchmark.metrics.frame.psnr_per_frame`), so training logs match the scored numbers."""
    from benchmark.metrics.frame import mean_psnr

    def frames(video: torch.Tensor) -> torch.Tensor:
        return quantise(video).to(torch.uint8).permute(0, 2, 3, 4, 1).flatten(0, 1)

    return mean_psnr(frames(reconstruction), frames(target), cap_db=100.0)


def quantise(video: torch.Tensor) -> torch.Tensor:
    """Float video in [-1, 1] -> the uint8 levels (as floats) its frames would be written with."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round()


def ssim(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM of float videos ``(B, 3, T, H, W)`` in [-1, 1] after uint8 quantisation, the mean over frames,
    with the benchmark's SSIM (:func:`benchmark.metrics.frame.ssim_per_frame`)."""
    from benchmark.metrics.frame import ssim_per_frame

    def frames(video: torch.Tensor) -> torch.Tensor:
        return (quantise(video) / 255.0).transpose(1, 2).flatten(0, 1)

    return float(ssim_per_frame(frames(reconstruction), frames(target)).mean())
