"""What the Wan-Animate transformer is conditioned on, built outside the model so that any latent memory
can go into the conditioning channels.

Layout of one chunk with ``T`` generated latent slots (diffusers 0.42.1 conventions):

- the transformer input is ``[noisy latent C | mask 4 | conditioning latent C]`` along channels over
  ``T + 1`` time slots; slot 0 holds the reference latent (the persistent sink) with mask 1;
- slots ``1..T`` of the conditioning hold whatever memory the caller chooses: Wan-Animate puts the
  re-encoded tail of the previous chunk there (:func:`guided_frames_mask`), EverAnimate puts latent
  slices of the previous chunk, encoded reference views and a null pad (:func:`concat_memory`);
- the 4 mask channels of a slot are the per-frame masks of the 4 video frames that slot covers
  (the first slot covers one frame, repeated 4 times).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Frames per latent slot of the causal VAE, which is also the number of mask channels.
TEMPORAL_FACTOR = 4
MASK_CHANNELS = TEMPORAL_FACTOR


def latent_frames(num_frames: int) -> int:
    """Latent slots of a ``num_frames`` video under the causal 4x VAE: ``1 + (T - 1) / 4``."""
    if num_frames < 1 or (num_frames - 1) % TEMPORAL_FACTOR:
        raise ValueError(f"the causal VAE needs 4k+1 frames, got {num_frames}")
    return 1 + (num_frames - 1) // TEMPORAL_FACTOR


def video_frames(num_latents: int) -> int:
    """Frames decoded from ``num_latents`` latent slots: ``4 (T - 1) + 1``."""
    return TEMPORAL_FACTOR * (num_latents - 1) + 1


@dataclass
class ChunkConditioning:
    """Everything one chunk's denoising is conditioned on. ``T`` is the number of generated slots.

    ``latent``: ``(B, C, T + 1, h, w)``, slot 0 the reference. ``mask``: ``(B, 4, T + 1, h, w)`` in {0, 1}.
    ``pose_latent``: ``(B, C, T, h, w)``, the normalised VAE latent of the pose video.
    ``face_pixels``: ``(B, 3, 4 (T - 1) + 1, S, S)`` face crops in [-1, 1], ``S`` the motion-encoder size.
    ``text_embeds`` / ``image_embeds``: ``(B, L, D)`` or None for the backbone's fixed embeddings.
    """

    latent: torch.Tensor
    mask: torch.Tensor
    pose_latent: torch.Tensor
    face_pixels: torch.Tensor
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None

    def __post_init__(self) -> None:
        batch, _, slots, height, width = self.latent.shape
        expected_mask = (batch, MASK_CHANNELS, slots, height, width)
        if tuple(self.mask.shape) != expected_mask:
            raise ValueError(f"mask has shape {tuple(self.mask.shape)}, expected {expected_mask}")
        if tuple(self.pose_latent.shape[2:]) != (slots - 1, height, width):
            raise ValueError(f"pose latent has shape {tuple(self.pose_latent.shape)}; it needs {slots - 1} slots of {height}x{width}")
        if self.face_pixels.shape[2] != video_frames(slots - 1):
            raise ValueError(f"face video has {self.face_pixels.shape[2]} frames, expected {video_frames(slots - 1)}")

    @property
    def num_latents(self) -> int:
        """Generated slots ``T`` (the reference slot excluded)."""
        return int(self.latent.shape[2]) - 1

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> "ChunkConditioning":
        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device=device, dtype=dtype or tensor.dtype)

        return ChunkConditioning(*(move(t) for t in (self.latent, self.mask, self.pose_latent, self.face_pixels, self.text_embeds, self.image_embeds)))


def frame_mask_to_slot_mask(frame_mask: torch.Tensor) -> torch.Tensor:
    """Fold a per-frame mask ``(B, 1, 4 (T - 1) + 1, h, w)`` into the transformer's ``(B, 4, T, h, w)``:
    the first frame is repeated 4 times so that every slot owns 4 frames."""
    batch, _, frames, height, width = frame_mask.shape
    slots = latent_frames(frames)
    first = frame_mask[:, :, :1].repeat_interleave(TEMPORAL_FACTOR, dim=2)
    padded = torch.cat([first, frame_mask[:, :, 1:]], dim=2)
    return padded.reshape(batch, slots, TEMPORAL_FACTOR, height, width).transpose(1, 2).contiguous()


def guided_frames_mask(num_latents: int, guided_frames: int, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """Wan-Animate's temporal-guidance mask for ``num_latents`` slots: 1 on the first ``guided_frames``
    video frames (the re-encoded tail of the previous chunk), 0 elsewhere."""
    frame_mask = torch.zeros(batch, 1, video_frames(num_latents), height, width)
    frame_mask[:, :, :guided_frames] = 1.0
    return frame_mask_to_slot_mask(frame_mask)


def memory_slot_mask(num_latents: int, memory_slots: int, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """Mask 1 on all 4 channels of the first ``memory_slots`` slots: whole latent slots of memory."""
    mask = torch.zeros(batch, MASK_CHANNELS, num_latents, height, width)
    mask[:, :, :memory_slots] = 1.0
    return mask


def concat_memory(memories: list[torch.Tensor], num_latents: int, pad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper Eq. (2), ``M_ctx = Concat_t(M_mot, M_id, X_pad)``: latent memories ``(B, C, m_i, h, w)``
    placed one after another from slot 1, then a null pad up to ``num_latents`` slots.

    ``pad`` is one null slot ``(B, C, 1, h, w)`` (zeros when None). Returns the slot latents
    ``(B, C, num_latents, h, w)`` and their mask (1 on memory slots, 0 on the pad).
    """
    if not memories:
        raise ValueError("concat_memory needs at least one memory block")
    batch, channels, _, height, width = memories[0].shape
    memory = torch.cat(memories, dim=2)
    used = memory.shape[2]
    if used > num_latents:
        raise ValueError(f"{used} memory slots do not fit in {num_latents} latent slots")
    if pad is None:
        pad = memory.new_zeros(batch, channels, 1, height, width)
    filler = pad.to(memory).expand(batch, channels, num_latents - used, height, width)
    slots = torch.cat([memory, filler], dim=2)
    mask = memory_slot_mask(num_latents, used, height, width, batch).to(memory)
    return slots, mask


def with_reference_slot(reference_latent: torch.Tensor, slot_latent: torch.Tensor, slot_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend the reference latent ``(B, C, 1, h, w)`` as slot 0 (mask 1) to the slot conditioning."""
    if reference_latent.shape[2] != 1:
        raise ValueError(f"the reference is one latent slot, got {reference_latent.shape[2]}")
    batch, _, _, height, width = reference_latent.shape
    reference_mask = torch.ones(batch, MASK_CHANNELS, 1, height, width, dtype=slot_mask.dtype, device=slot_mask.device)
    latent = torch.cat([reference_latent.to(slot_latent), slot_latent], dim=2)
    mask = torch.cat([reference_mask, slot_mask], dim=2)
    return latent, mask


def transformer_input(noisy_latent: torch.Tensor, mask: torch.Tensor, conditioning_latent: torch.Tensor) -> torch.Tensor:
    """Paper Eq. (3)'s ``H_t = Concat_ch(X_t, M_ctx)`` in diffusers' channel order
    ``[noisy C | mask 4 | conditioning C]`` (the pose is added inside the model after patch embedding)."""
    if noisy_latent.shape[2:] != conditioning_latent.shape[2:]:
        raise ValueError(f"noisy latent {tuple(noisy_latent.shape)} and conditioning {tuple(conditioning_latent.shape)} differ in T+1, h, w")
    dtype = noisy_latent.dtype
    return torch.cat([noisy_latent, mask.to(dtype), conditioning_latent.to(dtype)], dim=1)
