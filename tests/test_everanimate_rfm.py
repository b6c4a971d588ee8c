"""Restorative Flow Matching (paper Eq. 4-12) in the backbone's sigma convention, and the perturbations T_xi."""

from __future__ import annotations

import json

import pytest
import torch

from everanimate import rfm
from everanimate.config import EverAnimateConfig
from methods.wan import flow

pytestmark = pytest.mark.usefixtures("single_thread")


def _latents(seed: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 4, 5, 6, 6)
    clean = torch.randn(shape, generator=generator, dtype=torch.float64)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    perturbed = clean + 0.3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    return clean, noise, perturbed


def _frames(seed: int = 0, count: int = 3, height: int = 24, width: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (count, height, width, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_rfm_target_is_the_fm_target_without_perturbation():
    clean, noise, perturbed = _latents(0)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    fm = rfm.flow_velocity(clean, noise)
    assert torch.equal(fm, clean - noise)
    assert torch.allclose(rfm.restorative_velocity_target(clean, noise, clean, t, beta=2.0), fm)
    assert not torch.allclose(rfm.restorative_velocity_target(clean, noise, perturbed, t, beta=2.0), fm)

    sigma = 1 - t
    for config in (EverAnimateConfig(), EverAnimateConfig.release()):
        for perturbed_clean in (None, clean):
            noisy, target = rfm.restorative_training_pair(clean, noise, sigma, config, perturbed_clean)
            assert torch.allclose(noisy, flow.flow_interpolant(clean, noise, sigma))
            assert torch.allclose(target, flow.flow_velocity_target(clean, noise))

    frames = _frames()
    unchanged = rfm.apply_perturbations(frames, [(name, 0.0) for name in rfm.PERTURBATIONS], torch.Generator().manual_seed(0))
    assert torch.equal(unchanged, frames)


def test_exact_restorative_velocity_equals_its_decomposition():
    clean, noise, perturbed = _latents(1)
    t = torch.tensor([0.05, 0.4, 0.8], dtype=torch.float64)
    state = rfm.perturbed_path(perturbed, noise, t)
    exact = rfm.exact_restorative_velocity(state, clean, t)
    assert torch.allclose(exact, rfm.decomposed_restorative_velocity(clean, noise, perturbed, t), atol=1e-12)

    # Eq. 7 starts at the perturbed state, ends at the data, and moves with the velocity of Eq. 8.
    assert torch.allclose(rfm.restorative_continuation(state, clean, t, t), state)
    assert torch.allclose(rfm.restorative_continuation(state, clean, t, torch.ones(3, dtype=torch.float64)), clean)
    step = 1e-4
    slope = (rfm.restorative_continuation(state, clean, t, t + step) - state) / step
    assert torch.allclose(slope, exact, atol=1e-8)


@pytest.mark.parametrize("beta", [0.5, 2.0, 8.0, 50.0])
def test_restoration_weight_is_zero_at_the_ends_and_one_in_the_middle(beta):
    ends = rfm.restoration_weight(torch.tensor([0.0, 1.0]), beta)
    assert torch.allclose(ends, torch.zeros(2), atol=1e-6)
    assert rfm.restoration_weight(0.5, beta).item() == pytest.approx(1.0, abs=1e-6)
    grid = torch.linspace(0, 1, 101)
    weights = rfm.restoration_weight(grid, beta)
    assert weights.min() >= -1e-6 and weights.max() <= 1 + 1e-6
    assert torch.allclose(weights, weights.flip(0), atol=1e-6)


def test_release_gaussian_is_eq_11_with_beta_2():
    timesteps = torch.linspace(0, 1000, 1001)
    gaussian = torch.exp(-2 * ((timesteps - 500) / 1000) ** 2)
    release = (gaussian - gaussian.min()) / (gaussian.max() - gaussian.min())
    assert torch.allclose(rfm.restoration_weight(1 - timesteps / 1000, 2.0), release, atol=1e-6)


def test_one_euler_step_with_the_exact_target_lands_on_the_data():
    clean, noise, perturbed = _latents(2, batch=1)
    for t in (0.2, 0.6, 0.95):
        sigma = rfm.time_to_sigma(t)
        state = flow.flow_interpolant(perturbed, noise, sigma)
        assert torch.allclose(state, rfm.perturbed_path(perturbed, noise, t))
        output = rfm.model_velocity(rfm.exact_restorative_velocity(state, clean, t))
        assert torch.allclose(flow.euler_step(state, output, sigma, 0.0), clean, atol=1e-10)
        # The paper-sign velocity fed to the sampler walks away from the data.
        wrong = flow.euler_step(state, rfm.exact_restorative_velocity(state, clean, t), sigma, 0.0)
        assert not torch.allclose(wrong, clean, atol=1e-3)


def test_training_pair_feeds_the_perturbed_state_and_pulls_back_to_the_clean_path():
    clean, noise, perturbed = _latents(3)
    sigma = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    t = 1 - sigma
    noisy, target = rfm.restorative_training_pair(clean, noise, sigma, EverAnimateConfig(), perturbed)
    assert torch.allclose(noisy, flow.flow_interpolant(perturbed, noise, sigma))
    weight = rfm.restoration_weight(t, 2.0).to(clean).view(-1, 1, 1, 1, 1)
    pull = flow.flow_interpolant(perturbed, noise, sigma) - flow.flow_interpolant(clean, noise, sigma)
    assert torch.allclose(target, flow.flow_velocity_target(clean, noise) + weight * pull)

    noisy, target = rfm.restorative_training_pair(clean, noise, sigma, EverAnimateConfig.release(), perturbed)
    clean_target = flow.flow_velocity_target(clean, noise)
    assert torch.allclose(noisy[0], flow.flow_interpolant(clean, noise, sigma)[0]) and torch.allclose(target[0], clean_target[0])
    for i in (1, 2):
        assert torch.allclose(noisy[i], flow.flow_interpolant(perturbed, noise, sigma)[i])
        assert not torch.allclose(target[i], clean_target[i])


def test_restorative_loss_is_the_mean_squared_error():
    predicted, target = torch.zeros(2, 3), torch.full((2, 3), 2.0)
    assert rfm.restorative_flow_matching_loss(predicted, target).item() == pytest.approx(4.0)


STRENGTHS = {"color_shift": 0.1, "sharpness": 1.0, "saturation": 0.8, "brightness": 0.2, "clahe": 1.0, "detail_erase": 8.0}


@pytest.mark.parametrize("name", sorted(rfm.PERTURBATIONS))
def test_perturbations_are_deterministic_and_keep_shape_and_dtype(name):
    frames = _frames(4)
    first = rfm.perturb(frames, name, STRENGTHS[name], torch.Generator().manual_seed(7))
    second = rfm.perturb(frames, name, STRENGTHS[name], torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert first.shape == frames.shape and first.dtype == torch.uint8
    assert not torch.equal(first, frames)
    assert torch.equal(rfm.perturb(frames, name, 0.0, torch.Generator().manual_seed(7)), frames)
    assert torch.equal(rfm.perturb(frames, name, STRENGTHS[name]), rfm.perturb(frames, name, STRENGTHS[name]))
    # One draw per chunk: every frame of a static chunk is perturbed the same way.
    static = frames[:1].expand(3, -1, -1, -1).contiguous()
    out = rfm.perturb(static, name, STRENGTHS[name], torch.Generator().manual_seed(7))
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_perturbation_units():
    frames = torch.full((1, 4, 4, 3), 100, dtype=torch.uint8)
    frames[..., 0] = 200
    assert torch.equal(rfm.perturb(frames, "brightness", 0.2), (frames.float() * 1.2).round().to(torch.uint8))
    grey = rfm.perturb(frames, "saturation", -1.0)
    assert (grey.int().amax(-1) - grey.int().amin(-1)).max() <= 1
    assert rfm.perturb(frames, "detail_erase", 1.0).equal(frames)
    shifted = rfm.perturb(frames, "color_shift", 0.1).int() - frames.int()
    assert shifted.abs().max() <= 26 and shifted.abs().max() > 0
    with pytest.raises(ValueError, match="unknown perturbation"):
        rfm.perturb(frames, "jpeg", 1.0)
    with pytest.raises(ValueError, match="uint8"):
        rfm.perturb(frames.float(), "brightness", 0.1)


def test_clahe_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:96]
    noise = rng.integers(0, 256, (64, 96))
    shaded = 100 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.integers(0, 30, (64, 96))
    for grey in (noise.astype(np.uint8), shaded.clip(0, 255).astype(np.uint8)):
        reference = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey)
        frames = torch.from_numpy(grey)[None, :, :, None].expand(1, -1, -1, 3).contiguous()
        ours = rfm.perturb(frames, "clahe", 1.0)[0]
        difference = np.abs(ours[..., 0].numpy().astype(int) - reference.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.02  # ties round differently
        assert torch.equal(ours[..., 0], ours[..., 2])
        assert not np.array_equal(grey, reference)


def test_perturbation_draws():
    config = EverAnimateConfig()
    draws = [rfm.sample_perturbations(config, torch.Generator().manual_seed(s)) for s in range(40)]
    assert draws == [rfm.sample_perturbations(config, torch.Generator().manual_seed(s)) for s in range(40)]
    assert any(d == [] for d in draws) and any(d for d in draws)
    names = {name for d in draws for name, _ in d}
    assert names == {"color_shift", "sharpness", "saturation"}
    for d in draws:
        for name, strength in d:
            spec = next(s for s in config.perturbation_specs if s[0] == name)
            assert spec[2] <= strength <= spec[3]
    release = EverAnimateConfig.release()
    release_names = {n for s in range(40) for n, _ in rfm.sample_perturbations(release, torch.Generator().manual_seed(s))}
    assert release_names == {"clahe", "saturation", "brightness", "detail_erase"}
    never = EverAnimateConfig(perturbation_probability=0.0)
    assert all(rfm.sample_perturbations(never, torch.Generator().manual_seed(s)) == [] for s in range(10))

    frames = _frames(5)
    out, chosen = rfm.random_perturbation(frames, release, torch.Generator().manual_seed(11))
    again, chosen_again = rfm.random_perturbation(frames, release, torch.Generator().manual_seed(11))
    assert chosen == chosen_again and torch.equal(out, again)


def test_config_round_trips_through_json(tmp_path):
    config = EverAnimateConfig.release(restoration_beta=4.0)
    restored = EverAnimateConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config and hash(restored) == hash(config)
    assert EverAnimateConfig.load(config.save(tmp_path / "everanimate.json")) == config
    assert config.layout == "release" and config.lora_rank == 32 and config.perturbed_path_high_noise_only
    paper = EverAnimateConfig()
    assert (paper.identity_frames, paper.motion_latents, paper.lora_rank, paper.lora_alpha, paper.layout) == (4, 1, 128, 128.0, "paper")
    with pytest.raises(ValueError, match="unknown"):
        EverAnimateConfig.from_dict({"layuot": "paper"})
    with pytest.raises(ValueError, match="layout"):
        EverAnimateConfig(layout="mixed")
