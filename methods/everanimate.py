"""EverAnimate on the shared Wan-Animate backbone: the thin adapter the registry names.

The method itself (memory, restorative flow matching, the rollout) is in :mod:`everanimate`; this class
only loads the backbone and the LoRA, and hands each chunk's controls to
:func:`everanimate.inference.generate_chunk`.

Memory perturbation (the recovery probe, :meth:`EverAnimate.perturb_memory`), by ``carry``:

- ``latent`` (PLP): the motion memory ``state["motion"]``, the last ``r`` latent slices of the previous
  chunk, goes through one decode, perturbation and encode (:func:`perturb_motion_latent`); with
  ``Perturbation.identity`` the identity memory ``state["identity"]`` too (:func:`perturb_identity_latent`).
  The motion slices are later slots of a causal VAE's latent, each 4 frames, so they are decoded and
  encoded behind a one-slot prefix that keeps them in later slots: decoded alone, the first slice
  would go through the first-frame path and come back as 1 frame, and encoding that frame gives a
  first-slot latent, a different kind of latent than the one the model carries. The prefix is the
  memory's own first slice, so the prefix frame is the moment just before the carried frames; it is
  perturbed with them (one draw for all frames) and dropped after encoding. Each identity slice is
  the encoding of one frame on its own, so it is decoded on its own and encoded again the same way.
- ``image``: the carried frames ``state["carry_frames"]``, before they are encoded, as for
  ``wan-animate``; there is no identity memory.
- ``none``: no motion memory, so the probe does not apply, unless ``Perturbation.identity`` asks for
  the identity memory, which this control still carries.

Strength 0 leaves carried frames unchanged and a latent memory changed only by the one round trip;
a probe at strength 0 measures what that round trip costs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from benchmark.protocol import Protocol

from .base import ChunkControls, ChunkMethod, ClipContext, MemoryNotApplicable, Perturbation, State, perturb_state_frames
from .wan.backbone import WanBackbone
from .wan.method import WanMethod

#: LoRAs trained by this project for the synthetic preset, by variant (``everanimate.train.variant_name``).
SHIPPED_LORAS = Path(__file__).resolve().parents[1] / "everanimate" / "weights" / "synthetic"
#: ``stage1``/``stage2``, then the ablation variants: ``-release`` (the release's layout) and
#: ``-image-carry`` (without PLP).
SHIPPED_NAME = re.compile(r"stage[12](-release)?(-image-carry)?")


def shipped_loras() -> list[str]:
    return sorted(path.parent.name for path in SHIPPED_LORAS.glob("*/lora.json") if SHIPPED_NAME.fullmatch(path.parent.name))


def perturb_motion_latent(backbone: WanBackbone, motion: torch.Tensor, perturbation: Perturbation) -> torch.Tensor:
    """The motion memory ``(1, C, r, h, w)`` (normalised latent slices that followed other slices in
    their chunk) decoded, perturbed in pixel space and encoded once: ``[m_0, m]`` decodes to
    ``1 + 4 r`` frames, the prefix frame and the ``4 r`` frames the memory stands for; all are perturbed
    with one draw, encoded to ``1 + r`` slices, and the prefix slice is dropped."""
    decoded = backbone.decode(torch.cat([motion[:, :, :1], motion], dim=2))
    encoded = backbone.encode(perturbation.apply(decoded))
    return encoded[:, :, 1:].to(motion.device, motion.dtype)


def perturb_identity_latent(backbone: WanBackbone, identity: torch.Tensor, perturbation: Perturbation) -> torch.Tensor:
    """The identity memory ``(1, C, K, h, w)``, K one-frame latents, each decoded on its own, the K
    frames perturbed with one draw, and each encoded on its own again (Eq. 1's ``E(I_k)``)."""
    from everanimate.memory import identity_memory

    frames = torch.cat([backbone.decode(identity[:, :, k : k + 1]) for k in range(identity.shape[2])])
    return identity_memory(perturbation.apply(frames), backbone.encode).to(identity.device, identity.dtype)


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
            if layout is not None and layout != config.layout:
                raise ValueError(
                    f"layout={layout} contradicts lora={lora}, which was trained with layout={config.layout}; "
                    f"drop layout= to run it with layout={config.layout}, or give a LoRA trained with layout={layout}"
                )
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

    def describe_memory(self, perturbation: Perturbation) -> str:
        carry, identity = self.config.carry, perturbation.identity
        if carry == "image":
            note = "; there is no identity memory with carry=image" if identity else ""
            return (
                f"the last {self.config.overlap_frames} decoded frame(s) of the previous chunk (carry_frames), perturbed before "
                f"they are encoded again (carry=image){note}"
            )
        identity_part = f"the identity memory (K={self.config.identity_frames} one-frame latents, each decoded, perturbed and encoded once)"
        if carry == "none":
            if not identity:
                raise MemoryNotApplicable("carry=none keeps no motion memory: every chunk is conditioned as a first chunk (pass --identity to perturb its identity memory)")
            return f"{identity_part}; carry=none keeps no motion memory"
        motion_part = (
            f"the motion memory (the last {self.config.motion_latents} latent slice(s) of the previous chunk, decoded behind a "
            "one-slice prefix, perturbed and encoded once)"
        )
        return f"{motion_part} and {identity_part}" if identity else f"{motion_part}; the identity memory is not perturbed"

    def perturb_memory(self, state: State, perturbation: Perturbation) -> State:
        self.describe_memory(perturbation)
        if self.config.carry == "image":
            return perturb_state_frames(state, "carry_frames", perturbation)
        perturbed = dict(state)
        if self.config.carry == "latent":
            if not isinstance(state.get("motion"), torch.Tensor):
                raise ValueError("the state holds no motion memory yet: perturb the memory after a chunk has been generated")
            perturbed["motion"] = perturb_motion_latent(self.backbone, state["motion"], perturbation)
        if perturbation.identity:
            perturbed["identity"] = perturb_identity_latent(self.backbone, state["identity"], perturbation)
        return perturbed

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
