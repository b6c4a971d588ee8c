"""Inference: the latent rollout of Sec. 4.3, one chunk at a time.

Every chunk is sampled from its context memory M_ctx (Eq. 2-3). Its last ``r`` latent slices become
the next chunk's motion memory M_mot (Eq. 1) as they are: generated frames are decoded for the
output only, never encoded again. The identity memory M_id holds K latents: the user's ``m``
references, repeated to K for the first chunk, then completed with ``K - m`` frames of the first
generated chunk drawn from the clip id (the only generated frames the VAE ever encodes) and fixed for
every later chunk.

The state between chunks is a flat dict of tensors (what the runner saves after every chunk, so a
resumed run continues exactly): ``reference_latent``, ``identity`` and, after the first chunk,
``motion``.

The ablation without PLP (``carry="image"``) carries the last ``overlap_frames`` decoded frames
instead (``carry_frames``), encoded again into the next chunk's conditioning as Wan-Animate does, and
has no identity memory.
"""

from __future__ import annotations

from typing import Any

import torch

from methods.wan.conditioning import latent_frames
from methods.wan.runtime import pad_frames, vae_length

from .config import EverAnimateConfig
from .memory import (
    chunk_layout,
    first_chunk_identity_frames,
    identity_memory,
    image_carry_layout,
    inference_identity_frames,
    motion_memory,
    sample_layout,
)


def start_state(backbone: Any, config: EverAnimateConfig, references: torch.Tensor) -> dict[str, Any]:
    """The state before the first chunk: the reference latent (the backbone's slot 0) and the first
    chunk's identity memory, the ``m`` references repeated to K."""
    if config.carry == "image":
        return {"reference_latent": backbone.encode(references[:1]).cpu()}
    if len(references) > config.identity_frames:
        raise ValueError(f"{len(references)} references do not fit in an identity memory of K={config.identity_frames}")
    return {
        "reference_latent": backbone.encode(references[:1]).cpu(),
        "identity": identity_memory(first_chunk_identity_frames(references, config.identity_frames), backbone.encode).cpu(),
        "identity_complete": len(references) == config.identity_frames,
    }


@torch.no_grad()
def generate_chunk(
    backbone: Any,
    config: EverAnimateConfig,
    state: dict[str, Any],
    references: torch.Tensor,
    pose: torch.Tensor,
    face: torch.Tensor,
    generator: torch.Generator,
    clip_id: str,
    steps: int,
    image_embeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """One chunk: ``uint8 (L, H, W, 3)`` frames aligned with ``pose``/``face`` (``L`` frames each) and the
    next state. The pose video is encoded as for every Wan method; nothing generated is encoded except
    the ``K - m`` identity frames after the first chunk (and, with ``carry="image"``, the carried frames)."""
    length = len(pose)
    padded = vae_length(length)
    num_latents = latent_frames(padded)
    pose_latent = backbone.encode(pad_frames(pose, padded))
    face_pixels = backbone.face_pixels(pad_frames(face, padded))
    next_state = dict(state)
    if config.carry == "image":
        slot_latent, slot_mask = backbone.temporal_guidance(state.get("carry_frames"), num_latents, pose.shape[1], pose.shape[2])
        layout = image_carry_layout(state["reference_latent"].to(backbone.device), slot_latent, slot_mask)
    else:
        motion = state.get("motion") if config.carry == "latent" else None
        layout = chunk_layout(config, state["reference_latent"].to(backbone.device), state["identity"].to(backbone.device), num_latents, None if motion is None else motion.to(backbone.device))
    latent = sample_layout(backbone, layout, pose_latent, face_pixels, generator, steps=steps, shift=config.sampling_shift, image_embeds=image_embeds)
    frames = backbone.decode(latent)[:length]
    if config.carry == "image":
        next_state["carry_frames"] = frames[length - config.overlap_frames :].clone()
        return frames, next_state
    next_state["motion"] = motion_memory(latent, config.motion_latents).cpu()
    if not state["identity_complete"]:
        chosen = inference_identity_frames(references, frames, config.identity_frames, clip_id)
        next_state["identity"] = identity_memory(chosen, backbone.encode).cpu()
        next_state["identity_complete"] = True
    return frames, next_state
