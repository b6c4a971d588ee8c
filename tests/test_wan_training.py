"""The training code of the synthetic preset on tiny models and random data: the traps it must avoid
(clamped decoder output), deterministic steps and exact resume from safetensors checkpoints."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from methods.wan.checkpoint import load_checkpoint, save_checkpoint, step_generator
from methods.wan.data import ClipArrays, psnr, ssim
from methods.wan.presets import TINY_VAE_CONFIG, build_vae, tiny_random_backbone
from methods.wan.train_base import ExponentialAverage, WindowBank, build_bank, flow_matching_step, training_batch
from methods.wan.train_vae import decode_unclamped, learning_rate, reconstruction_loss, sample_batch


def _clips(count: int = 2, frames: int = 90, size: int = 32) -> list[ClipArrays]:
    generator = torch.Generator().manual_seed(0)
    make = lambda *shape: torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)  # noqa: E731
    return [ClipArrays(f"c{i}", make(frames, size, size, 3), make(frames, size, size, 3), make(frames, 16, 16, 3)) for i in range(count)]


def test_unclamped_decode_matches_the_clamped_one_inside_the_range():
    torch.manual_seed(0)
    vae = build_vae("AutoencoderKLWan", TINY_VAE_CONFIG)
    latent = torch.randn(1, 4, 3, 8, 8) * 3
    raw = decode_unclamped(vae, latent)
    assert torch.allclose(raw.clamp(-1, 1), vae.decode(latent).sample, atol=1e-6)
    small = tiny_random_backbone(vae="SmallCausalVAE").vae
    assert torch.allclose(small.decode_unclamped(latent).clamp(-1, 1), small.decode(latent).sample)


def test_reconstruction_loss_has_gradient_on_saturated_pixels():
    output = torch.full((1, 3, 1, 2, 2), 1.5, requires_grad=True)
    reconstruction_loss(output, torch.ones(1, 3, 1, 2, 2)).backward()
    assert output.grad.abs().sum() > 0


def test_vae_batches_are_a_function_of_seed_and_step():
    clips = _clips()
    a = sample_batch(clips, 3, 9, 0.25, step_generator(0, 5))
    b = sample_batch(clips, 3, 9, 0.25, step_generator(0, 5))
    c = sample_batch(clips, 3, 9, 0.25, step_generator(0, 6))
    assert a.shape == (3, 3, 9, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert -1 <= float(a.min()) and float(a.max()) <= 1


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert learning_rate(50, 100, 1.0, 10) == 1.0
    assert learning_rate(99, 100, 1.0, 10) < 0.2


def test_psnr_of_identical_videos_is_capped_and_of_offset_videos_exact():
    video = torch.rand(1, 3, 2, 4, 4) * 2 - 1
    assert psnr(video, video) == 100.0
    zero, one_step = torch.full((1, 3, 1, 2, 2), -1.0), torch.full((1, 3, 1, 2, 2), -1 + 2 / 255)
    assert psnr(zero, one_step) == pytest.approx(20 * torch.log10(torch.tensor(255.0)).item(), abs=1e-4)


def test_ssim_is_the_benchmark_ssim_of_the_written_frames():
    from benchmark.metrics.frame import ssim_per_frame

    generator = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, 3, 16, 16, generator=generator) * 2 - 1
    noisy = (video + 0.1 * torch.randn(video.shape, generator=generator)).clamp(-1, 1)
    assert ssim(video, video) == pytest.approx(1.0, abs=1e-9)
    as_written = lambda v: ((v.clamp(-1, 1) + 1) * 127.5).round()[0].transpose(0, 1) / 255  # noqa: E731
    assert ssim(noisy, video) == pytest.approx(float(ssim_per_frame(as_written(noisy), as_written(video)).mean()), abs=1e-12)
    assert ssim(noisy, video) < 0.99


@pytest.fixture(scope="module")
def bank_and_backbone():
    backbone = tiny_random_backbone(seed=0)
    return build_bank(backbone, _clips(), stride=8, reference_candidates=3, seed=0), backbone


def test_bank_holds_prefix_exact_latents(bank_and_backbone):
    bank, backbone = bank_and_backbone
    assert bank.target.shape[1:3] == (4, 20) and bank.face.shape[1] == 77
    clip = _clips()[0]
    short = backbone.encode(clip.video[:13])
    assert torch.allclose(short, bank.target[:1, :, :4].float(), atol=2e-3)  # causal VAE: a prefix is the shorter chunk
    guided = backbone.temporal_guidance(clip.video[:1], 20, 32, 32)[0]
    assert torch.allclose(guided.half(), bank.guide[1][:1])


def test_training_step_is_deterministic_and_resumes_exactly(bank_and_backbone, tmp_path):
    bank, _ = bank_and_backbone

    def train(steps: range, model_backbone, optimizer, ema):
        for step in steps:
            generator = step_generator(0, step)
            batch = training_batch(bank, 2, 3, generator, (0.3, 0.5, 0.2))
            loss = flow_matching_step(model_backbone, batch, generator, 3.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ema.update(model_backbone.transformer, step)

    def fresh():
        backbone = tiny_random_backbone(seed=1)
        backbone.transformer.train()
        optimizer = torch.optim.AdamW(backbone.transformer.parameters(), lr=1e-3)
        return backbone, optimizer, ExponentialAverage(backbone.transformer, 0.9)

    straight = fresh()
    train(range(4), *straight)
    first = fresh()
    train(range(2), *first)
    save_checkpoint(tmp_path / "ckpt", first[0].transformer, first[1], {"step": 2}, extra={"ema": first[2].shadow})
    resumed = fresh()
    info = load_checkpoint(tmp_path / "ckpt", resumed[0].transformer, resumed[1], extra={"ema": resumed[2].shadow})
    assert info["step"] == 2
    train(range(2, 4), *resumed)
    for (name, a), b in zip(straight[0].transformer.state_dict().items(), resumed[0].transformer.state_dict().values()):
        assert torch.equal(a, b), name
    for name in straight[2].shadow:
        assert torch.equal(straight[2].shadow[name], resumed[2].shadow[name])
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))


def test_bank_round_trips_through_safetensors(bank_and_backbone, tmp_path):
    from safetensors.torch import load_file, save_file

    bank, _ = bank_and_backbone
    save_file({k: v.contiguous() for k, v in bank.tensors().items()}, str(tmp_path / "bank.safetensors"))
    loaded = WindowBank.from_tensors(load_file(str(tmp_path / "bank.safetensors")))
    assert torch.equal(loaded.guide[5], bank.guide[5]) and torch.equal(loaded.references, bank.references)


def test_reference_slot_can_be_left_out_of_the_loss(bank_and_backbone):
    bank, backbone = bank_and_backbone
    batch = training_batch(bank, 2, 3, step_generator(0, 7), (0.3, 0.5, 0.2))
    with torch.no_grad():
        every_slot = flow_matching_step(backbone, batch, step_generator(0, 7), 3.0)
        again = flow_matching_step(backbone, batch, step_generator(0, 7), 3.0)
        generated_only = flow_matching_step(backbone, batch, step_generator(0, 7), 3.0, reference_slot=False)
    assert torch.equal(every_slot, again)
    assert not torch.equal(every_slot, generated_only)


def test_model_card_command_spells_out_every_weight_changing_option():
    from methods.wan.train_base import COMMAND_OPTIONS, build_parser, training_command

    args = build_parser().parse_args(["--steps", "9000", "--reference-slot-loss-from", "4500"])
    command = training_command(args)
    assert command.startswith("python -m methods.wan.train_base ") and command.endswith(" --export")
    assert "--steps 9000" in command and "--reference-slot-loss-from 4500" in command
    assert all(f"--{name.replace('_', '-')} " in command for name in COMMAND_OPTIONS)
    assert build_parser().parse_args(command.split()[3:-1]) == args
