"""``benchmark.run`` under ``torchrun`` with two gloo processes writes the results one process writes:
the same per-horizon values, windows and videos, bit for bit, and a record of all the work done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Fields that describe the run rather than its results.
RUN_FIELDS = ("environment", "timing", "created_utc")


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["reference-copy", "fake_methods:NoisyDrift"])
def test_two_gloo_processes_under_torchrun_match_one_process(tiny_split_dir, tmp_path, method):
    """``fake_methods:NoisyDrift`` draws seeded noise every chunk and carries state between chunks, so it
    also checks that seeds come from (clip, chunk) and never from the process."""
    arguments = ["-m", "benchmark.run", "--method", method, "--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "10"]
    arguments += ["--metrics", "psnr,ssim,f_psnr", "--no-progress"]
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, *arguments, "--out", str(one)], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *arguments, "--out", str(two)], tmp_path)

    results = [json.loads((folder / "results.json").read_text()) for folder in (one, two)]
    assert [r["environment"]["num_processes"] for r in results] == [1, 2]
    assert results[0]["clips_evaluated"] == ["tiny00", "tiny01"]
    assert len(results[0]["metrics"]) == 6 and all(row["value"] is not None for row in results[0]["metrics"])
    assert {k: v for k, v in results[0].items() if k not in RUN_FIELDS} == {k: v for k, v in results[1].items() if k not in RUN_FIELDS}
    for name in ("windows.jsonl", "summary.csv", "videos/tiny00.mkv", "videos/tiny01.mkv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    # The timing record counts the chunks of both processes, not only rank 0's.
    assert results[1]["timing"]["chunks_generated"] == results[0]["timing"]["chunks_generated"] > 0


@pytest.mark.slow
def test_an_error_only_the_first_process_sees_stops_every_process(tiny_split_dir, tmp_path):
    """An occupied ``--out`` is checked by rank 0 alone; rank 1 must not be left waiting in a collective."""
    arguments = ["-m", "benchmark.run", "--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2"]
    arguments += ["--metrics", "psnr", "--no-progress", "--out", str(tmp_path / "run")]
    _run([sys.executable, *arguments], tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *arguments],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert done.stderr.count("already holds a run; pass --resume") == 1, done.stderr[-3000:]
    # The first process to finish returns status 2 (torchrun then stops the other); the only traceback
    # is torchrun's own report of that status.
    assert "exitcode  : 2" in done.stderr and "SIGABRT" not in done.stderr and "benchmark/" not in done.stderr.replace(str(tiny_split_dir), ""), done.stderr[-3000:]
