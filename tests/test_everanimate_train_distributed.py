"""``everanimate.train`` on two gloo processes under torchrun against one process, on a tiny random
backbone saved to a folder: for the same global batch the per-step loss, the LoRA and the AdamW moments
agree within :data:`TOLERANCE`; gradient accumulation agrees the same way; a checkpoint of the
two-process run resumes on one process; only the first process writes files; bad launches exit 2.

AdamW is nearly blind to the scale of the gradient, so the LoRA alone would not catch a sum in place
of a mean over the processes or the micro-batches: the optimizer moments are compared as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("accelerate")
pytest.importorskip("peft")

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

LR = 1e-3
#: One process against two, and one micro-batch against two (docs/everanimate.md, "Multi-process
#: training"). The loss and the AdamW moments (the gradients) agree to float precision: measured here
#: 8e-8 relative on the loss, 1e-9 absolute on the first moment (values up to 5e-3), 4e-12 on the
#: second (up to 1e-5). AdamW divides every gradient component by its own size, so a component close
#: to zero turns a reduction-order difference into up to a whole step of ``LR``: the LoRA agrees to a
#: fraction of one step, measured 1e-5 (1% of ``LR``).
TOLERANCE = {
    "loss": {"rtol": 1e-5, "atol": 0.0},
    "moments": {"rtol": 1e-4, "atol": 1e-8},
    "lora": {"rtol": 0.0, "atol": 0.1 * LR},
}

#: Audit hook for the processes torchrun starts: every write under the watched folders (opening a
#: file to write, making, renaming or removing a path) is recorded to one file per rank. Python's
#: audit events miss writes made inside native code, but every write of the script ends in one of
#: these (the bank, checkpoints and the export are renamed into place, folders are made).
AUDIT = '''
import os, sys
if os.environ.get("WRITE_AUDIT_ROOTS") and "RANK" in os.environ:
    roots = tuple(os.environ["WRITE_AUDIT_ROOTS"].split(os.pathsep))
    log = os.environ["WRITE_AUDIT_LOG"] + os.environ["RANK"]
    events = {"os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"}
    written = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = bool(set(mode or "") & set("wax+")) or bool((flags or 0) & written)
        elif event in events:
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(roots):
            paths = [os.fsdecode(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
            handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(handle, (event + " " + " ".join(paths) + "\\n").encode())
            os.close(handle)

    sys.addaudithook(hook)
'''


def _common(root: Path) -> list[str]:
    """4 steps; a step of 10 slots trains 4 chunks, one of 20 slots 2 (both split over 2 processes)."""
    return [
        "--stage", "1", "--init", "none", "--weights", str(root / "weights"), "--train-split", str(root / "split"), "--eval-split", str(root / "split"),
        "--eval-chunks", "1", "--eval-steps", "1", "--eval-every", "2", "--steps", "4", "--batch", "2", "--lengths", "10:0.5,20:0.5",
        "--stride", "100", "--rank", "4", "--lr", str(LR), "--warmup", "1", "--save-every", "2", "--log-every", "1", "--threads", "1",
    ]  # fmt: skip


def _env(root: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(root / "site"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "EVERANIMATE_BENCH_CACHE": str(root / "cache"), **extra}


def _torchrun(root: Path, arguments: list[str], **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "everanimate.train", *arguments]
    return subprocess.run(command, cwd=root, env=_env(root, **env), capture_output=True, text=True, timeout=600)


def _losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()]
    steps = [line["step"] for line in lines if "loss" in line]
    assert len(steps) == len(set(steps)), f"a step logged twice in {run_dir}"
    return {line["step"]: line["loss"] for line in lines if "loss" in line}


def _evaluations(run_dir: Path) -> list[dict]:
    return [json.loads(line)["eval"] for line in (run_dir / "train.log").read_text().splitlines() if '"eval"' in line]


def _checkpoint(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    folder = run_dir / "checkpoint"
    return json.loads((folder / "state.json").read_text()), load_file(str(folder / "model.safetensors")), load_file(str(folder / "optimizer.safetensors"))


def _assert_losses_close(ours: dict[int, float], theirs: dict[int, float], steps: list[int]) -> None:
    torch.testing.assert_close(torch.tensor([ours[s] for s in steps]), torch.tensor([theirs[s] for s in steps]), **TOLERANCE["loss"])


def _assert_tensors_close(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], tolerance: dict[str, float]) -> None:
    assert ours.keys() == theirs.keys() and ours
    for key, value in ours.items():
        torch.testing.assert_close(value, theirs[key], **tolerance, msg=lambda m, key=key: f"{key}: {m}")


def _assert_checkpoints_close(ours: Path, theirs: Path) -> None:
    """The LoRA and the optimizer moments of two run folders' checkpoints, at the same step."""
    (info, lora, moments), (their_info, their_lora, their_moments) = _checkpoint(ours), _checkpoint(theirs)
    assert info["step"] == their_info["step"]
    _assert_tensors_close(lora, their_lora, TOLERANCE["lora"])
    _assert_tensors_close(moments, their_moments, TOLERANCE["moments"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A one-clip split long enough for one pair of adjacent 77-frame chunks, a tiny random backbone
    in a weights folder, the audit hook, and the data cache of every run."""
    from conftest import make_tiny_split

    from methods.wan.presets import save_backbone, tiny_random_backbone

    root = tmp_path_factory.mktemp("distributed_training")
    make_tiny_split(root / "split", num_clips=1, num_frames=150)
    save_backbone(tiny_random_backbone(seed=0, vae="SmallCausalVAE"), root / "weights")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(AUDIT)
    return root


@pytest.fixture
def in_process(workspace, monkeypatch):
    """``everanimate.train.main`` in this process, with the workspace's data cache; accelerate's
    process state is reset after each test, as a new process would start."""
    from accelerate.state import AcceleratorState

    from everanimate import train

    monkeypatch.setenv("EVERANIMATE_BENCH_CACHE", str(workspace / "cache"))
    monkeypatch.setattr(train, "DEFAULT_ROOT", workspace / "cache" / "train")
    threads = torch.get_num_threads()
    AcceleratorState._reset_state(True)

    def run(run_dir: Path, *extra: str) -> int:
        return train.main([*_common(workspace), "--run-dir", str(run_dir), *extra])

    yield run
    AcceleratorState._reset_state(True)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_processes(workspace):
    """Two gloo processes, stopped at step 2 with a checkpoint and an export (written by the first one)."""
    run_dir, export, cache = workspace / "two", workspace / "two-export", workspace / "cache-two"
    roots = os.pathsep.join(str(p) for p in (run_dir, export, cache))
    arguments = [*_common(workspace), "--run-dir", str(run_dir), "--stop-after", "2", "--export", str(export)]
    done = _torchrun(workspace, arguments, EVERANIMATE_BENCH_CACHE=str(cache), WRITE_AUDIT_ROOTS=roots, WRITE_AUDIT_LOG=str(workspace / "writes-rank"))
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def one_process(workspace):
    """The uninterrupted one-process run (4 steps) and the one-process run stopped at step 2: the references."""
    from accelerate.state import AcceleratorState

    from everanimate import train

    saved = os.environ.get("EVERANIMATE_BENCH_CACHE"), train.DEFAULT_ROOT, torch.get_num_threads()
    os.environ["EVERANIMATE_BENCH_CACHE"], train.DEFAULT_ROOT = str(workspace / "cache"), workspace / "cache" / "train"
    try:
        AcceleratorState._reset_state(True)
        for name, extra in (("one", []), ("one-stopped", ["--stop-after", "2"])):
            assert train.main([*_common(workspace), "--run-dir", str(workspace / name), *extra]) == 0
    finally:
        AcceleratorState._reset_state(True)
        train.DEFAULT_ROOT = saved[1]
        torch.set_num_threads(saved[2])
        if saved[0] is None:
            os.environ.pop("EVERANIMATE_BENCH_CACHE", None)
        else:
            os.environ["EVERANIMATE_BENCH_CACHE"] = saved[0]
    return workspace / "one", workspace / "one-stopped"


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_same_global_batch(workspace, two_processes, one_process):
    _, one_stopped = one_process
    two = _losses(two_processes)
    one = _losses(one_stopped)
    assert sorted(two) == [1, 2] and sorted(one) == [1, 2]
    _assert_losses_close(two, one, [1, 2])
    two_info, _, _ = _checkpoint(two_processes)
    one_info, one_lora, _ = _checkpoint(one_stopped)
    assert two_info["step"] == one_info["step"] == 2 and two_info["processes"] == 2 and one_info["processes"] == 1
    _assert_checkpoints_close(two_processes, one_stopped)
    # The LoRA moved far beyond the tolerance (peft starts B at zero), so the comparison means something.
    assert max(float(v.abs().max()) for k, v in one_lora.items() if "lora_B" in k) > 10 * TOLERANCE["lora"]["atol"]

    # The first process evaluates alone: each evaluation once, the one at step 0 equal to one process's.
    two_evals, one_evals = _evaluations(two_processes), _evaluations(one_stopped)
    assert [e["step"] for e in two_evals] == [e["step"] for e in one_evals] == [0, 2]
    assert two_evals[0]["psnr"] == one_evals[0]["psnr"]
    assert two_evals[1]["psnr"] == pytest.approx(one_evals[1]["psnr"], abs=0.05)

    # Only the first process wrote: the bank, the log, the checkpoint, the export, the data cache.
    writes = {rank: workspace / f"writes-rank{rank}" for rank in (0, 1)}
    assert not writes[1].exists(), writes[1].read_text()[:2000]
    written = writes[0].read_text()
    for name in ("bank-", "train.log", "checkpoint", "two-export", "clips-"):
        assert name in written, name
    exported = json.loads((workspace / "two-export" / "stage1" / "lora.json").read_text())
    assert exported["processes"] == 2 and exported["step"] == 2


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process(workspace, two_processes, one_process, in_process):
    """Rerun on one process, the two-process run continues as the uninterrupted one-process run does;
    on one process a stopped run continues to the bit."""
    one, one_stopped = one_process
    resumed = workspace / "two-resumed"
    shutil.copytree(two_processes, resumed)
    assert in_process(resumed) == 0
    losses, reference = _losses(resumed), _losses(one)
    assert sorted(losses) == [1, 2, 3, 4]
    _assert_losses_close(losses, reference, [3, 4])
    assert _checkpoint(resumed)[0]["step"] == 4 and _checkpoint(resumed)[0]["processes"] == 1
    _assert_checkpoints_close(resumed, one)
    _, reference_lora, reference_moments = _checkpoint(one)

    assert in_process(one_stopped) == 0
    assert _losses(one_stopped) == reference
    _, lora, moments = _checkpoint(one_stopped)
    assert all(torch.equal(lora[k], reference_lora[k]) for k in reference_lora) and all(torch.equal(moments[k], reference_moments[k]) for k in reference_moments)


@pytest.mark.slow
def test_gradient_accumulation_matches_one_micro_batch(workspace, one_process, in_process):
    one, _ = one_process
    assert in_process(workspace / "accumulated", "--grad-accum", "2") == 0
    losses, reference = _losses(workspace / "accumulated"), _losses(one)
    assert sorted(losses) == sorted(reference) == [1, 2, 3, 4]
    _assert_losses_close(losses, reference, [1, 2, 3, 4])
    _assert_checkpoints_close(workspace / "accumulated", one)


def test_bf16_autocast_trains_close_to_float32_and_fp16_is_refused_on_a_cpu(workspace, one_process, in_process, capsys):
    one, _ = one_process
    assert in_process(workspace / "bf16", "--mixed-precision", "bf16", "--stop-after", "1") == 0
    loss = _losses(workspace / "bf16")[1]
    assert loss != _losses(one)[1] and loss == pytest.approx(_losses(one)[1], rel=5e-2)
    capsys.readouterr()
    if torch.cuda.is_available():
        pytest.skip("fp16 is refused on CPUs only")
    assert in_process(workspace / "fp16", "--mixed-precision", "fp16") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "fp16 needs a GPU" in error[0] and "bf16" in error[0]
    assert not (workspace / "fp16").exists()


def test_an_indivisible_global_batch_exits_2_with_one_line(workspace, in_process, capsys):
    # --batch 3: a step of 20 slots trains 3 chunks, which 2 micro-batches cannot share.
    assert in_process(workspace / "indivisible", "--batch", "3", "--grad-accum", "2") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: --batch 3") and "3 chunks of 20 slots" in error[0] and "--grad-accum 2" in error[0], error
    assert in_process(workspace / "indivisible", "--grad-accum", "0") == 2
    assert "--grad-accum must be at least 1" in capsys.readouterr().err
    assert not (workspace / "indivisible").exists()


def test_only_the_first_process_reports_an_input_error(workspace, in_process, capsys, monkeypatch):
    """Every process meets the same input error; those after the first (``RANK`` > 0, as torchrun and
    accelerate launch set it) exit 2 silently, so a launch prints the error once."""
    monkeypatch.setenv("RANK", "1")
    assert in_process(workspace / "indivisible", "--batch", "3", "--grad-accum", "2") == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert in_process(workspace / "indivisible", "--weights", str(workspace / "nowhere")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "backbone weights for preset 'synthetic' are missing" in error[0], error


def test_help_documents_the_multi_process_options():
    from everanimate.train import build_parser

    text = build_parser().format_help()
    for option in ("--grad-accum", "--mixed-precision", "accelerate launch", "torchrun", "global batch"):
        assert option in text, option
