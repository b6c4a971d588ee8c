"""EverAnimate on the shared Wan-Animate backbone: the thin adapter the registry names.

The method itself (memory, restorative flow matching, the rollout) is in :mod:`everanimate`; this class
only loads the backbone and the LoRA, and hands each chunk's controls to
:func:`everanimate.inference.generate_chunk`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from benchmark.protocol import Protocol

from .base import ChunkControls, ChunkMethod, ClipContext, State
from .wan.backbone import WanBackbone
from .wan.method import WanMethod

#: LoRAs trained by this project for the synthetic preset, by variant (``everanimate.train.variant_name``).
SHIPPED_LORAS = Path(__file__).resolve().parents[1] / "everanimate" / "weights" / "synthetic"
#: ``stage1``/``stage2``, then the ablation variants: ``-release`` (the release's layout) and
#: ``-image-carry`` (without PLP).
SHIPPED_NAME = re.compile(r"stage[12](-release)?(-image-carry)?")


def shipped_loras() -> list[str]:
    return sorted(path.parent.name for path in SHIPPED_LORAS.glob("*/lora.json") if SHIPPED_NAME.fullmatch(path.parent.name))


class EverAnimate(WanMethod, ChunkMethod):
    """Options: ``preset`` and ``weights`` (the backbone, as for ``wan-animate``); ``lora``: ``stage2``
    (the full method, default), ``stage1`` (memory adaptation only: no restorative flow matching),
    another shipped variant (``stage1-release``, ``stage2-image-carry``), ``none`` (the base model) or
    a LoRA folder; ``layout`` (``paper`` or ``release``), ``carry`` (``latent``: PLP; ``image``: the
    ablation without PLP, Wan-Animate's carry of one frame; ``none``: no motion memory, a control),
    ``identity_frames`` (K) and
    ``motion_latents`` (r), all by default the LoRA's; ``steps`` (default: the protocol's), ``shift``
    (sampler time shift, default: the LoRA's, 5). ``backbone=`` injects a backbone (tests)."""

    name = "everanimate"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        preset: str = "synthetic",
        weights: str | Path | None = None,
        lora: str = "stage2",
        layout: str | None = None,
        carry: str | None = None,
        identity_frames: int | None = None,
        motion_latents: int | None = None,
        steps: int | None = None,
        shift: float | None = None,
        prompt: str | None = None,
        backbone: WanBackbone | None = None,
    ):
        from everanimate.config import CARRY_OVERLAP, EverAnimateConfig
        from everanimate.lora import read_lora

        config, self._lora_tensors, self.lora_sha256 = EverAnimateConfig(), None, None
        if lora != "none":
            shipped = SHIPPED_NAME.fullmatch(lora) is not None
            if shipped and preset != "synthetic" and backbone is None:
                raise ValueError(f"lora={lora} names a LoRA trained for the synthetic preset; give lora=PATH for preset {preset!r}")
            folder = SHIPPED_LORAS / lora if shipped else Path(lora)
            if shipped and not (folder / "lora.json").is_file():
                raise ValueError(
                    f"lora={lora}: no such LoRA is shipped in {SHIPPED_LORAS}; its training command is in docs/everanimate.md "
                    f"(shipped: {', '.join(shipped_loras() + ['none'])}, or give lora=PATH)"
                )
            self._lora_tensors, config, _ = read_lora(folder)
            self.lora_sha256 = hashlib.sha256((folder / "lora.safetensors").read_bytes()).hexdigest()[:16]
        overrides = {"layout": layout, "carry": carry, "identity_frames": identity_frames, "motion_latents": motion_latents, "sampling_shift": shift}
        if carry is not None and carry != config.carry:
            overrides["overlap_frames"] = CARRY_OVERLAP.get(carry)
        self.config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        given = {"layout": layout, "carry": carry, "identity_frames": identity_frames, "motion_latents": motion_latents, "shift": shift}
        super().__init__(device, preset, weights, backbone, prompt, lora=lora, steps=steps, **{k: v for k, v in given.items() if v is not None})
        self.steps = steps
        self._lora_attached = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "lora_sha256": self.lora_sha256, "config": self.config.to_dict()}

    @property
    def backbone(self) -> WanBackbone:
        """The backbone with the LoRA attached and merged into the base weights, on first use."""
        backbone = self._holder.backbone
        if self._lora_tensors is not None and not self._lora_attached:
            from everanimate.lora import attach_lora, merge_lora

            attach_lora(backbone, self._lora_tensors, self.config)
            merge_lora(backbone.transformer)
            self._lora_attached = True
        return backbone

    def carry_over_frames(self, protocol: Protocol) -> int:
        return self.config.overlap_frames

    def start(self, clip: ClipContext) -> State:
        from everanimate.inference import start_state

        backbone = self.backbone
        backbone.latent_size(clip.height, clip.width)
        # The references are an input of the clip, given again by start() on resume.
        self._references = clip.references
        self._clip_id = clip.clip_id
        state: State = {**start_state(backbone, self.config, clip.references), "steps": self.sampling_steps(clip.protocol)}
        image_embeds = backbone.image_embedding(clip.references[0])
        if image_embeds is not None:
            state["image_embeds"] = image_embeds.float().cpu()
        return state

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        from everanimate.inference import generate_chunk

        return generate_chunk(
            self.backbone,
            self.config,
            state,
            self._references,
            controls.pose,
            controls.face,
            controls.generator,
            self._clip_id,
            steps=state["steps"],
            image_embeds=state.get("image_embeds"),
        )
