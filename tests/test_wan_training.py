"""The training code of the synthetic preset on tiny models and random data: the traps it must avoid
(clamped decoder output), deterministic steps and exact resume from safetensors checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from methods.wan.checkpoint import load_checkpoint, save_checkpoint, step_generator
from methods.wan.data import ClipArrays, psnr, ssim
from methods.wan.presets import TINY_VAE_CONFIG, build_vae, tiny_random_backbone
from methods.wan.train_base import ExponentialAverage, WindowBank, build_bank, flow_matching_step, training_batch
from methods.wan.train_vae import decode_unclamped, reconstruction_loss, sample_batch
from methods.wan.training import learning_rate


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


def test_both_training_scripts_run_on_the_shared_helpers():
    from methods.wan import train_base, train_vae, training

    for name in ("DEFAULT_ROOT", "learning_rate", "resume_run", "save_run", "LossLog", "record_evaluation"):
        assert getattr(train_vae, name) is getattr(training, name) and getattr(train_base, name) is getattr(training, name)


def test_training_helpers_decide_when_to_log_evaluate_and_save(tmp_path):
    from methods.wan.training import LOG_EVERY, LossLog, due

    assert [step for step in range(1, 11) if due(step, 4, 10, out_of_time=False)] == [4, 8, 10]
    assert due(3, 4, 10, out_of_time=True)

    class Bar:
        postfix = None

        def set_postfix(self, **values):
            self.postfix = values

    bar, log = Bar(), tmp_path / "train.log"
    losses = LossLog(log, bar)
    for step in range(1, 2 * LOG_EVERY + 1):
        losses.add(step, float(step), 0.5, minutes=1.0)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["step"] for line in lines] == [LOG_EVERY, 2 * LOG_EVERY]
    assert lines[1]["loss"] == pytest.approx(sum(range(LOG_EVERY + 1, 2 * LOG_EVERY + 1)) / LOG_EVERY)
    assert lines[0]["lr"] == 0.5 and lines[0]["steps_per_s"] > 0 and bar.postfix == {"loss": f"{lines[1]['loss']:.4f}"}


def test_vae_training_command_resumes_to_the_same_weights(tiny_split_dir, tmp_path, single_thread):
    """``python -m methods.wan.train_vae`` stopped after 2 steps and rerun to 3 ends where a 3-step run
    ends, to the bit; the evaluations and the export come from the shared training helpers."""
    from conftest import make_tiny_split
    from safetensors.torch import load_file

    from methods.wan.train_vae import EVAL_WINDOWS, main

    eval_split = make_tiny_split(tmp_path / "eval", num_clips=1, num_frames=max(start + length for start, length in EVAL_WINDOWS))
    common = ["--train-split", str(tiny_split_dir), "--eval-split", str(eval_split), "--batch", "1", "--eval-every", "2", "--save-every", "1", "--threads", "1"]

    def run(name: str, steps: int) -> None:
        assert main([*common, "--steps", str(steps), "--run-dir", str(tmp_path / name), "--export", str(tmp_path / name / "export")]) == 0

    run("straight", 3)
    run("resumed", 2)
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())["step"] == 2
    run("resumed", 3)
    for part in ("model", "optimizer"):
        straight = load_file(str(tmp_path / "straight" / "checkpoint" / f"{part}.safetensors"))
        resumed = load_file(str(tmp_path / "resumed" / "checkpoint" / f"{part}.safetensors"))
        assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight), part
    states = [json.loads((tmp_path / name / "checkpoint" / "state.json").read_text()) for name in ("straight", "resumed")]
    assert [s["step"] for s in states] == [3, 3] and states[1]["args"]["steps"] == "3"
    histories = [[{k: v for k, v in record.items() if k != "minutes"} for record in state["history"]] for state in states]
    assert [record["step"] for record in histories[0]] == [2, 3] and histories[0] == histories[1]
    logged = [json.loads(line) for line in (tmp_path / "resumed" / "train.log").read_text().splitlines()]
    assert [line["eval"]["step"] for line in logged if "eval" in line] == [2, 3]
    assert (tmp_path / "resumed" / "export" / "vae" / "MODEL_CARD.md").exists()
