"""The shared Wan-Animate backbone: a causal video VAE, ``WanAnimateTransformer3DModel`` and a
flow-matching Euler sampler, driven chunk by chunk (diffusers' pipeline runs its own segment loop and
carries context in pixel space, so the components are driven directly here).

Tensor conventions:
- pixels at the method boundary: ``uint8 (T, H, W, 3)``; inside: float ``(B, 3, T, H, W)`` in [-1, 1];
- latents: ``(B, C, T', h, w)`` normalised with the VAE's ``latents_mean`` / ``latents_std``,
  ``T' = 1 + (T - 1) / 4``;
- noise levels in diffusers' sigma convention (sigma 1 is noise, see :mod:`methods.wan.flow`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import flow
from .conditioning import (
    ChunkConditioning,
    concat_memory,
    guided_frames_mask,
    latent_frames,
    transformer_input,
    video_frames,
    with_reference_slot,
)

#: Modules the LoRA of EverAnimate targets: attention q, k, v, o of both attentions and both FFN
#: linears of every transformer block (the face adapters and motion encoder are left alone).
LORA_TARGET_MODULES = r".*blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|.*blocks\.\d+\.ffn\.net\.(0\.proj|2)"


def frames_to_video(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` -> float ``(1, 3, T, H, W)`` in [-1, 1]."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return (frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5) - 1.0


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """Float ``(1, 3, T, H, W)`` in [-1, 1] -> ``uint8 (T, H, W, 3)`` on the CPU."""
    if video.ndim != 5 or video.shape[0] != 1:
        raise ValueError(f"expected one video (1, 3, T, H, W), got {tuple(video.shape)}")
    pixels = ((video[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).contiguous().cpu()


class LatentCodec:
    """The causal VAE with Wan's latent normalisation: pixels <-> normalised latents. Methods that need
    only the VAE (``vae-roundtrip``) load this alone, without the transformer."""

    def __init__(self, vae: Any, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        self.latent_channels = int(vae.config.z_dim)
        mean, std = vae.config.latents_mean, vae.config.latents_std
        if mean is None or std is None or len(mean) != self.latent_channels or len(std) != self.latent_channels:
            raise ValueError(f"the VAE config needs latents_mean and latents_std of length z_dim={self.latent_channels}")
        self.latents_mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.latents_std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.spatial_factor = int(vae.config.scale_factor_spatial)

    def check_size(self, height: int, width: int) -> None:
        if height % self.spatial_factor or width % self.spatial_factor:
            raise ValueError(f"frames of {width}x{height} are not divisible by the VAE's {self.spatial_factor}x factor")

    def normalize(self, raw_latent: torch.Tensor) -> torch.Tensor:
        return (raw_latent - self.latents_mean.to(raw_latent)) / self.latents_std.to(raw_latent)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        return latent * self.latents_std.to(latent) + self.latents_mean.to(latent)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``uint8 (T, H, W, 3)`` or float ``(B, 3, T, H, W)`` in [-1, 1] -> normalised latent
        ``(B, C, 1 + (T - 1) / 4, h, w)``, the posterior mode (Wan's ``argmax`` sampling)."""
        video = frames_to_video(frames) if frames.dtype == torch.uint8 else frames
        latent_frames(video.shape[2])
        self.check_size(video.shape[3], video.shape[4])
        dtype = next(self.vae.parameters()).dtype
        posterior = self.vae.encode(video.to(self.device, dtype)).latent_dist
        return self.normalize(posterior.mode().float())

    @torch.no_grad()
    def decode_video(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``(B, C, T', h, w)`` -> float video ``(B, 3, 4 (T' - 1) + 1, H, W)`` in [-1, 1]."""
        dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(self.denormalize(latent.float()).to(self.device, dtype)).sample.float()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``(1, C, T', h, w)`` -> ``uint8 (4 (T' - 1) + 1, H, W, 3)`` on the CPU."""
        return video_to_frames(self.decode_video(latent))

    def round_trip(self, frames: torch.Tensor) -> torch.Tensor:
        """One VAE round trip of ``uint8 (T, H, W, 3)`` frames (T = 4k + 1)."""
        return self.decode(self.encode(frames))


class WanBackbone:
    """VAE + Wan-Animate transformer + Euler sampler. Holds no per-clip state.

    ``text_embeds`` / ``image_embeds`` are the fixed embeddings used when a call passes none: the
    synthetic preset has no text or image encoder and uses a constant text embedding (zeros) and no
    image embedding (``image_dim=None``); the 14B preset encodes its prompt once at load time and
    encodes each clip's reference with CLIP (:meth:`image_embedding`).
    """

    def __init__(
        self,
        vae: Any,
        transformer: Any,
        *,
        text_embeds: torch.Tensor | None = None,
        image_encoder: Any = None,
        image_processor: Any = None,
        device: str | torch.device = "cpu",
        shift: float = 5.0,
        name: str = "custom",
    ):
        self.name = name
        self.device = torch.device(device)
        self.codec = LatentCodec(vae, self.device)
        self.vae = self.codec.vae
        self.latent_channels = self.codec.latent_channels
        self.spatial_factor = self.codec.spatial_factor
        # The dtype is chosen at load time (from_pretrained(torch_dtype=...)) so that diffusers keeps its
        # float32 modules (norms, time embedding) in float32.
        self.transformer = transformer.to(self.device).eval()
        self.transformer_dtype = transformer.dtype
        self.shift = float(shift)
        self.image_encoder = image_encoder.to(self.device).eval() if image_encoder is not None else None
        self.image_processor = image_processor
        config = transformer.config
        if config.in_channels != 2 * self.latent_channels + 4 or config.out_channels != self.latent_channels:
            raise ValueError(
                f"transformer in/out channels {config.in_channels}/{config.out_channels} do not fit a VAE with "
                f"z_dim {self.latent_channels}: need in_channels = 2 C + 4 and out_channels = C"
            )
        self.patch_size = tuple(int(p) for p in config.patch_size)
        self.motion_size = int(config.motion_encoder_size)
        if text_embeds is None:
            text_embeds = torch.zeros(1, 1, int(config.text_dim))
        self.text_embeds = text_embeds.to(self.device, dtype=self.transformer_dtype)
        self._blank_guidance: dict[tuple[int, int, int], torch.Tensor] = {}

    # ---- geometry -----------------------------------------------------------------------------
    @property
    def uses_image_embeds(self) -> bool:
        return self.transformer.config.image_dim is not None

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent ``(h, w)`` of a frame; the frame must be divisible by VAE factor x patch size."""
        step_h, step_w = self.spatial_factor * self.patch_size[1], self.spatial_factor * self.patch_size[2]
        if height % step_h or width % step_w:
            raise ValueError(f"frames of {width}x{height} are not divisible by {step_w}x{step_h} (VAE factor x patch size)")
        return height // self.spatial_factor, width // self.spatial_factor

    # ---- VAE (see LatentCodec) ------------------------------------------------------------------
    def normalize(self, raw_latent: torch.Tensor) -> torch.Tensor:
        return self.codec.normalize(raw_latent)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        return self.codec.denormalize(latent)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``uint8 (T, H, W, 3)`` or float ``(B, 3, T, H, W)`` in [-1, 1] -> normalised latent
        ``(B, C, 1 + (T - 1) / 4, h, w)``; the frame size must also fit the patch size."""
        video_size = frames.shape[1:3] if frames.dtype == torch.uint8 else frames.shape[3:5]
        self.latent_size(int(video_size[0]), int(video_size[1]))
        return self.codec.encode(frames)

    def decode_video(self, latent: torch.Tensor) -> torch.Tensor:
        return self.codec.decode_video(latent)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(latent)

    def round_trip(self, frames: torch.Tensor) -> torch.Tensor:
        return self.codec.round_trip(frames)

    # ---- conditioning inputs ------------------------------------------------------------------
    def face_pixels(self, faces: torch.Tensor) -> torch.Tensor:
        """``uint8 (L, s, s, 3)`` face crops -> ``(1, 3, L, S, S)`` in [-1, 1] at the motion-encoder size."""
        video = frames_to_video(faces)[0].transpose(0, 1)
        if video.shape[-1] != self.motion_size or video.shape[-2] != self.motion_size:
            video = F.interpolate(video, size=(self.motion_size, self.motion_size), mode="bilinear", align_corners=False, antialias=True)
        return video.transpose(0, 1).unsqueeze(0).to(self.device)

    @torch.no_grad()
    def image_embedding(self, reference: torch.Tensor) -> torch.Tensor | None:
        """CLIP features of the reference ``uint8 (H, W, 3)`` (penultimate hidden states, as Wan-Animate
        uses them), or None when the transformer takes no image embedding."""
        if not self.uses_image_embeds:
            return None
        if self.image_encoder is None or self.image_processor is None:
            raise ValueError("this transformer takes an image embedding but the backbone has no image encoder")
        inputs = self.image_processor(images=np.asarray(reference.cpu()), return_tensors="pt").to(self.device)
        hidden = self.image_encoder(**inputs, output_hidden_states=True).hidden_states[-2]
        return hidden.to(self.transformer_dtype)

    def blank_guidance(self, num_latents: int, height: int, width: int) -> torch.Tensor:
        """Latent of an all-zero (mid-grey) video: what Wan-Animate puts in the unguided conditioning slots."""
        key = (num_latents, height, width)
        if key not in self._blank_guidance:
            self._blank_guidance[key] = self.encode(torch.zeros(1, 3, video_frames(num_latents), height, width))
        return self._blank_guidance[key]

    def temporal_guidance(self, guide_frames: torch.Tensor | None, num_latents: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Wan-Animate's temporal guidance: the ``r`` carried-over frames ``uint8 (r, H, W, 3)`` followed
        by zero frames, re-encoded by the VAE; mask 1 on the ``r`` frames. None gives the first chunk's
        blank guidance with mask 0. Returns slot latent ``(1, C, T', h, w)`` and mask ``(1, 4, T', h, w)``."""
        h, w = self.latent_size(height, width)
        if guide_frames is None or len(guide_frames) == 0:
            latent = self.blank_guidance(num_latents, height, width)
            return latent, guided_frames_mask(num_latents, 0, h, w).to(latent)
        guided = len(guide_frames)
        video = torch.zeros(1, 3, video_frames(num_latents), height, width)
        video[:, :, :guided] = frames_to_video(guide_frames)
        latent = self.encode(video)
        return latent, guided_frames_mask(num_latents, guided, h, w).to(latent)

    def latent_memory(self, memories: list[torch.Tensor], num_latents: int, pad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Any latent memory (previous-chunk slices, encoded reference views) in the conditioning slots,
        paper Eq. (2); see :func:`methods.wan.conditioning.concat_memory`."""
        return concat_memory([m.to(self.device) for m in memories], num_latents, pad)

    def chunk_conditioning(
        self,
        reference_latent: torch.Tensor,
        slot_latent: torch.Tensor,
        slot_mask: torch.Tensor,
        pose_frames: torch.Tensor,
        face_frames: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
    ) -> ChunkConditioning:
        """Assemble one chunk's conditioning: reference in slot 0, the caller's slot conditioning,
        the encoded pose video and the face crops (``uint8`` frames, ``4 T' - 3`` of each)."""
        latent, mask = with_reference_slot(reference_latent.to(self.device), slot_latent.to(self.device), slot_mask.to(self.device))
        return ChunkConditioning(
            latent=latent,
            mask=mask,
            pose_latent=self.encode(pose_frames),
            face_pixels=self.face_pixels(face_frames),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
        )

    # ---- transformer --------------------------------------------------------------------------
    def velocity(
        self,
        noisy_latent: torch.Tensor,
        sigma: torch.Tensor | float,
        conditioning_latent: torch.Tensor,
        mask: torch.Tensor,
        pose_latent: torch.Tensor,
        face_pixels: torch.Tensor,
        text_embeds: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One transformer evaluation in diffusers 0.42.1's conventions.

        ``noisy_latent``, ``conditioning_latent``: ``(B, C, T + 1, h, w)``, slot 0 the reference slot;
        ``mask``: ``(B, 4, T + 1, h, w)``; ``pose_latent``: ``(B, C, T, h, w)``;
        ``face_pixels``: ``(B, 3, 4 (T - 1) + 1, S, S)``; ``sigma``: scalar or ``(B,)``, sent as
        ``timestep = sigma * 1000``. Returns the predicted ``noise - x0`` for all ``T + 1`` slots in
        float32; the sampler steps slot 0 as the pipeline does, and callers drop it from the result.
        """
        batch = noisy_latent.shape[0]
        dtype = self.transformer_dtype
        hidden = transformer_input(noisy_latent.to(self.device, dtype), mask.to(self.device), conditioning_latent.to(self.device))
        text = self.text_embeds if text_embeds is None else text_embeds.to(self.device, dtype)
        if image_embeds is None and self.uses_image_embeds:
            raise ValueError("this transformer needs image_embeds (CLIP features of the reference); see image_embedding()")
        image = None if image_embeds is None else image_embeds.to(self.device, dtype).expand(batch, -1, -1)
        output = self.transformer(
            hidden_states=hidden,
            timestep=flow.sigma_to_timestep(sigma, batch, self.device),
            encoder_hidden_states=text.expand(batch, -1, -1),
            encoder_hidden_states_image=image,
            pose_hidden_states=pose_latent.to(self.device, dtype),
            face_pixel_values=face_pixels.to(self.device, dtype),
            return_dict=False,
        )[0]
        return output.float()

    def conditioned_velocity(self, noisy_latent: torch.Tensor, sigma: torch.Tensor | float, conditioning: ChunkConditioning) -> torch.Tensor:
        return self.velocity(
            noisy_latent,
            sigma,
            conditioning.latent,
            conditioning.mask,
            conditioning.pose_latent,
            conditioning.face_pixels,
            conditioning.text_embeds,
            conditioning.image_embeds,
        )

    def initial_noise(self, conditioning_latent: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise over every slot of ``conditioning_latent`` ``(B, C', T, h, w)`` with the latent
        channel count, drawn on the CPU so results do not depend on the device."""
        shape = (conditioning_latent.shape[0], self.latent_channels, *conditioning_latent.shape[2:])
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    @torch.no_grad()
    def sample(
        self,
        conditioning: ChunkConditioning,
        generator: torch.Generator,
        steps: int = 20,
        shift: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Euler sampling of one chunk from sigma 1 to 0 on the ``FlowMatchEulerDiscreteScheduler``
        schedule. Returns the clean latent of the ``T`` generated slots ``(B, C, T, h, w)`` (slot 0 dropped)."""
        noise = self.initial_noise(conditioning.latent, generator) if noise is None else noise.to(self.device, torch.float32)
        latent = flow.euler_sample(lambda x, sigma: self.conditioned_velocity(x, sigma, conditioning), noise, steps, self.shift if shift is None else shift)
        return latent[:, :, 1:]

    # ---- LoRA ---------------------------------------------------------------------------------
    def add_lora(self, rank: int = 32, alpha: float | None = None, adapter_name: str = "default", init_lora_weights: bool | str = True) -> None:
        """Attach a peft LoRA to attention q, k, v, o and both FFN linears of every block. With the
        default initialisation the output is unchanged until the LoRA weights move away from zero."""
        from peft import LoraConfig

        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            target_modules=LORA_TARGET_MODULES,
            init_lora_weights=init_lora_weights,
        )
        self.transformer.add_adapter(config, adapter_name=adapter_name)

    def parameter_counts(self) -> dict[str, int]:
        return {
            "vae": sum(p.numel() for p in self.vae.parameters()),
            "transformer": sum(p.numel() for p in self.transformer.parameters()),
        }
