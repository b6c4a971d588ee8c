"""Plumbing shared by the methods built on the Wan backbone: choosing the backbone and fitting chunk
lengths to the causal VAE."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from .backbone import LatentCodec, WanBackbone
from .conditioning import TEMPORAL_FACTOR
from .presets import PRESETS, MissingWeightsError, check_weights_folder, load_backbone, load_codec


class BackboneHolder:
    """Loads a preset's backbone on first use, after checking at construction that its weights exist,
    so a benchmark run fails before its first clip rather than silently using random weights.

    ``backbone=`` injects an already built backbone (tests use ``tiny_random_backbone()``);
    ``codec_only`` is for methods that only use the VAE."""

    def __init__(
        self,
        preset: str,
        weights: str | Path | None,
        device: torch.device,
        backbone: WanBackbone | None = None,
        prompt: str | None = None,
        codec_only: bool = False,
    ):
        self.preset, self.weights, self.device, self.prompt = preset, weights, device, prompt
        self.parts = ("vae",) if codec_only else ("vae", "transformer")
        self.injected = backbone is not None
        self._backbone = backbone
        if backbone is None:
            if preset not in PRESETS:
                raise ValueError(f"unknown backbone preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
            if PRESETS[preset].test_only:
                raise ValueError(f"preset {preset!r} is for tests only: pass backbone=tiny_random_backbone() instead")
            source = str(weights) if weights is not None else PRESETS[preset].source
            if preset == "synthetic" or weights is not None:
                check_weights_folder(source, preset, parts=self.parts)

        self._codec: LatentCodec | None = backbone.codec if backbone is not None else None

    @property
    def backbone(self) -> WanBackbone:
        if self._backbone is None:
            self._backbone = load_backbone(self.preset, self.weights, self.device, self.prompt)
            self._codec = self._backbone.codec
        return self._backbone

    def weights_digest(self) -> str | None:
        """SHA-256 (first 16 hex digits) over the config and weight files the method loads from a local
        folder; None for an injected backbone or a hub id."""
        if self.injected:
            return None
        source = Path(str(self.weights) if self.weights is not None else PRESETS[self.preset].source)
        if not source.is_dir():
            return None
        digest = hashlib.sha256()
        for part in self.parts:
            for path in sorted((source / part).glob("*")):
                if path.suffix in (".json", ".safetensors") and path.name != "training_history.json":
                    digest.update(f"{part}/{path.name}\n".encode())
                    digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def describe(self, described: dict[str, Any]) -> dict[str, Any]:
        """A method's description with the fingerprint of the weights it runs."""
        return {**described, "weights_sha256": self.weights_digest()}

    @property
    def codec(self) -> LatentCodec:
        """Only the VAE: loads no transformer unless the backbone was loaded already."""
        if self._codec is None:
            self._codec = load_codec(self.preset, self.weights, self.device)
        return self._codec


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
