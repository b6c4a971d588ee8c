"""The GPU check's own logic, without a GPU: steps run in order, a failed or crashed step is FAIL in
the table and the exit status, no CUDA stops it before anything runs, and bad arguments exit 2."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmark import gpu_check


def test_steps_run_in_order_and_failures_are_reported(tmp_path):
    calls = []

    def passing(args):
        calls.append("pass")
        return "fine"

    def failing(args):
        calls.append("fail")
        raise gpu_check.StepFailed("a goal is missed")

    def crashing(args):
        calls.append("crash")
        raise RuntimeError("boom")

    checks = {"cuda": passing, "a": failing, "b": crashing, "c": passing}
    outcomes = gpu_check.run_checks(["cuda", "a", "b", "c"], argparse.Namespace(out=tmp_path), checks)
    assert calls == ["pass", "fail", "crash", "pass"]
    assert [o.ok for o in outcomes] == [True, False, False, True]
    table = gpu_check.format_table(outcomes)
    assert "a goal is missed" in table and "RuntimeError: boom" in table and table.count("FAIL") == 2


def test_no_cuda_stops_before_any_step(tmp_path):
    def cuda(args):
        raise gpu_check.StepFailed("no CUDA device")

    def never(args):
        raise AssertionError("ran without CUDA")

    outcomes = gpu_check.run_checks(["cuda", "a"], argparse.Namespace(out=tmp_path), {"cuda": cuda, "a": never})
    assert [o.step for o in outcomes] == ["cuda"] and not outcomes[0].ok


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_the_command_without_cuda_exits_1_with_the_reason(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path), "--steps", "cuda,main-job"]) == 1
    output = capsys.readouterr().out
    assert "no CUDA device" in output and "main-job" not in output
    assert (tmp_path / "gpu_check.json").is_file()


@pytest.mark.parametrize("argv", [["--steps", "cuda,warp-drive"], ["--layers", "0"], ["--psnr-tolerance", "-1"]])
def test_bad_arguments_exit_2(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_a_failing_command_is_a_failed_step_with_its_last_line(tmp_path):
    import sys

    with pytest.raises(gpu_check.StepFailed, match="exit 3: last words"):
        gpu_check.run_logged([sys.executable, "-c", "import sys; print('last words', file=sys.stderr); sys.exit(3)"], tmp_path / "x.log", 60)
    assert "last words" in (tmp_path / "x.log").read_text()
