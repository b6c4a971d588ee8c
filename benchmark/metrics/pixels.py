"""The one pixel convention at the metric boundary, and conversions to what each metric needs.

Frames arrive as ``uint8`` RGB ``(B, H, W, 3)``. Float frames in ``[0, 1]`` are accepted and first
quantised to the nearest ``uint8`` level, so a float frame equal to ``uint8 / 255`` scores exactly
like the ``uint8`` frame it came from.
"""

from __future__ import annotations

import torch


def as_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 (B, H, W, 3)`` from ``uint8`` or float-in-``[0, 1]`` frames; raises ``ValueError``
    for another layout, NaN, or values outside ``[0, 1]``."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (B, H, W, 3) RGB, got shape {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        raise ValueError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")
    if frames.numel() and (torch.isnan(frames).any() or frames.min() < 0 or frames.max() > 1):
        raise ValueError("float frames must be finite and in [0, 1]")
    return (frames.to(torch.float32) * 255).round_().to(torch.uint8)


def to_unit_float(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``uint8 (B, H, W, 3)`` -> ``(B, 3, H, W)`` in ``[0, 1]`` (``x / 255``, like torchvision's
    ``ToTensor`` on a decoded PNG, which is what pytorch-fid and lpips see)."""
    return frames.permute(0, 3, 1, 2).to(dtype).div_(255)


def to_signed_float(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 (B, H, W, 3)`` -> ``(B, 3, H, W)`` in ``[-1, 1]`` (``2 * (x / 255) - 1``: LPIPS's
    ``normalize=True`` arithmetic)."""
    return to_unit_float(frames).mul_(2).sub_(1)
