"""The README's commands, as a user types them, on the embedded synthetic split (smaller limits)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_ground_truth_on_synthetic_hits_the_caps(tmp_path):
    done = cli("benchmark.run", "--method", "ground-truth", "--horizon", "10", "--limit", "1", "--out", str(tmp_path / "gt"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "gt" / "results.json").read_text())
    values = {(m["metric"], m["horizon_s"]): m for m in results["metrics"]}
    assert values["psnr", 10.0]["value"] == 100.0
    assert values["ssim", 10.0]["value"] == pytest.approx(1.0, abs=1e-6)
    assert results["split"]["name"] == "synthetic" and results["limit"] == 1 and results["comparable"] is False
    assert "10 s" in done.stdout and "not comparable" in done.stdout


def test_main_job_runs_with_a_smaller_limit(tmp_path):
    readme = (ROOT / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("source .ci/activate && python -m benchmark.run"))
    args = line.split("python -m ", 1)[1].split()
    done = cli(*args, "--limit", "1", "--horizon", "10", "--out", str(tmp_path / "main"), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "main" / "results.json").read_text())
    assert results["method"]["name"] == args[args.index("--method") + 1]
    assert {m["horizon_s"] for m in results["metrics"]} == {10.0, 90.0}


@pytest.mark.parametrize(
    "module",
    ["benchmark.run", "benchmark.evaluate", "benchmark.splits", "benchmark.splits.synthetic", "benchmark.weights", "benchmark.gpu_check", "everanimate.sample", "everanimate.lora", "everanimate.train"],
)
def test_help_explains(module):
    done = cli(module, "--help")
    assert done.returncode == 0 and "usage:" in done.stdout and len(done.stdout) > 300
