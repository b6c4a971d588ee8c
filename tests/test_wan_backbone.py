"""The Wan backbone on tiny random weights: shapes, diffusers' input conventions, masks and the sampler."""

from __future__ import annotations

import types

import pytest
import torch

pytest.importorskip("diffusers")

from methods.wan import flow
from methods.wan.conditioning import (
    ChunkConditioning,
    concat_memory,
    frame_mask_to_slot_mask,
    guided_frames_mask,
    latent_frames,
    transformer_input,
    with_reference_slot,
)
from methods.wan.presets import tiny_random_backbone


@pytest.fixture(scope="module")
def backbone():
    return tiny_random_backbone(seed=0)


def _frames(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _conditioning(backbone, frames: int = 13, seed: int = 0) -> ChunkConditioning:
    video = _frames(frames, seed=seed)
    reference = backbone.encode(video[:1])
    slots, mask = backbone.temporal_guidance(video[-1:], latent_frames(frames), 32, 32)
    return backbone.chunk_conditioning(reference, slots, mask, video, _frames(frames, 16, seed + 1))


def test_encode_decode_shapes(backbone):
    frames = _frames(13)
    latent = backbone.encode(frames)
    assert latent.shape == (1, 4, 4, 8, 8)
    video = backbone.encode(frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1)
    assert torch.allclose(latent, video)
    decoded = backbone.decode(latent)
    assert decoded.shape == (13, 32, 32, 3) and decoded.dtype == torch.uint8
    assert backbone.encode(frames[:1]).shape == (1, 4, 1, 8, 8)


def test_encode_rejects_lengths_the_causal_vae_cannot_take(backbone):
    with pytest.raises(ValueError, match="4k\\+1"):
        backbone.encode(_frames(12))


def test_latents_are_normalised_with_the_vae_statistics(backbone):
    raw = torch.randn(1, 4, 2, 8, 8)
    mean = torch.tensor(backbone.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(backbone.vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(backbone.normalize(raw), (raw - mean) / std)
    assert torch.allclose(backbone.denormalize(backbone.normalize(raw)), raw, atol=1e-6)


def test_velocity_follows_diffusers_input_conventions(backbone):
    conditioning = _conditioning(backbone)
    noisy = torch.randn(2, 4, 5, 8, 8)
    seen = {}

    def spy(module, args, kwargs):
        seen.update(kwargs)

    handle = backbone.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        out = backbone.velocity(
            noisy,
            torch.tensor([0.25, 0.5]),
            conditioning.latent.expand(2, -1, -1, -1, -1),
            conditioning.mask.expand(2, -1, -1, -1, -1),
            conditioning.pose_latent.expand(2, -1, -1, -1, -1),
            conditioning.face_pixels.expand(2, -1, -1, -1, -1),
        )
    finally:
        handle.remove()
    assert out.shape == (2, 4, 5, 8, 8) and out.dtype == torch.float32
    hidden = seen["hidden_states"]
    assert hidden.shape == (2, 2 * 4 + 4, 5, 8, 8)
    assert torch.equal(hidden[:, :4], noisy)
    assert torch.equal(hidden[:, 4:8], conditioning.mask.expand(2, -1, -1, -1, -1))
    assert torch.equal(hidden[:, 8:], conditioning.latent.expand(2, -1, -1, -1, -1))
    assert torch.allclose(seen["timestep"], torch.tensor([250.0, 500.0]))
    assert seen["pose_hidden_states"].shape == (2, 4, 4, 8, 8)
    assert seen["face_pixel_values"].shape == (2, 3, 13, 16, 16)
    assert seen["face_pixel_values"].min() >= -1 and seen["face_pixel_values"].max() <= 1
    assert seen["encoder_hidden_states"].shape[0] == 2


def test_sample_is_the_euler_loop_on_the_scheduler_sigmas(backbone):
    conditioning = _conditioning(backbone)
    noise = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(3))
    result = backbone.sample(conditioning, torch.Generator(), steps=3, noise=noise)
    assert result.shape == (1, 4, 4, 8, 8)
    sigmas = flow.sampling_sigmas(3, 5.0)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and len(sigmas) == 4
    latent = noise.clone()
    with torch.no_grad():
        for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
            latent = latent + (sigma_next - sigma) * backbone.conditioned_velocity(latent, sigma, conditioning)
    assert torch.allclose(result, latent[:, :, 1:], atol=1e-6)


def test_sample_is_seeded_by_the_generator(backbone):
    conditioning = _conditioning(backbone)
    a = backbone.sample(conditioning, torch.Generator().manual_seed(1), steps=2)
    b = backbone.sample(conditioning, torch.Generator().manual_seed(1), steps=2)
    c = backbone.sample(conditioning, torch.Generator().manual_seed(2), steps=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_euler_with_the_exact_velocity_lands_on_the_data():
    """Sign check: with x = (1 - sigma) x0 + sigma noise and v = noise - x0, Euler reaches x0 exactly."""
    clean, noise = torch.randn(2, 3), torch.randn(2, 3)
    sigmas = flow.sampling_sigmas(5, 5.0).tolist()
    latent = noise.clone()
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        latent = flow.euler_step(latent, flow.flow_velocity_target(clean, noise), sigma, sigma_next)
    assert torch.allclose(latent, clean, atol=1e-5)
    assert torch.allclose(flow.flow_interpolant(clean, noise, torch.tensor([0.0, 1.0])), torch.stack([clean[0], noise[1]]))


def test_slot_mask_matches_the_diffusers_pipeline():
    from diffusers.pipelines.wan.pipeline_wan_animate import WanAnimatePipeline

    owner = types.SimpleNamespace(vae_scale_factor_temporal=4)
    for guided in (0, 1, 5):
        ours = guided_frames_mask(5, guided, 3, 2, batch=2)
        theirs = WanAnimatePipeline.get_i2v_mask(owner, 2, 5, 3, 2, mask_len=guided, dtype=torch.float32, device="cpu")
        assert torch.equal(ours, theirs), guided
    reference = WanAnimatePipeline.get_i2v_mask(owner, 1, 1, 3, 2, mask_len=1, dtype=torch.float32, device="cpu")
    latent, mask = with_reference_slot(torch.zeros(1, 4, 1, 3, 2), torch.zeros(1, 4, 5, 3, 2), guided_frames_mask(5, 1, 3, 2))
    assert torch.equal(mask[:, :, :1], reference)


def test_guided_frames_fill_whole_slots():
    one = guided_frames_mask(4, 1, 2, 2)
    assert one[0, :, 0].eq(1).all() and one[0, :, 1:].eq(0).all()
    five = guided_frames_mask(4, 5, 2, 2)
    assert five[0, :, :2].eq(1).all() and five[0, :, 2:].eq(0).all()
    frame_mask = torch.zeros(1, 1, 9, 1, 1)
    frame_mask[:, :, 6] = 1  # slot 2 holds frames 5..8, so frame 6 is its channel 1
    assert frame_mask_to_slot_mask(frame_mask)[0, :, :, 0, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_any_latent_memory_goes_into_the_conditioning_slots():
    motion = torch.full((1, 4, 1, 2, 2), 1.0)
    identity = torch.full((1, 4, 3, 2, 2), 2.0)
    slots, mask = concat_memory([motion, identity], 6)
    assert slots.shape == (1, 4, 6, 2, 2)
    assert slots[:, :, 0].eq(1).all() and slots[:, :, 1:4].eq(2).all() and slots[:, :, 4:].eq(0).all()
    assert mask[:, :, :4].eq(1).all() and mask[:, :, 4:].eq(0).all()
    padded, _ = concat_memory([motion], 3, pad=torch.full((1, 4, 1, 2, 2), -1.0))
    assert padded[:, :, 1:].eq(-1).all()
    with pytest.raises(ValueError):
        concat_memory([identity, identity], 5)
    latent, full_mask = with_reference_slot(torch.full((1, 4, 1, 2, 2), 7.0), slots, mask)
    assert latent.shape == (1, 4, 7, 2, 2) and latent[:, :, 0].eq(7).all() and full_mask[:, :, 0].eq(1).all()
    hidden = transformer_input(torch.zeros(1, 4, 7, 2, 2), full_mask, latent)
    assert hidden.shape == (1, 12, 7, 2, 2) and torch.equal(hidden[:, 4:8], full_mask) and torch.equal(hidden[:, 8:], latent)


def test_backbone_samples_from_a_latent_memory(backbone):
    video = _frames(13)
    latent = backbone.encode(video)
    slots, mask = backbone.latent_memory([latent[:, :, -1:], backbone.encode(video[:1])], 4)
    conditioning = backbone.chunk_conditioning(backbone.encode(video[:1]), slots, mask, video, _frames(13, 16))
    assert backbone.sample(conditioning, torch.Generator().manual_seed(0), steps=1).shape == (1, 4, 4, 8, 8)


def test_frame_size_must_fit_vae_and_patch(backbone):
    with pytest.raises(ValueError, match="divisible"):
        backbone.latent_size(36, 32)
