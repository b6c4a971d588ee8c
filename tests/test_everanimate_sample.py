"""``python -m everanimate.sample``: one reference image animated outside any split, through the
runner's chunk loop, on a synthetic clip's reference, pose and face videos."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import evaluate, rollout
from benchmark.errors import BuildError
from benchmark.protocol import Protocol
from benchmark.rollout import generate_clip, plan_clip, reflect_indices
from benchmark.splits.build import build_split
from benchmark.splits.manifest import load_split
from benchmark.splits.synthetic.cache import render_split
from benchmark.splits.synthetic.spec import SyntheticSpec
from benchmark.video import probe, read_frames, write_video
from everanimate import sample
from methods.everanimate import EverAnimate
from methods.wan.presets import tiny_random_backbone

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
# 100 frames = 4 s: two 77-frame chunks with everanimate's 4-frame carry-over (starts 0 and 73).
SPEC = SyntheticSpec("sample-synthetic", "1", num_clips=1, num_frames=100, seed_offset=0)
SECONDS, STEPS = 4, 2


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample_split") / "split"
    render_split(SPEC, folder)
    return load_split(folder)


@pytest.fixture(scope="module")
def clip_files(split) -> dict[str, Path]:
    clip = split.clips[0]
    return {"reference": split.path(clip, "reference"), "pose": split.path(clip, "pose_video"), "face": split.path(clip, "face_video")}


def sample_args(files: dict[str, Path], out: Path, *extra: str, seconds: float = SECONDS) -> list[str]:
    given = [arg for key in ("reference", "pose", "face") if key in files for arg in (f"--{key}", str(files[key]))]
    return [*given, "--seconds", str(seconds), "--steps", str(STEPS), "--clip-id", SPEC.clip_id(0), "--out", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def runner_video(split, tmp_path_factory) -> tuple[torch.Tensor, str]:
    """What ``benchmark.run`` generates for the clip (its generate step), and the protocol hash."""
    method = EverAnimate(steps=STEPS)
    protocol = method.effective_protocol(split.protocol(horizons_s=(float(SECONDS),)))
    plan = plan_clip(protocol, split.clips[0], SECONDS * 25)
    video, _ = generate_clip(method, split, protocol, plan, tmp_path_factory.mktemp("runner"), "fp", False, torch.device("cpu"))
    return read_frames(video), protocol.hash


@pytest.fixture(scope="module")
def sampled(clip_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sampled") / f"{SPEC.clip_id(0)}.mkv"
    assert sample.main(sample_args(clip_files, out)) == 0
    return out


def test_the_sample_is_what_the_runner_generates_frame_for_frame(sampled, runner_video):
    frames, protocol_hash = runner_video
    assert frames.shape == (100, 96, 64, 3)
    assert torch.equal(read_frames(sampled), frames)
    record = json.loads(sampled.with_suffix(".json").read_text())
    assert record["method"]["name"] == "everanimate" and record["protocol_hash"] == protocol_hash
    assert record["lora_sha256"] == EverAnimate().lora_sha256 and record["lora_sha256"]
    assert record["seed"]["seed_base"] == 0 and record["seed"]["clip_id"] == SPEC.clip_id(0)
    assert (record["frames"], record["chunks"], record["output"]["lossless"]) == (100, 2, True)
    assert record["timing"]["wall_s"] > 0 and record["arguments"]["steps"] == STEPS
    assert not sampled.with_suffix(".work").exists()


def test_a_finished_output_is_left_alone_on_resume_and_refused_without_it(sampled, clip_files, capsys):
    assert sample.main(sample_args(clip_files, sampled, "--resume")) == 0
    assert "already complete" in capsys.readouterr().out
    assert sample.main(sample_args(clip_files, sampled)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_benchmark_evaluate_scores_the_written_mp4(split, clip_files, sampled, tmp_path, capsys):
    videos = tmp_path / "videos"
    out = videos / f"{SPEC.clip_id(0)}.mp4"
    assert sample.main(sample_args(clip_files, out)) == 0
    info = probe(out)
    assert (info.codec, info.width, info.height, info.num_frames, info.fps) == ("h264", 64, 96, 100, 25.0)
    lossy, exact = read_frames(out).float(), read_frames(sampled).float()
    assert 10 * math.log10(255**2 / float(((lossy - exact) ** 2).mean())) > 30
    code = evaluate.main(["--videos", str(videos), "--split", str(split.root), "--horizon", "4", "--metrics", "psnr,ssim", "--carry-over", "4", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((videos / "evaluation" / "results.json").read_text())
    assert results["clips_evaluated"] == [SPEC.clip_id(0)] and not results["clips_failed"]
    psnr = next(m for m in results["metrics"] if m["metric"] == "psnr" and m["horizon_s"] == 4.0)
    assert math.isfinite(psnr["value"]) and 5 < psnr["value"] < 100


def test_resume_after_an_interruption_gives_the_same_frames(clip_files, runner_video, tmp_path, monkeypatch, capsys):
    out = tmp_path / "resumed.mkv"
    original = rollout.step_chunk
    calls: list[int] = []

    def interrupted(method, context, plan, state, chunk):
        if chunk == 1:
            raise KeyboardInterrupt
        calls.append(chunk)
        return original(method, context, plan, state, chunk)

    monkeypatch.setattr(rollout, "step_chunk", interrupted)
    assert sample.main(sample_args(clip_files, out)) == 130
    assert "--resume" in capsys.readouterr().err
    work = out.with_suffix(".work")
    assert (work / "chunks" / "state_00000.json").is_file() and not out.exists()
    assert sample.main(sample_args(clip_files, out)) == 2
    assert "holds an interrupted run" in capsys.readouterr().err

    def counted(method, context, plan, state, chunk):
        calls.append(chunk)
        return original(method, context, plan, state, chunk)

    monkeypatch.setattr(rollout, "step_chunk", counted)
    assert sample.main(sample_args(clip_files, out, "--resume")) == 0
    assert calls == [0, 1]  # chunk 0 once, before the interruption; the resumed run made chunk 1 only
    assert torch.equal(read_frames(out), runner_video[0])
    assert not work.exists()
    assert json.loads(out.with_suffix(".json").read_text())["timing"]["chunks_generated"] == 1


def test_a_resume_with_other_options_is_refused(clip_files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "other.mkv"
    original = rollout.step_chunk
    stop_at = 0

    def interrupted(method, context, plan, state, chunk):
        if chunk == stop_at:
            raise KeyboardInterrupt
        return original(method, context, plan, state, chunk)

    monkeypatch.setattr(rollout, "step_chunk", interrupted)
    assert sample.main(sample_args(clip_files, out)) == 130
    assert "before anything was complete" in capsys.readouterr().err
    assert not out.with_suffix(".work").exists()
    stop_at = 1
    assert sample.main(sample_args(clip_files, out)) == 130
    assert (out.with_suffix(".work") / "chunks" / "state_00000.json").is_file()
    capsys.readouterr()
    assert sample.main(sample_args(clip_files, out, "--resume", "--steps", "3")) == 2
    assert "holds a run with other inputs or options" in capsys.readouterr().err


def test_the_record_of_another_output_is_not_taken_over(sampled, clip_files, capsys):
    assert sample.main(sample_args(clip_files, sampled.with_suffix(".mp4"))) == 2
    assert f"{sampled.with_suffix('.json')} belongs to {sampled}" in capsys.readouterr().err
    assert not sampled.with_suffix(".mp4").exists()


# ---- bad inputs: one line, exit 2 -------------------------------------------------------------


def _write(path: Path, frames: np.ndarray, fps: float = 25) -> Path:
    write_video(path, frames, fps)
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, clip_files) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    pose = read_frames(clip_files["pose"]).numpy()
    face = read_frames(clip_files["face"]).numpy()
    (root / "garbage.png").write_bytes(b"not an image at all")
    from PIL import Image

    Image.fromarray(np.zeros((90, 60, 3), np.uint8)).save(root / "odd.png")
    return {
        "garbage": root / "garbage.png",
        "odd_reference": root / "odd.png",
        "odd_pose": _write(root / "odd_pose.mkv", np.zeros((10, 90, 60, 3), np.uint8)),
        "odd_face": _write(root / "odd_face.mkv", np.zeros((10, 32, 32, 3), np.uint8)),
        "small_pose": _write(root / "small_pose.mkv", pose[:10, :48, :32]),
        "pose_30fps": _write(root / "pose30.mkv", pose[:10], fps=30),
        "face_30fps": _write(root / "face30.mkv", face[:10], fps=30),
        "face_24fps": _write(root / "face24.mkv", face, fps=24),
        "short_face": _write(root / "short_face.mkv", face[:50]),
        "oblong_face": _write(root / "oblong_face.mkv", np.zeros((100, 32, 40, 3), np.uint8)),
    }


BAD_INPUTS = {
    "unreadable image": ({"reference": "garbage"}, [], r"--reference .*garbage.png: cannot read the image"),
    "missing image": ({"reference": "absent"}, [], r"--reference .*absent.png: cannot read the image"),
    "pose smaller than the reference": ({"pose": "small_pose"}, [], r"--pose .*32x48, the reference is 64x96"),
    "face at another frame rate": ({"face": "face_24fps"}, [], r"--face .*face24.mkv: 24 fps, the protocol needs 25 fps"),
    "not 25 fps": ({"pose": "pose_30fps", "face": "face_30fps"}, [], r"--pose .*pose30.mkv: 30 fps, the protocol needs 25 fps"),
    "face not aligned with the pose": ({"face": "short_face"}, [], r"--face .*50 frames, --pose has 100"),
    "face not square": ({"face": "oblong_face"}, [], r"--face .*40x32, face crops must be square"),
    "size the backbone cannot take": (
        {"reference": "odd_reference", "pose": "odd_pose", "face": "odd_face"},
        ["--seconds", "0.4"],
        r"--reference .*odd.png: frames of 60x90 are not divisible by 8x8",
    ),
    "zero seconds": ({}, ["--seconds", "0"], r"--seconds 0: the output length must be a positive"),
    "negative seconds": ({}, ["--seconds", "-3"], r"--seconds -3: the output length must be a positive"),
    "nan seconds": ({}, ["--seconds", "nan"], r"--seconds nan: the output length must be a positive"),
    "longer than the pose video": ({}, ["--seconds", "5"], r"asks for 125 frames, --pose .* has 100 \(4.00 s\); pass --ping-pong"),
    "no face video": ({"face": None}, [], r"--face is missing: .*--driving VIDEO"),
    "unknown output format": ({"out": "out.avi"}, [], r"--out .*out.avi: the output must end in .mkv or .mp4"),
    "unknown method option": ({}, ["--method-arg", "colour=red"], r"method 'everanimate' has no option 'colour'"),
    "zero steps": ({}, ["--steps", "0"], r"sampling steps must be at least 1"),
    "unsafe clip id": ({}, ["--clip-id", "../x"], r"--clip-id '../x' is not a clip id"),
    "missing pose video": ({"pose": "absent"}, [], r"--pose: file .*absent.png: file does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_exit_2_with_one_line(case, clip_files, bad_files, tmp_path, capsys):
    replaced, extra, message = BAD_INPUTS[case]
    files = dict(clip_files)
    out = tmp_path / replaced.pop("out", "out.mkv")
    for key, name in replaced.items():
        files[key] = bad_files.get(name, tmp_path / f"{name}.png") if name else None
    code = sample.main(sample_args({k: v for k, v in files.items() if v is not None}, out, *extra))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() and not out.with_suffix(".work").exists()


def test_the_command_line_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "everanimate.sample", "--reference", str(tmp_path / "none.png"), "--pose", "p.mkv", "--face", "f.mkv", "--seconds", "1", "--out", str(tmp_path / "o.mp4")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "none.png: cannot read the image" in done.stderr
    helped = subprocess.run([sys.executable, "-m", "everanimate.sample", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert helped.returncode == 0 and "--ping-pong" in helped.stdout and "--driving" in helped.stdout and "--resume" in helped.stdout


# ---- ping-pong, seeds and --driving: the controls the method is given ---------------------------


class EchoEverAnimate(EverAnimate):
    """``everanimate`` on a tiny random backbone whose chunks are their own pose controls, recording the
    controls of every chunk: what the output shows is exactly what the chunk loop fed the method."""

    def __init__(self, **options):
        super().__init__(backbone=tiny_random_backbone(seed=0), lora="none", steps=1, **options)
        self.controls: list = []

    def generate_chunk(self, state, controls):
        self.controls.append(controls)
        return controls.pose.clone(), state


@pytest.fixture
def echo(monkeypatch) -> list[EchoEverAnimate]:
    built: list[EchoEverAnimate] = []

    def build(args):
        built.append(EchoEverAnimate())
        return built[-1]

    monkeypatch.setattr(sample, "build_method", build)
    return built


def test_ping_pong_plays_the_controls_forward_and_backward(clip_files, echo, tmp_path):
    out = tmp_path / "long.mkv"
    assert sample.main(sample_args(clip_files, out, "--ping-pong", "--seed", "7", seconds=5)) == 0
    pose, face = read_frames(clip_files["pose"]), read_frames(clip_files["face"])
    assert torch.equal(read_frames(out), pose[torch.from_numpy(reflect_indices(0, 125, 100))])
    controls = echo[0].controls
    assert [c.start for c in controls] == [0, 73]
    for chunk in controls:
        index = torch.from_numpy(reflect_indices(chunk.start, chunk.start + 77, 100))
        assert torch.equal(chunk.pose, pose[index]) and torch.equal(chunk.face, face[index])
        assert chunk.generator.initial_seed() == Protocol(64, 96, seed_base=7).chunk_seed(SPEC.clip_id(0), chunk.index)
    # Chunk 1 covers frames 73-149: frame 99 is the turning point and frame 149 plays pose frame 49.
    assert torch.equal(controls[1].pose[26], pose[99]) and torch.equal(controls[1].pose[-1], pose[49])
    assert json.loads(out.with_suffix(".json").read_text())["ping_pong"] is True


def _driving_video(path: Path) -> Path:
    from test_build import write_source_video

    write_source_video(path, 100, 150, 30, 66)  # 2.2 s at 30 fps -> 55 frames at 25 fps
    return path


def test_driving_video_is_turned_into_controls_by_the_split_builder(clip_files, echo, tmp_path, monkeypatch):
    from test_build import StubEstimator

    videos = tmp_path / "videos"
    videos.mkdir()
    driving = _driving_video(videos / "dance.mp4")
    monkeypatch.setattr(sample, "load_pose_estimator", lambda *args, **kwargs: StubEstimator())
    out = tmp_path / "driven.mkv"
    args = ["--reference", str(clip_files["reference"]), "--driving", str(driving), "--face-size", "32", "--seconds", "2", "--out", str(out), "--no-progress", "--keep-work"]
    assert sample.main(args) == 0
    built = build_split(videos, tmp_path / "built", pose_estimator=StubEstimator(), horizons=[2], face_size=32, landscape_size=(96, 64), progress=False)
    clip = built.clips[0]
    extracted = out.with_suffix(".work") / "driving" / "clips" / "driving"
    for field, name in (("pose_video", "pose.mkv"), ("face_video", "face.mkv")):
        assert torch.equal(read_frames(extracted / name), read_frames(built.path(clip, field)))
    built_pose = read_frames(built.path(clip, "pose_video"))
    assert torch.equal(read_frames(out), built_pose[:50])
    controls = echo[0].controls[0]
    assert torch.equal(controls.pose, built_pose[reflect_indices(0, 77, 55)])
    keypoints, _ = built.load_keypoints(clip)
    assert np.array_equal(controls.keypoints, keypoints[reflect_indices(0, 77, 55)])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["inputs"]["driving"]["frames"] == 55 and record["controls_frames"] == 55


def test_driving_without_pose_weights_gives_the_builders_message(clip_files, echo, tmp_path, monkeypatch, capsys):
    class UnreachableWholebody:
        MODE = {"performance": {"det": "det.onnx", "det_input_size": (640, 640), "pose": "pose.onnx", "pose_input_size": (288, 384)}}

        def __init__(self, **kwargs):
            raise ConnectionError("cannot download https://download.openmmlab.com/rtmw.onnx: no network")

    monkeypatch.setitem(sys.modules, "rtmlib", types.SimpleNamespace(Wholebody=UnreachableWholebody))
    videos = tmp_path / "videos"
    videos.mkdir()
    driving = _driving_video(videos / "dance.mp4")
    with pytest.raises(BuildError) as builder:
        build_split(videos, tmp_path / "built", horizons=[2], progress=False)
    out = tmp_path / "driven.mkv"
    code = sample.main(["--reference", str(clip_files["reference"]), "--driving", str(driving), "--seconds", "2", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: {builder.value}"
    assert "--det-model / --pose-model" in err and "EVERANIMATE_POSE_MODEL" in err and err.count("\n") == 1
    assert not out.exists() and not out.with_suffix(".work").exists()


def test_driving_and_pose_together_are_refused(clip_files, tmp_path, capsys):
    args = sample_args(clip_files, tmp_path / "o.mkv", "--driving", str(clip_files["pose"]))
    assert sample.main(args) == 2
    assert "give either --driving or --pose and --face" in capsys.readouterr().err
