"""Wan-Animate's long-video scheme: image-space carry-over with a persistent reference sink.

Every chunk gets the reference latent in slot 0 (the attention sink of paper Sec. 3). The last
``refert_num`` decoded frames of a chunk are re-encoded by the VAE as the temporal guidance of the next
chunk, which starts ``refert_num`` frames before the previous one ended: a VAE round trip per chunk,
the drift mechanism of the paper's Finding 1.

For the recovery probe, the memory is the carried frames: :meth:`WanAnimate.perturb_memory` perturbs
them before the next chunk encodes them; the reference latent (slot 0) is an input, not memory, and is
left alone. With ``refert_num=0`` nothing is carried and the probe does not apply.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.protocol import Protocol

from .base import ChunkControls, ChunkMethod, ClipContext, MemoryNotApplicable, Perturbation, State, perturb_state_frames
from .wan.backbone import WanBackbone
from .wan.conditioning import latent_frames
from .wan.method import WanMethod
from .wan.runtime import pad_frames, vae_length

#: Wan-Animate's choices, 1 and 5 carried frames, and 0: a control with no carried frame (every chunk
#: gets the blank guidance of a first chunk), which measures how much the output depends on the carry.
ALLOWED_REFERT = (0, 1, 5)


class WanAnimate(WanMethod, ChunkMethod):
    """Options: ``preset`` (``synthetic`` or ``wan2.2-animate-14b``), ``weights`` (local folder),
    ``steps`` (default: the protocol's sampling steps), ``refert_num`` (1 or 5 carried-over frames; 0: none, a control),
    ``shift`` (sampler time shift, default 5). ``backbone=`` injects a backbone (tests)."""

    name = "wan-animate"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        preset: str = "synthetic",
        weights: str | Path | None = None,
        steps: int | None = None,
        refert_num: int = 1,
        shift: float = 5.0,
        prompt: str | None = None,
        backbone: WanBackbone | None = None,
    ):
        if refert_num not in ALLOWED_REFERT:
            raise ValueError(f"refert_num must be one of {ALLOWED_REFERT} (Wan-Animate's 1 and 5, or 0 for no carry), got {refert_num}")
        super().__init__(device, preset, weights, backbone, prompt, steps=steps, refert_num=refert_num, shift=shift)
        self.refert_num = int(refert_num)
        self.steps = steps
        self.shift = float(shift)

    def carry_over_frames(self, protocol: Protocol) -> int:
        return self.refert_num

    def start(self, clip: ClipContext) -> State:
        backbone = self.backbone
        backbone.latent_size(clip.height, clip.width)
        if clip.protocol.chunk_frames <= self.refert_num:
            raise ValueError(f"chunks of {clip.protocol.chunk_frames} frames cannot carry {self.refert_num} frames over")
        reference = clip.references[0]
        state: State = {
            "reference_latent": backbone.encode(reference.unsqueeze(0)).cpu(),
            "steps": self.sampling_steps(clip.protocol),
            "height": clip.height,
            "width": clip.width,
        }
        image_embeds = backbone.image_embedding(reference)
        if image_embeds is not None:
            state["image_embeds"] = image_embeds.float().cpu()
        return state

    def describe_memory(self, perturbation: Perturbation) -> str:
        if self.refert_num == 0:
            raise MemoryNotApplicable("refert_num=0 carries nothing between chunks: every chunk gets a first chunk's blank temporal guidance")
        note = "; there is no identity memory" if perturbation.identity else ""
        return (
            f"the last {self.refert_num} decoded frame(s) of the previous chunk (carry_frames), perturbed before they are "
            f"encoded again as the temporal guidance; the reference latent in slot 0 is not perturbed{note}"
        )

    def perturb_memory(self, state: State, perturbation: Perturbation) -> State:
        self.describe_memory(perturbation)
        return perturb_state_frames(state, "carry_frames", perturbation)

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        backbone = self.backbone
        length = len(controls)
        padded = vae_length(length)
        num_latents = latent_frames(padded)
        guide = state.get("carry_frames") if controls.index > 0 and self.refert_num else None
        slot_latent, slot_mask = backbone.temporal_guidance(guide, num_latents, state["height"], state["width"])
        conditioning = backbone.chunk_conditioning(
            state["reference_latent"],
            slot_latent,
            slot_mask,
            pad_frames(controls.pose, padded),
            pad_frames(controls.face, padded),
            image_embeds=state.get("image_embeds"),
        )
        latent = backbone.sample(conditioning, controls.generator, steps=state["steps"], shift=self.shift)
        frames = backbone.decode(latent)[:length]
        next_state = dict(state)
        next_state["carry_frames"] = frames[length - self.refert_num :].clone()
        return frames, next_state
