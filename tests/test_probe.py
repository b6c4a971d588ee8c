"""The recovery probe (benchmark.probe) and the methods' memory hooks: the half-life rule, known
recoveries of fake methods, not-applicable methods, the clean branch against benchmark.run, input
errors, and perturb_memory of wan-animate and everanimate."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_split
from fake_methods import CarriedMemory

from benchmark import probe
from benchmark import run as run_cli
from benchmark.metrics.frame import mean_psnr
from benchmark.probe import ProbeResults, half_life
from benchmark.protocol import Protocol
from benchmark.video import read_frames
from methods.base import MemoryNotApplicable, Perturbation

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
# 460 frames hold chunks 0..5 of 77 frames with one carried-over frame (5 * 76 + 77 = 457).
LONG_FRAMES = 460


@pytest.fixture(scope="module")
def long_split_dir(tmp_path_factory) -> Path:
    return make_tiny_split(tmp_path_factory.mktemp("probe_split"), num_clips=2, num_frames=LONG_FRAMES)


def run_probe(args: list[str], out: Path) -> int:
    return probe.main([*args, "--out", str(out), "--no-progress"])


# ---- the half-life rule --------------------------------------------------------------------------
def test_half_life_is_interpolated_between_chunks():
    assert half_life([4.0, 2.0, 1.0], 0.01).chunks == pytest.approx(1.0)
    assert half_life([4.0, 3.0, 1.0], 0.01).chunks == pytest.approx(1.5)  # 2 dB is reached half-way from chunk 1 to 2
    assert half_life([4.0, 1.0], 0.01).chunks == pytest.approx(2 / 3)
    recovered = half_life([4.0, 3.0, 1.0], 0.01)
    assert recovered.status == "recovered" and recovered.grows is False and recovered.text == "1.50 chunks"


def test_half_life_says_when_there_is_none():
    flat = half_life([4.0, 4.0, 4.0], 0.01)
    assert flat.status == "not_recovered" and flat.chunks is None and flat.text == "does not recover within 2 chunks" and not flat.grows
    growing = half_life([1.0, 2.0, 3.0], 0.01)
    assert growing.status == "not_recovered" and growing.grows
    assert half_life([0.001, 0.5], 0.01).status == "no_excess"
    assert half_life([-0.2, -0.1], 0.01).status == "no_excess"
    assert half_life([3.0], 0.01).status == "too_short"
    assert half_life([], 0.01).status == "no_data"


# ---- known recoveries --------------------------------------------------------------------------------
def test_a_memory_carried_exactly_keeps_a_constant_excess(long_split_dir, tmp_path):
    out = tmp_path / "exact"
    args = ["--method", "fake_methods:CarriedMemory", "--method-arg", "blend=0", "--perturb", "brightness:0.2", "--at-chunk", "1", "--chunks", "4"]
    assert run_probe([*args, "--split", str(long_split_dir), "--limit", "1"], out) == 0
    results = ProbeResults.load(out)
    excess = results.excess()
    assert len(excess) == 4 and excess[0] > 1.0
    assert max(excess) - min(excess) < 0.05
    assert results.half_life.status == "not_recovered" and results.half_life.grows is False
    assert results.difference_half_life.status == "not_recovered"
    assert all(p.mean["psnr_between_db"] < 60 for p in results.curve)


def test_a_memory_halved_every_chunk_has_a_half_life_of_one_chunk(long_split_dir, tmp_path, capsys):
    out = tmp_path / "halved"
    args = ["--method", "fake_methods:CarriedMemory", "--method-arg", "blend=0.5", "--perturb", "brightness:0.2", "--at-chunk", "1", "--chunks", "4"]
    assert run_probe([*args, "--split", str(long_split_dir)], out) == 0
    printed = capsys.readouterr().out
    assert "half-life of the excess PSNR loss: 1.0" in printed and "the excess does not grow" in printed
    results = ProbeResults.load(out)
    assert results.applicable and results.memory == "the carried frame"
    assert results.half_life.status == "recovered" and results.half_life.chunks == pytest.approx(1.0, abs=0.05)
    excess = results.excess()
    assert all(later == pytest.approx(earlier / 2, rel=0.05) for earlier, later in zip(excess, excess[1:]))
    for clip in results.clips:
        assert clip.half_life.chunks == pytest.approx(1.0, abs=0.05)
    # Means over the two clips, with standard errors, on the runner's protocol and the split's hash.
    assert results.clips_evaluated == ["tiny00", "tiny01"] and all(p.num_clips == 2 and p.stderr["excess_psnr_loss_db"] is not None for p in results.curve)
    from benchmark.splits.manifest import load_split

    split = load_split(long_split_dir)
    protocol = CarriedMemory(blend=0.5).effective_protocol(split.protocol())
    assert results.protocol_hash == protocol.hash and results.split["content_hash"] == split.content_hash
    # Only kept frames are scored: chunk k covers output frames [76 k + 1, 76 k + 77).
    chunk = results.clips[0].chunks[0]
    assert (chunk.chunk, chunk.first_frame, chunk.stop_frame) == (1, 77, 153)
    assert len(results.clips[0].frames["frame"]) == 4 * 76
    assert results.schema_version == probe.SCHEMA_VERSION and results.kind == probe.KIND
    assert results.timing["chunks_generated"] == 2 * (1 + 2 * 4) and (out / "probe.png").stat().st_size > 0
    raw = json.loads((out / "probe.json").read_text())
    assert ProbeResults.from_dict(raw).to_dict() == raw
    # A second probe into the same folder needs --overwrite.
    assert run_probe([*args, "--split", str(long_split_dir), "--limit", "1"], out) == 2
    assert "already holds a probe" in capsys.readouterr().err


def test_the_clean_branch_is_what_the_runner_generates(tiny_split_dir, tiny_split, tmp_path):
    run_out = tmp_path / "run"
    assert run_cli.main(["--method", "fake_methods:CarriedMemory", "--method-arg", "blend=0.5", "--split", str(tiny_split_dir), "--horizon", "10", "--limit", "1", "--metrics", "psnr", "--no-progress", "--out", str(run_out)]) == 0
    video = read_frames(run_out / "videos" / "tiny00.mkv")
    method = CarriedMemory(blend=0.5)
    protocol = method.effective_protocol(tiny_split.protocol())
    seen = []
    perturbation = Perturbation("saturation", 1.0, probe.perturbation_seed(protocol, "tiny00", 1))
    record = probe.probe_clip(
        method, tiny_split, protocol, tiny_split.clips[0], 1, 2, perturbation, torch.device("cpu"),
        on_chunk=lambda chunk, clean, perturbed: seen.append((chunk, clean, perturbed)),
    )  # fmt: skip
    assert [chunk for chunk, _, _ in seen] == [1, 2]
    for (chunk, clean, perturbed), scores in zip(seen, record.chunks):
        assert torch.equal(clean, video[scores.first_frame : scores.stop_frame])
        assert not torch.equal(perturbed, clean)
        assert scores.psnr_clean_db == pytest.approx(mean_psnr(video[scores.first_frame : scores.stop_frame], tiny_split_truth(tiny_split, scores)))


def tiny_split_truth(split, scores) -> torch.Tensor:
    clip = split.clips[0]
    return read_frames(split.path(clip, "video"), scores.first_frame, scores.stop_frame, clip_id=clip.id)


# ---- not applicable ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, reason",
    [
        (["reference-copy"], "repeats the reference frame"),
        (["ground-truth"], "reads the ground truth"),
        (["vae-roundtrip"], "passed through the VAE"),
        (["unianimate-dit"], "not chunked"),
        (["wan-animate", "--method-arg", "refert_num=0"], "refert_num=0 carries nothing"),
        (["everanimate", "--method-arg", "lora=none", "--method-arg", "carry=none"], "carry=none keeps no motion memory"),
        (["fake_methods:NoisyDrift"], "does not say what it carries"),
    ],
)
def test_methods_that_carry_nothing_are_not_applicable(tiny_split_dir, tmp_path, capsys, method, reason):
    out = tmp_path / "probe"
    assert run_probe(["--method", *method, "--perturb", "saturation:1", "--at-chunk", "1", "--chunks", "2", "--split", str(tiny_split_dir)], out) == 0
    assert reason in capsys.readouterr().out
    results = ProbeResults.load(out)
    assert not results.applicable and reason in results.not_applicable_reason
    assert results.half_life.status == "not_applicable" and results.half_life.chunks is None
    assert results.clips == [] and results.curve == [] and results.timing["chunks_generated"] == 0


def test_everanimate_without_motion_memory_still_perturbs_its_identity_memory_on_request():
    from methods.everanimate import EverAnimate
    from methods.wan.presets import tiny_random_backbone

    method = EverAnimate(backbone=tiny_random_backbone(), lora="none", carry="none")
    with pytest.raises(MemoryNotApplicable):
        method.describe_memory(Perturbation("saturation", 1.0))
    assert "identity memory" in method.describe_memory(Perturbation("saturation", 1.0, identity=True))


# ---- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        ({"--perturb": "saturate:2"}, "unknown perturbation 'saturate'"),
        ({"--perturb": "saturation"}, "give NAME:STRENGTH"),
        ({"--perturb": "saturation:lots"}, "is not a number"),
        ({"--perturb": "saturation:nan"}, "finite strength"),
        ({"--perturb": "clahe:2"}, "clahe takes a finite strength in [0, 1]"),
        ({"--at-chunk": "0"}, "K must be at least 1"),
        ({"--chunks": "0"}, "record at least 1 chunk"),
        ({"--at-chunk": "2", "--chunks": "2"}, "at most --chunks 1 fit after --at-chunk 2"),
        ({"--method": "no-such-method"}, "unknown method 'no-such-method'"),
        ({"--method-arg": "blendd=1"}, "has no option 'blendd'"),
        ({"--limit": "0"}, "--limit must be at least 1"),
        ({"--device": "meta"}, "only cpu and cuda"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(tiny_split_dir, tmp_path, capsys, change, message):
    options = {"--method": "fake_methods:CarriedMemory", "--perturb": "saturation:1", "--at-chunk": "1", "--chunks": "2", "--split": str(tiny_split_dir), **change}
    args = [item for pair in options.items() for item in pair]
    out = tmp_path / "probe"
    assert run_probe(args, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not (out / "probe.json").exists()


# ---- overlaying probes -----------------------------------------------------------------------------------
def test_plot_overlays_probes_and_refuses_another_split(tiny_split_dir, long_split_dir, tmp_path, capsys):
    common = ["--perturb", "brightness:0.2", "--at-chunk", "1", "--chunks", "2", "--split", str(tiny_split_dir), "--limit", "1"]
    assert run_probe(["--method", "fake_methods:CarriedMemory", "--method-arg", "blend=0.5", *common], tmp_path / "half") == 0
    assert run_probe(["--method", "fake_methods:CarriedMemory", "--method-arg", "blend=0", *common], tmp_path / "exact") == 0
    assert run_probe(["--method", "reference-copy", *common], tmp_path / "copy") == 0
    capsys.readouterr()
    plot = tmp_path / "overlay.png"
    assert probe.main(["plot", str(tmp_path / "half"), str(tmp_path / "exact"), str(tmp_path / "copy"), "--out", str(plot), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "carried-memory (blend=0.5)" in printed and "carried-memory (blend=0.0)" in printed
    assert "not applicable (carries nothing between chunks" in printed and plot.stat().st_size > 0
    assert run_probe(["--method", "reference-copy", *common[:-3], str(long_split_dir)], tmp_path / "other") == 0
    capsys.readouterr()
    assert probe.main(["plot", str(tmp_path / "half"), str(tmp_path / "other")]) == 2
    assert "differs from" in capsys.readouterr().err
    assert probe.main(["plot", str(tmp_path / "missing")]) == 2


def test_importing_the_probe_loads_neither_everanimate_nor_diffusers():
    code = "import sys, benchmark.probe; print(sorted(m for m in sys.modules if m.split('.')[0] in ('everanimate', 'diffusers')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_perturbation_is_the_training_operator_seeded_apart_from_the_sampling_noise():
    from everanimate.rfm import perturb

    frames = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    perturbation = Perturbation("color_shift", 0.1, seed=11)
    assert torch.equal(perturbation.apply(frames), perturb(frames, "color_shift", 0.1, torch.Generator().manual_seed(11)))
    assert torch.equal(perturbation.apply(frames), perturbation.apply(frames))
    assert torch.equal(Perturbation("saturation", 0.0).apply(frames), frames)
    protocol = Protocol(64, 96)
    seeds = {probe.perturbation_seed(protocol, clip, 2) for clip in ("a", "b")}
    assert len(seeds) == 2 and protocol.chunk_seed("a", 2) not in seeds


# ---- the hooks of the Wan methods ------------------------------------------------------------------------
# 21 frames = 6 latent slots, as in test_everanimate_method.py.
HOOK_PROTOCOL = Protocol(width=32, height=32, chunk_frames=21, sampling_steps=2)


def _two_chunks(method, clip_frames: int = 60):
    """The state after chunk 0 and a function generating chunk 1 from a state."""
    from methods.wan.random_clip import random_clip_context

    protocol = method.effective_protocol(HOOK_PROTOCOL)
    clip = random_clip_context(protocol, clip_frames, face_size=16)
    _, state = method.generate_chunk(method.start(clip), clip.read_controls(0, 21, 0))
    stride = 21 - protocol.carry_over

    def next_chunk(from_state):
        frames, _ = method.generate_chunk(from_state, clip.read_controls(stride, stride + 21, 1))
        return frames

    return state, next_chunk


def _snapshot(state):
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in state.items()}


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("make", ["wan-animate", "everanimate-image-carry"])
def test_image_carry_hooks_perturb_the_carried_frames_only(make):
    from methods.everanimate import EverAnimate
    from methods.wan.presets import tiny_random_backbone
    from methods.wan_animate import WanAnimate

    backbone = tiny_random_backbone()
    method = WanAnimate(backbone=backbone, steps=2) if make == "wan-animate" else EverAnimate(backbone=backbone, lora="none", carry="image", steps=2)
    state, next_chunk = _two_chunks(method)
    before = _snapshot(state)
    clean = next_chunk(state)
    unchanged = method.perturb_memory(state, Perturbation("saturation", 0.0, seed=1))
    assert torch.equal(next_chunk(unchanged), clean)
    strong = method.perturb_memory(state, Perturbation("saturation", 2.0, seed=1))
    assert not torch.equal(strong["carry_frames"], state["carry_frames"])
    assert all(torch.equal(strong[k], state[k]) for k in state if k != "carry_frames" and isinstance(state[k], torch.Tensor))
    assert not torch.equal(next_chunk(strong), clean)
    assert _same_state(state, before)


def test_wan_animate_without_carried_frames_is_not_applicable():
    from methods.wan.presets import tiny_random_backbone
    from methods.wan_animate import WanAnimate

    method = WanAnimate(backbone=tiny_random_backbone(), refert_num=0, steps=2)
    with pytest.raises(MemoryNotApplicable, match="refert_num=0"):
        method.perturb_memory({}, Perturbation("saturation", 1.0))


def test_everanimate_round_trips_the_motion_memory_once_in_later_slots():
    """On the tiny random backbone: the motion slices are decoded behind a one-slice prefix (1 + 4 r
    frames), encoded once, and come back with their shape; the identity memory moves only when asked."""
    from methods.everanimate import EverAnimate
    from methods.wan.presets import tiny_random_backbone

    backbone = tiny_random_backbone()
    method = EverAnimate(backbone=backbone, lora="none", motion_latents=2, steps=2)
    state, next_chunk = _two_chunks(method)
    before = _snapshot(state)
    calls = []
    decode, encode = backbone.decode, backbone.encode
    backbone.decode = lambda latent: calls.append(("decode", tuple(latent.shape))) or decode(latent)
    backbone.encode = lambda frames: calls.append(("encode", tuple(frames.shape))) or encode(frames)
    try:
        perturbed = method.perturb_memory(state, Perturbation("saturation", 1.0, seed=1))
    finally:
        backbone.decode, backbone.encode = decode, encode
    channels = state["motion"].shape[1]
    assert calls == [("decode", (1, channels, 3, 8, 8)), ("encode", (9, 32, 32, 3))]
    assert perturbed["motion"].shape == state["motion"].shape and not torch.equal(perturbed["motion"], state["motion"])
    assert torch.equal(perturbed["identity"], state["identity"]) and _same_state(state, before)
    with_identity = method.perturb_memory(state, Perturbation("saturation", 1.0, seed=1, identity=True))
    assert with_identity["identity"].shape == state["identity"].shape and not torch.equal(with_identity["identity"], state["identity"])
    assert torch.equal(with_identity["motion"], perturbed["motion"])
    assert not torch.equal(next_chunk(perturbed), next_chunk(state))


def test_everanimate_strength_zero_barely_moves_the_next_chunk_and_a_strong_perturbation_does(tiny_split):
    """A random VAE is no autoencoder, so this runs on the shipped synthetic backbone (a trained VAE and
    the stage-1 LoRA; 2 sampling steps) on the tiny split: strength 0 costs the one round trip only."""
    from benchmark.rollout import build_context, plan_clip, step_chunk
    from methods.everanimate import EverAnimate

    method = EverAnimate(lora="stage1", steps=2)
    protocol = method.effective_protocol(tiny_split.protocol())
    clip = tiny_split.clips[0]
    context = build_context(tiny_split, clip, protocol, torch.device("cpu"))
    plan = plan_clip(protocol, clip, probe.frames_needed(protocol, 1, 1))
    _, state, _ = step_chunk(method, context, plan, method.start(context), 0)
    clean, _, _ = step_chunk(method, context, plan, state, 1)

    def distance(strength: float) -> float:
        frames, _, _ = step_chunk(method, context, plan, method.perturb_memory(state, Perturbation("saturation", strength, seed=0)), 1)
        return mean_psnr(frames, clean)

    unchanged, strong = distance(0.0), distance(2.0)
    assert unchanged > 35 and unchanged > strong + 3
    assert math.isfinite(strong)
