"""End to end: benchmark.run and benchmark.evaluate on the tiny split, bad inputs, kill and resume."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import evaluate as evaluate_cli
from benchmark import run as run_cli
from benchmark.results import RunResults, csv_columns
from benchmark.video import write_video

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--metrics", "psnr,ssim,f_psnr,seam", "--no-progress"]


def run(args, tmp_path, name="out"):
    out = tmp_path / name
    code = run_cli.main([*args, "--out", str(out), *FAST])
    return code, out


def test_ground_truth_hits_the_caps(tmp_path, tiny_split_dir):
    code, out = run(["--method", "ground-truth", "--split", str(tiny_split_dir), "--horizon", "4", "--limit", "1"], tmp_path)
    assert code == 0
    results = RunResults.load(out / "results.json")
    assert results.value("psnr", 4) == 100.0
    assert results.value("ssim", 4) == pytest.approx(1.0, abs=1e-6)
    assert results.value("f_psnr", 4) == 100.0
    assert results.value("seam", 4) == 1.0  # the runner knows its chunk boundaries: ground truth has no seams
    assert results.limit == 1 and not results.comparable
    assert results.protocol_hash and results.split["content_hash"] and results.packages["torch"]
    assert results.method == {"name": "ground-truth", "arguments": {}}
    assert results.clips_evaluated == ["tiny00"] and results.clips_failed == {}
    for name in ("windows.jsonl", "summary.csv", "drift.png"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert tuple(rows[0]) == csv_columns() and rows[0]["horizon_s"] == "4" and rows[0]["limited"] == "true"
    windows = [json.loads(line) for line in (out / "windows.jsonl").open()]
    assert {w["window"] for w in windows if w["metric"] == "psnr"} == {0, 1, 2, 3}


def test_reference_copy_is_worse_than_ground_truth_and_records_horizons(tmp_path, tiny_split_dir):
    code, out = run(["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "10"], tmp_path)
    assert code == 0
    results = RunResults.load(out / "results.json")
    assert results.horizons == [2.0, 10.0]
    assert results.comparable
    for horizon in (2, 10):
        assert 10 < results.value("psnr", horizon) < 100
        assert results.value("ssim", horizon) < 1
    stderr = [m.stderr for m in results.metrics if m.metric == "psnr"]
    assert all(s is not None and s >= 0 for s in stderr)


def test_existing_output_needs_resume_or_overwrite(tmp_path, tiny_split_dir):
    args = ["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2", "--limit", "1"]
    assert run(args, tmp_path)[0] == 0
    assert run(args, tmp_path)[0] == 2
    assert run([*args, "--overwrite"], tmp_path)[0] == 0
    assert run([*args, "--resume"], tmp_path)[0] == 0
    other = ["--method", "ground-truth", "--split", str(tiny_split_dir), "--horizon", "2", "--limit", "1", "--resume"]
    assert run(other, tmp_path)[0] == 2


@pytest.mark.parametrize(
    "method, problem",
    [
        ("fake_methods:WrongShape", "shape"),
        ("fake_methods:NaNFrames", "NaN"),
        ("fake_methods:OutOfRange", "out of range"),
    ],
)
def test_bad_method_output_fails_the_clip(tmp_path, tiny_split_dir, method, problem):
    code, out = run(["--method", method, "--split", str(tiny_split_dir), "--horizon", "2"], tmp_path)
    assert code == 1
    results = RunResults.load(out / "results.json")
    assert set(results.clips_failed) == {"tiny00", "tiny01"}
    assert all(problem in reason and "chunk 0" in reason for reason in results.clips_failed.values())
    assert all(m.value is None and m.num_clips == 0 for m in results.metrics if m.metric == "psnr")


def test_one_failing_clip_does_not_stop_the_others(tmp_path, tiny_split_dir, capsys):
    code, out = run(["--method", "fake_methods:FailsOnSecondClip", "--split", str(tiny_split_dir), "--horizon", "2"], tmp_path)
    assert code == 1
    results = RunResults.load(out / "results.json")
    assert results.clips_evaluated == ["tiny00"]
    assert list(results.clips_failed) == ["tiny01"] and "clip 'tiny01'" in results.clips_failed["tiny01"]
    assert not results.comparable
    psnr = [m for m in results.metrics if m.metric == "psnr"][0]
    assert psnr.num_clips == 1 and psnr.value is not None
    captured = capsys.readouterr()
    assert "FAILED tiny01" in captured.out + captured.err
    assert not (out / "videos" / "tiny01.mkv").exists()


def _run_subprocess(args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "benchmark.run", *args, *FAST], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_killed_run_resumes_to_identical_metrics(tmp_path, tiny_split_dir):
    common = ["--method", "fake_methods:NoisyDrift", "--split", str(tiny_split_dir), "--horizon", "4", "--horizon", "10"]
    full = _run_subprocess([*common, "--out", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr

    killed = _run_subprocess([*common, "--out", str(tmp_path / "resumed")], {"NOISY_DRIFT_KILL_AT_CHUNK": "2"})
    assert killed.returncode == 9
    work = tmp_path / "resumed" / "work" / "tiny00"
    assert sorted(p.name for p in work.glob("segment_*")) == ["segment_00000.mkv", "segment_00001.mkv"]
    assert not (tmp_path / "resumed" / "results.json").exists()

    resumed = _run_subprocess([*common, "--out", str(tmp_path / "resumed"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a = RunResults.load(tmp_path / "full" / "results.json")
    b = RunResults.load(tmp_path / "resumed" / "results.json")
    assert [(m.horizon_s, m.metric, m.value) for m in a.metrics] == [(m.horizon_s, m.metric, m.value) for m in b.metrics]
    assert b.timing["chunks_generated"] < a.timing["chunks_generated"]
    assert (tmp_path / "full" / "videos" / "tiny00.mkv").read_bytes() == (tmp_path / "resumed" / "videos" / "tiny00.mkv").read_bytes()


def test_evaluate_external_videos(tmp_path, tiny_split_dir, tiny_split):
    videos = tmp_path / "videos"
    videos.mkdir()
    from benchmark.video import read_frames

    truth = read_frames(tiny_split.path(tiny_split.clips[0], "video"))
    write_video(videos / "tiny00.mkv", truth, 25)
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(tiny_split_dir), "--horizon", "4", "--out", str(tmp_path / "eval"), *FAST])
    assert code == 1  # tiny01 has no video
    results = RunResults.load(tmp_path / "eval" / "results.json")
    assert results.value("psnr", 4) == 100.0
    assert "tiny01" in results.clips_failed and "no video" in results.clips_failed["tiny01"]
    assert results.value("seam", 4) is None and "chunk structure unknown" in results.record("seam", 4).unavailable_reason


def test_evaluate_names_the_file_on_bad_videos(tmp_path, tiny_split_dir, tiny_split):
    videos = tmp_path / "videos"
    videos.mkdir()
    import numpy as np

    write_video(videos / "tiny00.mkv", np.zeros((250, 40, 32, 3), np.uint8), 25)  # wrong size
    write_video(videos / "tiny01.mkv", np.zeros((50, 48, 32, 3), np.uint8), 25)  # too short
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(tiny_split_dir), "--horizon", "4", "--out", str(tmp_path / "eval"), *FAST])
    assert code == 1
    failed = RunResults.load(tmp_path / "eval" / "results.json").clips_failed
    assert "tiny00.mkv" in failed["tiny00"] and "resolution 32x40" in failed["tiny00"]
    assert "tiny01.mkv" in failed["tiny01"] and "50 frames" in failed["tiny01"]
    (videos / "tiny00.mkv").write_bytes(b"not a video at all")
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(tiny_split_dir), "--horizon", "4", "--out", str(tmp_path / "eval2"), *FAST])
    failed = RunResults.load(tmp_path / "eval2" / "results.json").clips_failed
    assert code == 1 and "tiny00.mkv" in failed["tiny00"]
