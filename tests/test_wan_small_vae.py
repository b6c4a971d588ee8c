"""The synthetic preset's own VAE keeps Wan's compression and interface: causal, 4x temporal, 4x or 8x
spatial, a diagonal Gaussian posterior and a clamped decode."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from methods.wan.small_vae import SmallCausalVAE


def _vae(spatial: int = 4) -> SmallCausalVAE:
    torch.manual_seed(0)
    return SmallCausalVAE(z_dim=4, spatial_factor=spatial, scale_factor_spatial=spatial, hidden_channels=8, latent_channels=8, num_res_blocks=1, refine_channels=4)


@pytest.mark.parametrize("spatial", [4, 8])
def test_compression_and_shapes(spatial):
    vae = _vae(spatial)
    video = torch.rand(2, 3, 13, 32, 16) * 2 - 1
    posterior = vae.encode(video).latent_dist
    assert posterior.mode().shape == (2, 4, 4, 32 // spatial, 16 // spatial)
    decoded = vae.decode(posterior.mode()).sample
    assert decoded.shape == video.shape and decoded.abs().max() <= 1


def test_latents_depend_only_on_past_frames():
    vae = _vae()
    video = torch.rand(1, 3, 13, 16, 16) * 2 - 1
    changed = video.clone()
    changed[:, :, 5:] = -video[:, :, 5:]
    a, b = vae.encode(video).latent_dist.mode(), vae.encode(changed).latent_dist.mode()
    assert torch.equal(a[:, :, :2], b[:, :, :2])  # slots 0 (frame 0) and 1 (frames 1-4)
    assert not torch.equal(a[:, :, 2:], b[:, :, 2:])
    decoded_a, decoded_b = vae.decode(a).sample, vae.decode(b).sample
    assert torch.equal(decoded_a[:, :, :5], decoded_b[:, :, :5])


def test_a_single_frame_is_one_slot_and_a_static_slot_matches_it():
    vae = _vae()
    frame = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    latent = vae.encode(frame).latent_dist.mode()
    assert latent.shape[2] == 1 and vae.decode(latent).sample.shape[2] == 1
    static = vae.encode(frame.expand(-1, -1, 5, -1, -1)).latent_dist.mode()
    assert torch.allclose(static[:, :, 0], static[:, :, 1], atol=1e-6)


def test_config_is_validated():
    with pytest.raises(ValueError, match="z_dim"):
        SmallCausalVAE(z_dim=4, latents_mean=[0.0] * 16, latents_std=[1.0] * 16)
    with pytest.raises(ValueError, match="spatial"):
        SmallCausalVAE(spatial_factor=2, scale_factor_spatial=2)
    with pytest.raises(ValueError, match="4k\\+1"):
        _vae().encode(torch.zeros(1, 3, 6, 16, 16))
