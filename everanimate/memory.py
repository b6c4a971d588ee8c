"""Persistent Latent Propagation (paper Sec. 4.1, Eq. 1-3): the memory of one chunk and where it goes.

Latents are ``(B, C, T, h, w)``, normalised as the backbone's; frames are ``uint8 (T, H, W, 3)``.
Two layouts of a chunk with ``T`` generated latent slots, ``K`` identity latents and ``r`` motion latents:

``paper`` (Eq. 2-3): the backbone's own layout, ``1 + T`` slots.

==========  ===========  ==============  ===========  ==============
slot        0            1 .. r          r+1 .. r+K   r+K+1 .. T
==========  ===========  ==============  ===========  ==============
condition   reference    M_mot           M_id         X_pad (zeros)
mask        1            1 (0 if empty)  1            0
pose        none         the chunk's pose, slots 1 .. T
face        zero tokens  the chunk's face features
output      dropped      the chunk
==========  ===========  ==============  ===========  ==============

``release`` (vita-epfl/EverAnimate): the ``K`` anchors prepended as extra slots, ``K + T`` slots.

==========  ===========  ==============  ==============
slot        0 .. K-1     K .. K+r-1      K+r .. K+T-1
==========  ===========  ==============  ==============
condition   anchors      M_mot           zeros
mask        1            0               0
pose        none         the chunk's pose, slots K .. K+T-1
face        zero tokens  the chunk's face features
output      dropped      the chunk
==========  ===========  ==============  ==============

In both, the noisy channels hold the noised prepended latents (reference or anchors) in front of the
noised chunk; they are trained like the chunk and dropped before decoding. In the first chunk there is
no previous latent: M_mot is a zero block with mask 0, as Wan-Animate's blank guidance is unmasked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from methods.wan import flow
from methods.wan.conditioning import concat_memory, memory_slot_mask, transformer_input, with_reference_slot

from .config import EverAnimateConfig

# ---- Eq. 1: motion and identity memory ------------------------------------------------------------


def motion_memory(chunk_latent: torch.Tensor, r: int) -> torch.Tensor:
    """Eq. (1): ``M_mot = X^(1)[T_z - r + 1 : T_z]``, the last ``r`` latent slices of the previous
    chunk, passed on without decoding."""
    if not 1 <= r <= chunk_latent.shape[2]:
        raise ValueError(f"cannot keep the last {r} slices of a {chunk_latent.shape[2]}-slot latent")
    return chunk_latent[:, :, -r:]


def identity_affine(frames: torch.Tensor, generator: torch.Generator, scale_range: tuple[float, float], max_shift: float) -> torch.Tensor:
    """T_id of Eq. (1): one mild random rescale and translation shared by all frames, so the memory
    cannot tie generated content to the memory's pixel positions. Borders are replicated rather than
    filled, so the frame edge carries no cue either."""
    scale = scale_range[0] + (scale_range[1] - scale_range[0]) * float(torch.rand((), generator=generator))
    shift_x, shift_y = (max_shift * (2 * torch.rand(2, generator=generator) - 1)).tolist()
    # grid_sample reads the input at theta @ (x_out, y_out, 1) in [-1, 1] coordinates.
    theta = torch.tensor([[1 / scale, 0.0, -2 * shift_x / scale], [0.0, 1 / scale, -2 * shift_y / scale]])
    pixels = frames.permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta.expand(len(frames), 2, 3), list(pixels.shape), align_corners=False)
    moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return moved.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def training_identity_frames(context_frames: torch.Tensor, k: int, generator: torch.Generator, config: EverAnimateConfig) -> torch.Tensor:
    """Eq. (1) in training: ``{T_id(I_k)}`` with ``{I_k} = RandomSample(V^(1), K)``, K distinct frames
    of the context chunk in time order, augmented with probability ``identity_augment_probability``."""
    if k > len(context_frames):
        raise ValueError(f"cannot sample {k} identity frames from a {len(context_frames)}-frame chunk")
    picks = torch.randperm(len(context_frames), generator=generator)[:k].sort().values
    frames = context_frames[picks]
    if float(torch.rand((), generator=generator)) < config.identity_augment_probability:
        frames = identity_affine(frames, generator, config.identity_scale_range, config.identity_max_shift)
    return frames


def identity_memory(frames: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Eq. (1): ``M_id = {E(I_k)}``, each frame encoded on its own as a one-frame video (the causal
    VAE's first latent), stacked along time: ``(1, C, K, h, w)``."""
    return torch.cat([encode(frames[i : i + 1]) for i in range(len(frames))], dim=2)


def clip_seed(clip_id: str) -> int:
    """A seed from the clip id alone (SHA-256, stable across processes, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(clip_id.encode("utf-8")).digest()[:8], "big")


def inference_identity_indices(clip_id: str, num_frames: int, count: int) -> list[int]:
    """``count`` distinct frames of a ``num_frames``-frame first chunk, sorted, drawn from
    :func:`clip_seed` only. Never frame 0: it is the causal VAE's single-frame latent, the frame
    closest to the reference, and the release draws from frames 1.. too."""
    if count > num_frames - 1:
        raise ValueError(f"cannot draw {count} frames from frames 1..{num_frames - 1}")
    generator = torch.Generator().manual_seed(clip_seed(clip_id))
    return sorted((1 + torch.randperm(num_frames - 1, generator=generator)[:count]).tolist())


def inference_identity_frames(references: torch.Tensor, first_chunk: torch.Tensor, k: int, clip_id: str) -> torch.Tensor:
    """Identity frames at inference (Sec. 4.3): the ``m`` user references completed with ``K - m``
    frames of the first generated chunk, in the release's order ``[drawn..., references]``. With
    ``m = K`` the references alone; the memory is then fixed for all later chunks."""
    missing = k - len(references)
    if missing < 0:
        raise ValueError(f"{len(references)} references do not fit in an identity memory of K={k}")
    if missing == 0:
        return references.clone()
    return torch.cat([first_chunk[inference_identity_indices(clip_id, len(first_chunk), missing)], references])


def first_chunk_identity_frames(references: torch.Tensor, k: int) -> torch.Tensor:
    """Identity frames of the first chunk, before any chunk exists to sample from: the references
    repeated to K (the release's fallback), so every chunk has the same layout."""
    return references[torch.arange(k) % len(references)]


# ---- Eq. 2-3: context memory and layouts ------------------------------------------------------------


def context_memory(
    motion: torch.Tensor | None,
    identity: torch.Tensor,
    num_latents: int,
    motion_slots: int = 1,
    pad: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2): ``M_ctx = Concat_t(M_mot, M_id, X_pad)`` over ``num_latents`` slots and its mask
    (1 on memory, 0 on the pad). ``motion=None`` (first chunk) is a zero ``M_mot`` of
    ``motion_slots`` slots with mask 0."""
    if motion is None:
        batch, channels, _, height, width = identity.shape
        motion = identity.new_zeros(batch, channels, motion_slots, height, width)
        latent, mask = concat_memory([motion, identity], num_latents, pad)
        mask[:, :, :motion_slots] = 0.0
        return latent, mask
    return concat_memory([motion, identity], num_latents, pad)


@dataclass
class ChunkLayout:
    """One chunk's conditioning in a layout. ``P`` prepended slots, ``T`` generated slots.

    ``latent``: conditioning channels ``(B, C, P + T, h, w)``; ``mask``: ``(B, 4, P + T, h, w)``;
    ``prefix``: the clean latents of the prepended slots ``(B, C, P, h, w)`` (the reference, or the
    anchors), which are the training target of those slots. Pose and face cover the ``T`` slots.
    """

    kind: str
    latent: torch.Tensor
    mask: torch.Tensor
    prefix: torch.Tensor

    @property
    def prefix_slots(self) -> int:
        return int(self.prefix.shape[2])

    @property
    def num_latents(self) -> int:
        return int(self.latent.shape[2]) - self.prefix_slots

    def with_prefix(self, chunk_latent: torch.Tensor) -> torch.Tensor:
        """A chunk latent ``(B, C, T, h, w)`` behind the clean prefix: the clean endpoint of all slots.
        For a perturbed endpoint pass the perturbed chunk: the prefix stays clean, as in the release."""
        prefix = self.prefix.to(chunk_latent).expand(chunk_latent.shape[0], -1, -1, -1, -1)
        return torch.cat([prefix, chunk_latent], dim=2)

    def drop_prefix(self, latent: torch.Tensor) -> torch.Tensor:
        """The generated slots of a full-layout latent, the only ones that are decoded."""
        return latent[:, :, self.prefix_slots :]


def paper_layout(
    reference_latent: torch.Tensor,
    identity: torch.Tensor,
    num_latents: int,
    motion: torch.Tensor | None = None,
    motion_slots: int = 1,
    pad: torch.Tensor | None = None,
) -> ChunkLayout:
    """Eq. (2)-(3) on the Wan-Animate backbone: the reference in slot 0 and ``M_ctx`` in the
    conditioning channels of the ``T`` target slots, so ``H_t = Concat_ch(X_t, M_ctx)``."""
    slots, slot_mask = context_memory(motion, identity, num_latents, motion_slots, pad)
    latent, mask = with_reference_slot(reference_latent, slots, slot_mask)
    return ChunkLayout("paper", latent, mask, reference_latent.to(latent))


def release_layout(anchors: torch.Tensor, num_latents: int, motion: torch.Tensor | None = None, motion_slots: int = 1) -> ChunkLayout:
    """The release's layout: ``[K anchors | M_mot | zeros]`` over ``K + T`` slots, mask 1 on the anchors
    only (the motion slot is unmasked in the release too). Needs :func:`prefixed_transformer_forward`."""
    batch, channels, k, height, width = anchors.shape
    if motion is None:
        motion = anchors.new_zeros(batch, channels, motion_slots, height, width)
    latent, _ = concat_memory([anchors, motion], k + num_latents)
    mask = memory_slot_mask(k + num_latents, k, height, width, batch).to(latent)
    return ChunkLayout("release", latent, mask, anchors)


def image_carry_layout(reference_latent: torch.Tensor, slot_latent: torch.Tensor, slot_mask: torch.Tensor) -> ChunkLayout:
    """The ablation without PLP (Table 2, "w/o PLP"), ``carry="image"``: Wan-Animate's conditioning. The
    slots hold the temporal guidance (the previous chunk's last frames, decoded and encoded again, see
    :meth:`WanBackbone.temporal_guidance`) with mask 1 on those frames, the single reference slot 0."""
    latent, mask = with_reference_slot(reference_latent, slot_latent, slot_mask)
    return ChunkLayout("image", latent, mask, reference_latent.to(latent))


def chunk_layout(
    config: EverAnimateConfig,
    reference_latent: torch.Tensor,
    identity: torch.Tensor,
    num_latents: int,
    motion: torch.Tensor | None = None,
) -> ChunkLayout:
    """The configured layout of the latent carry. The release's anchors are the identity memory (which
    holds the user reference), so it ignores ``reference_latent``."""
    if config.layout == "paper":
        return paper_layout(reference_latent, identity, num_latents, motion, config.motion_latents)
    return release_layout(identity, num_latents, motion, config.motion_latents)


def memory_transformer_input(noisy_latent: torch.Tensor, layout: ChunkLayout) -> torch.Tensor:
    """Eq. (3): ``H_t = Concat_ch(X_t, M_ctx)`` in diffusers' channel order; the pose term of
    ``X^_t = X_t + E_pose(C_pose)`` is added inside the model after patch embedding."""
    return transformer_input(noisy_latent, layout.mask, layout.latent)


# ---- the transformer on a layout --------------------------------------------------------------------


def embed_with_pose(model: Any, hidden_states: torch.Tensor, pose_latent: torch.Tensor, prefix_slots: int) -> torch.Tensor:
    """Patch-embedded tokens ``(B, N, D)`` with the pose embedding added to slots ``prefix_slots``
    onwards only (diffusers adds it from slot 1)."""
    if model.config.patch_size[0] != 1:
        raise ValueError("prepended slots need a temporal patch size of 1")
    tokens = model.patch_embedding(hidden_states)
    pose = model.pose_patch_embedding(pose_latent)
    tokens = torch.cat([tokens[:, :, :prefix_slots], tokens[:, :, prefix_slots:] + pose], dim=2)
    return tokens.flatten(2).transpose(1, 2).contiguous()


def face_motion_tokens(model: Any, face_pixels: torch.Tensor, prefix_slots: int) -> torch.Tensor:
    """Face-adapter keys ``(B, P + T, N, D)``: the face video through the motion and face encoders
    (``4 (T - 1) + 1`` frames give ``T``), with zero tokens for the ``P`` prepended slots."""
    batch, channels, frames, height, width = face_pixels.shape
    faces = face_pixels.permute(0, 2, 1, 3, 4).reshape(-1, channels, height, width)
    parts = torch.split(faces, int(model.config.motion_encoder_batch_size))
    motion = torch.cat([model.motion_encoder(part) for part in parts]).view(batch, frames, -1)
    motion = model.face_encoder(motion)
    return torch.cat([motion.new_zeros(batch, prefix_slots, *motion.shape[2:]), motion], dim=1)


def prefixed_transformer_forward(
    model: Any,
    hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    pose_latent: torch.Tensor,
    face_pixels: torch.Tensor,
    prefix_slots: int,
    encoder_hidden_states_image: torch.Tensor | None = None,
) -> torch.Tensor:
    """``WanAnimateTransformer3DModel.forward`` (diffusers 0.42.1) generalised to ``P`` prepended slots.

    ``hidden_states``: ``(B, 2C + 4, P + T, h, w)``; ``pose_latent``: ``(B, C, T, h, w)``;
    ``face_pixels``: ``(B, 3, 4 (T - 1) + 1, S, S)``; ``timestep``: ``(B,)`` = sigma * 1000. Returns
    ``(B, C, P + T, h, w)``. It runs the model's own modules in diffusers' order; the only changes are
    the pose added from slot ``P`` (:func:`embed_with_pose`) and ``P`` zero face frames
    (:func:`face_motion_tokens`), so ``P = 1`` reproduces ``model.forward`` and a peft LoRA on the
    blocks is active as usual. Not carried over: the LoRA scale of ``attention_kwargs`` and diffusers'
    cache and context-parallel hooks.
    """
    batch, _, slots, height, width = hidden_states.shape
    if pose_latent.shape[2] + prefix_slots != slots:
        raise ValueError(f"{pose_latent.shape[2]} pose slots and {prefix_slots} prepended slots do not make {slots} slots")
    config = model.config
    _, patch_h, patch_w = config.patch_size
    rotary = model.rope(hidden_states)
    tokens = embed_with_pose(model, hidden_states, pose_latent, prefix_slots)
    temb, timestep_proj, text, image = model.condition_embedder(timestep, encoder_hidden_states, encoder_hidden_states_image, timestep_seq_len=None)
    timestep_proj = timestep_proj.unflatten(1, (6, -1))
    if image is not None:
        text = torch.cat([image, text], dim=1)
    motion = face_motion_tokens(model, face_pixels, prefix_slots)
    if motion.shape[1] != slots:
        raise ValueError(f"a face video of {face_pixels.shape[2]} frames gives {motion.shape[1] - prefix_slots} slots, expected {slots - prefix_slots}")
    every = config.inject_face_latents_blocks
    for index, block in enumerate(model.blocks):
        if torch.is_grad_enabled() and model.gradient_checkpointing:
            tokens = model._gradient_checkpointing_func(block, tokens, text, timestep_proj, rotary)
        else:
            tokens = block(tokens, text, timestep_proj, rotary)
        if index % every == 0:
            tokens = model.face_adapter[index // every](tokens, motion).to(tokens.device) + tokens
    shift, scale = (model.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
    dtype = tokens.dtype
    tokens = model.norm_out(tokens.float())
    tokens = (tokens * (1 + scale.to(tokens.device)) + shift.to(tokens.device)).to(dtype)
    tokens = model.proj_out(tokens).reshape(batch, slots, height // patch_h, width // patch_w, 1, patch_h, patch_w, -1)
    return tokens.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def layout_velocity(
    backbone: Any,
    layout: ChunkLayout,
    noisy_latent: torch.Tensor,
    sigma: torch.Tensor | float,
    pose_latent: torch.Tensor,
    face_pixels: torch.Tensor,
    text_embeds: torch.Tensor | None = None,
    image_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """The transformer's ``noise - x0`` prediction on all ``P + T`` slots of ``noisy_latent`` in float32.
    One prepended slot is the backbone's own layout (:meth:`WanBackbone.velocity`); more go through
    :func:`prefixed_transformer_forward` with the same inputs."""
    if layout.prefix_slots == 1:
        return backbone.velocity(noisy_latent, sigma, layout.latent, layout.mask, pose_latent, face_pixels, text_embeds, image_embeds)
    device, dtype = backbone.device, backbone.transformer_dtype
    batch = noisy_latent.shape[0]
    hidden = transformer_input(noisy_latent.to(device, dtype), layout.mask.to(device), layout.latent.to(device))
    text = backbone.text_embeds if text_embeds is None else text_embeds.to(device, dtype)
    if image_embeds is None and backbone.uses_image_embeds:
        raise ValueError("this transformer needs image_embeds (CLIP features of the reference)")
    image = None if image_embeds is None else image_embeds.to(device, dtype).expand(batch, -1, -1)
    output = prefixed_transformer_forward(
        backbone.transformer,
        hidden,
        flow.sigma_to_timestep(sigma, batch, device),
        text.expand(batch, -1, -1),
        pose_latent.to(device, dtype),
        face_pixels.to(device, dtype),
        layout.prefix_slots,
        image,
    )
    return output.float()


@torch.no_grad()
def sample_layout(
    backbone: Any,
    layout: ChunkLayout,
    pose_latent: torch.Tensor,
    face_pixels: torch.Tensor,
    generator: torch.Generator,
    steps: int = 20,
    shift: float = 5.0,
    text_embeds: torch.Tensor | None = None,
    image_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Euler sampling of one chunk with :func:`methods.wan.flow.euler_sample`, as
    :meth:`WanBackbone.sample` does: noise on all slots (drawn on the CPU), the prepended slots stepped
    with the model's own prediction, and only the ``T`` generated slots returned ``(B, C, T, h, w)``."""
    noise = backbone.initial_noise(layout.latent, generator)
    velocity = lambda latent, sigma: layout_velocity(backbone, layout, latent, sigma, pose_latent, face_pixels, text_embeds, image_embeds)  # noqa: E731
    return layout.drop_prefix(flow.euler_sample(velocity, noise, steps, shift))
