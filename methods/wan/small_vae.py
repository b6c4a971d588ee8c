"""A small causal video VAE with Wan's compression (4x temporal, 4x or 8x spatial) that trains fast on
a CPU, for the synthetic preset only; the 14B preset keeps ``AutoencoderKLWan``.

Why it exists: ``AutoencoderKLWan`` runs its causal 3D convolutions at full resolution one latent slot
at a time through a feature cache, which makes CPU training slow and recurrent (docs/backbone.md has the
measurements). Here every latent slot owns a group of 4 frames (the first slot owns frame 0 repeated 4
times, as in Wan's causal layout), the frames of a group are stacked along channels and moved to low
resolution by space-to-depth before any convolution. A slot depends only on its own frames, which is
trivially causal and lets training use short clips.

It mirrors the parts of the ``AutoencoderKLWan`` interface the backbone uses: ``encode(x).latent_dist``
(a diagonal Gaussian), ``decode(z).sample`` clamped to [-1, 1], ``decode_unclamped`` for training, and
``config.z_dim`` / ``latents_mean`` / ``latents_std`` / ``scale_factor_*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

FRAMES_PER_SLOT = 4


class ResBlock(nn.Module):
    """Pre-activation residual block of two 3x3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class SmallCausalVAE(ModelMixin, ConfigMixin):
    """Slot-wise causal video VAE: ``(B, 3, 4k+1, H, W)`` in [-1, 1] <-> ``(B, z_dim, k+1, H/s, W/s)``."""

    @register_to_config
    def __init__(
        self,
        z_dim: int = 16,
        spatial_factor: int = 4,
        hidden_channels: int = 64,
        latent_channels: int = 96,
        num_res_blocks: int = 2,
        refine_channels: int = 24,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
        scale_factor_temporal: int = 4,
        scale_factor_spatial: int = 4,
    ):
        super().__init__()
        if spatial_factor not in (4, 8) or scale_factor_spatial != spatial_factor:
            raise ValueError("spatial_factor must be 4 or 8 and equal scale_factor_spatial")
        if scale_factor_temporal != FRAMES_PER_SLOT:
            raise ValueError("the temporal factor is 4")
        for name, stats in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if stats is not None and len(stats) != z_dim:
                raise ValueError(f"{name} has {len(stats)} entries, z_dim is {z_dim}")
        group = 3 * FRAMES_PER_SLOT
        extra_stages = 1 if spatial_factor == 8 else 0

        encoder: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(group * 4, hidden_channels, 3, padding=1), ResBlock(hidden_channels)]
        encoder += [nn.PixelUnshuffle(2), nn.Conv2d(hidden_channels * 4, latent_channels, 1)]
        for _ in range(extra_stages):
            encoder += [ResBlock(latent_channels), nn.PixelUnshuffle(2), nn.Conv2d(latent_channels * 4, latent_channels, 1)]
        encoder += [ResBlock(latent_channels) for _ in range(num_res_blocks)]
        encoder += [nn.GroupNorm(8, latent_channels), nn.SiLU(), nn.Conv2d(latent_channels, 2 * z_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [nn.Conv2d(z_dim, latent_channels, 3, padding=1)]
        decoder += [ResBlock(latent_channels) for _ in range(num_res_blocks)]
        for _ in range(extra_stages):
            decoder += [nn.Conv2d(latent_channels, latent_channels * 4, 1), nn.PixelShuffle(2), ResBlock(latent_channels)]
        decoder += [nn.Conv2d(latent_channels, hidden_channels * 4, 1), nn.PixelShuffle(2), ResBlock(hidden_channels)]
        decoder += [nn.GroupNorm(8, hidden_channels), nn.SiLU(), nn.Conv2d(hidden_channels, group * 4, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*decoder)
        # Full-resolution residual refinement of the 4 decoded frames, for edges the sub-pixel layer blurs.
        self.refine = nn.Sequential(nn.Conv2d(group, refine_channels, 3, padding=1), nn.SiLU(), nn.Conv2d(refine_channels, group, 3, padding=1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    @property
    def z_dim(self) -> int:
        return int(self.config.z_dim)

    # ---- layout ------------------------------------------------------------------------------
    @staticmethod
    def _to_groups(video: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(B, 3, 4k+1, H, W)`` -> ``(B * (k+1), 12, H, W)``: frame 0 repeated 4 times is slot 0."""
        batch, channels, frames, height, width = video.shape
        if (frames - 1) % FRAMES_PER_SLOT:
            raise ValueError(f"the causal VAE needs 4k+1 frames, got {frames}")
        padded = torch.cat([video[:, :, :1].expand(-1, -1, FRAMES_PER_SLOT - 1, -1, -1), video], dim=2)
        slots = padded.shape[2] // FRAMES_PER_SLOT
        groups = padded.reshape(batch, channels, slots, FRAMES_PER_SLOT, height, width)
        groups = groups.permute(0, 2, 3, 1, 4, 5).reshape(batch * slots, FRAMES_PER_SLOT * channels, height, width)
        return groups, slots

    @staticmethod
    def _from_groups(groups: torch.Tensor, batch: int) -> torch.Tensor:
        """Inverse of :meth:`_to_groups`, dropping the 3 repeated copies of frame 0."""
        total, _, height, width = groups.shape
        slots = total // batch
        video = groups.reshape(batch, slots, FRAMES_PER_SLOT, 3, height, width).permute(0, 3, 1, 2, 4, 5)
        video = video.reshape(batch, 3, slots * FRAMES_PER_SLOT, height, width)
        return video[:, :, FRAMES_PER_SLOT - 1 :]

    # ---- AutoencoderKLWan-compatible interface -----------------------------------------------
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        batch = x.shape[0]
        groups, slots = self._to_groups(x)
        moments = self.encoder(groups)
        _, channels, height, width = moments.shape
        moments = moments.reshape(batch, slots, channels, height, width).transpose(1, 2)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode_unclamped(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before the [-1, 1] clamp: training losses need gradients on saturated pixels."""
        batch, channels, slots, height, width = z.shape
        flat = z.transpose(1, 2).reshape(batch * slots, channels, height, width)
        groups = self.decoder(flat)
        groups = groups + self.refine(groups)
        return self._from_groups(groups, batch)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        video = self.decode_unclamped(z).clamp(-1.0, 1.0)
        return DecoderOutput(sample=video) if return_dict else (video,)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.decode_unclamped(self.encode(sample).latent_dist.mode())
