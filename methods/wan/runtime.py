"""Plumbing shared by the methods built on the Wan backbone: choosing the backbone and fitting chunk
lengths to the causal VAE."""

from __future__ import annotations

from pathlib import Path

import torch

from .backbone import WanBackbone
from .conditioning import TEMPORAL_FACTOR
from .presets import PRESETS, MissingWeightsError, _check_local_folder, load_backbone


class BackboneHolder:
    """Loads a preset's backbone on first use, after checking at construction that its weights exist,
    so a benchmark run fails before its first clip rather than silently using random weights.

    ``backbone=`` injects an already built backbone (tests use ``tiny_random_backbone()``)."""

    def __init__(self, preset: str, weights: str | Path | None, device: torch.device, backbone: WanBackbone | None = None, prompt: str | None = None):
        self.preset, self.weights, self.device, self.prompt = preset, weights, device, prompt
        self._backbone = backbone
        if backbone is None:
            if preset not in PRESETS:
                raise KeyError(f"unknown backbone preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
            if PRESETS[preset].test_only:
                raise ValueError(f"preset {preset!r} is for tests only: pass backbone=tiny_random_backbone() instead")
            source = str(weights) if weights is not None else PRESETS[preset].source
            if preset == "synthetic" or weights is not None:
                _check_local_folder(source, preset)

    @property
    def backbone(self) -> WanBackbone:
        if self._backbone is None:
            self._backbone = load_backbone(self.preset, self.weights, self.device, self.prompt)
        return self._backbone


def vae_length(num_frames: int) -> int:
    """Smallest ``4k + 1 >= num_frames``: the frame count the causal VAE can take."""
    extra = (num_frames - 1) % TEMPORAL_FACTOR
    return num_frames if extra == 0 else num_frames + TEMPORAL_FACTOR - extra


def pad_frames(frames: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last frame up to ``length`` frames (controls of chunks that are not ``4k + 1`` long)."""
    missing = length - frames.shape[0]
    if missing <= 0:
        return frames
    return torch.cat([frames, frames[-1:].expand(missing, *frames.shape[1:])], dim=0)


__all__ = ["BackboneHolder", "MissingWeightsError", "pad_frames", "vae_length"]
