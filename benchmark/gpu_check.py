"""Everything that needs CUDA, in one command for a machine with one GPU: ``python -m benchmark.gpu_check``.

Runs these steps, each as it would be run by hand, and prints one table. It is meant to finish in
under 10 minutes on one 80 GB GPU (the 14B-shaped pass needs about 10 GB with 5 layers):

1. ``cuda``: the device, its memory, torch's CUDA version.
2. ``tests``: the tests marked ``cuda`` (they skip without a GPU elsewhere).
3. ``harness``: ``python -m benchmark.perf --device cuda`` (the metric harness's P1-P5 ratios).
4. ``14b-forward``: one forward pass of a random-weight ``WanAnimateTransformer3DModel`` with the 14B
   widths (5120, 40 heads, FFN 13824, CLIP branch) and ``--layers`` blocks (default 5, one face
   block) over a full 832x480 chunk (21 slots, 32,760 tokens) in bf16: seconds, peak memory and the
   achieved TFLOP/s against the FLOPs counted for the same model, then the whole 40-layer model's
   seconds per chunk at that throughput.
5. ``cpu-vs-cuda``: the synthetic ``everanimate`` run of one clip at 10 s on the CPU and on CUDA: PSNR
   must agree within ``--psnr-tolerance`` dB.
6. ``main-job``: the README's main job, ``benchmark.run --method everanimate --horizon 90``, on CUDA.
7. ``chunk-ratio``: ``methods.perf --methods everanimate wan-animate --device cuda``: time per chunk
   everanimate / wan-animate (goal <= 1.0) and everanimate's peak memory 90 s / 10 s (goal <= 1.1).

A step that fails, or a figure that misses its goal, is FAIL, and the command exits 1; logs of every
step are kept in ``--out``. Without CUDA it says so and exits 1 before running anything.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

STEPS = ("cuda", "tests", "harness", "14b-forward", "cpu-vs-cuda", "main-job", "chunk-ratio")


@dataclass
class Outcome:
    step: str
    ok: bool
    seconds: float = 0.0
    figures: str = ""
    log: Path | None = field(default=None, repr=False)


class StepFailed(Exception):
    """A step's command failed or a figure missed its goal; the message is the table's figure."""


def run_logged(command: list[str], log: Path, timeout_s: float) -> str:
    """Run ``command`` with this interpreter's environment, output to ``log``; its stdout on success."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        log.write_text(f"$ {' '.join(command)}\ntimed out after {timeout_s:g} s\n")
        raise StepFailed(f"timed out after {timeout_s:g} s") from exc
    log.write_text(f"$ {' '.join(command)}\nexit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise StepFailed(f"exit {done.returncode}: {last[:120]}")
    return done.stdout


def check_cuda(args: argparse.Namespace) -> str:
    if not torch.cuda.is_available():
        raise StepFailed("no CUDA device: torch.cuda.is_available() is False")
    properties = torch.cuda.get_device_properties(0)
    return f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}"


def check_tests(args: argparse.Namespace) -> str:
    output = run_logged([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests"], args.out / "tests.log", 1200)
    summary = [line for line in output.splitlines() if " passed" in line or " skipped" in line]
    if summary and "skipped" in summary[-1] and "passed" not in summary[-1]:
        raise StepFailed(f"the CUDA tests skipped: {summary[-1]}")
    return summary[-1].strip("= ") if summary else "passed"


def check_harness(args: argparse.Namespace) -> str:
    report = args.out / "harness.json"
    run_logged([sys.executable, "-m", "benchmark.perf", "--device", "cuda", "--out", str(report)], args.out / "harness.log", 1800)
    results = json.loads(report.read_text())
    figures = []
    for goal, key in (("P1", "ratio"), ("P2", "ratio"), ("P3", "ratio"), ("P4", "speedup")):
        value = results.get(goal, {}).get(key) if isinstance(results.get(goal), dict) else None
        if isinstance(value, (int, float)):
            figures.append(f"{goal} {value:.3g}")
    return ", ".join(figures) or f"see {report}"


def check_14b_forward(args: argparse.Namespace) -> str:
    from diffusers import WanAnimateTransformer3DModel

    from methods.wan.cost import Shape14B, estimate, transformer_inputs, transformer_pass_flops

    shape = Shape14B()
    slots, latent_h, latent_w = 1 + shape.latent_slots, shape.height // 8, shape.width // 8
    with torch.device("meta"):
        meta = WanAnimateTransformer3DModel(added_kv_proj_dim=5120, num_layers=args.layers)
    flops = transformer_pass_flops(meta.to(torch.bfloat16), slots, latent_h, latent_w, shape.face_size)
    torch.manual_seed(0)
    model = WanAnimateTransformer3DModel(added_kv_proj_dim=5120, num_layers=args.layers).to("cuda", torch.bfloat16).eval()
    inputs = transformer_inputs(model, slots, latent_h, latent_w, shape.face_size)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for _ in range(3):
            began = time.perf_counter()
            model(**inputs)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - began)
    seconds = min(times[1:])  # the first pass includes kernel selection
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    achieved = flops / seconds / 1e12
    whole = next(row for row in estimate() if row["method"] == "everanimate")
    per_chunk = (whole["transformer_pflop"] + whole["vae_pflop"]) * 1e15 / (achieved * 1e12)
    del model
    torch.cuda.empty_cache()
    return f"{args.layers} layers: {seconds:.2f} s/pass, {peak_gib:.1f} GiB peak, {achieved:.0f} TFLOP/s; 40 layers: ~{per_chunk:.0f} s/chunk"


def _psnr_at(run_dir: Path, horizon: float) -> float:
    from .results import RunResults

    try:
        return float(RunResults.load(run_dir / "results.json").record("psnr", horizon).value)
    except (KeyError, ValueError) as exc:
        raise StepFailed(f"{run_dir / 'results.json'}: no PSNR at {horizon:g} s ({exc})") from exc


def check_cpu_vs_cuda(args: argparse.Namespace) -> str:
    values = {}
    for device in ("cpu", "cuda"):
        out = args.out / f"clip0-{device}"
        command = [sys.executable, "-m", "benchmark.run", "--method", "everanimate", "--horizon", "10", "--limit", "1",
                   "--metrics", "psnr,ssim", "--device", device, "--no-progress", "--overwrite", "--out", str(out)]  # fmt: skip
        run_logged(command, args.out / f"clip0-{device}.log", 1200)
        values[device] = _psnr_at(out, 10.0)
    difference = values["cuda"] - values["cpu"]
    figures = f"PSNR@10s cpu {values['cpu']:.3f}, cuda {values['cuda']:.3f} (diff {difference:+.3f} dB)"
    if abs(difference) > args.psnr_tolerance:
        raise StepFailed(f"{figures}: beyond {args.psnr_tolerance:g} dB")
    return figures


def check_main_job(args: argparse.Namespace) -> str:
    out = args.out / "main-job"
    began = time.perf_counter()
    command = [sys.executable, "-m", "benchmark.run", "--method", "everanimate", "--horizon", "90", "--device", "cuda", "--no-progress", "--overwrite", "--out", str(out)]
    run_logged(command, args.out / "main-job.log", 3600)
    return f"PSNR@90s {_psnr_at(out, 90.0):.2f} dB in {time.perf_counter() - began:.0f} s"


def check_chunk_ratio(args: argparse.Namespace) -> str:
    command = [sys.executable, "-m", "methods.perf", "--methods", "everanimate", "wan-animate", "--preset", "synthetic", "--device", "cuda"]
    output = run_logged(command, args.out / "chunk-ratio.log", 1800)
    time_ratio = re.search(r"everanimate / wan-animate: ([0-9.]+)", output)
    memory_ratio = re.search(r"for everanimate: ([0-9.]+)", output)
    if time_ratio is None or memory_ratio is None:
        raise StepFailed(f"no ratios in the output (see {args.out / 'chunk-ratio.log'})")
    figures = f"time {float(time_ratio.group(1)):.3f} (goal <= 1.0), memory 90/10 s {float(memory_ratio.group(1)):.3f} (goal <= 1.1)"
    if float(time_ratio.group(1)) > 1.0 or float(memory_ratio.group(1)) > 1.1:
        raise StepFailed(f"{figures}: a goal is missed")
    return figures


CHECKS: dict[str, Callable[[argparse.Namespace], str]] = {
    "cuda": check_cuda,
    "tests": check_tests,
    "harness": check_harness,
    "14b-forward": check_14b_forward,
    "cpu-vs-cuda": check_cpu_vs_cuda,
    "main-job": check_main_job,
    "chunk-ratio": check_chunk_ratio,
}


def run_checks(steps: list[str], args: argparse.Namespace, checks: dict[str, Callable[[argparse.Namespace], str]] = CHECKS) -> list[Outcome]:
    """Each step in order; a failed ``cuda`` step stops the rest, any other failure is recorded and
    the next step runs."""
    outcomes = []
    for step in steps:
        began = time.perf_counter()
        try:
            figures, ok = checks[step](args), True
        except StepFailed as exc:
            figures, ok = str(exc), False
        except Exception as exc:  # a crash in a step is that step's failure, reported in the table
            figures, ok = f"{type(exc).__name__}: {exc}"[:160], False
        outcomes.append(Outcome(step, ok, time.perf_counter() - began, figures))
        print(f"{step}: {'ok' if ok else 'FAIL'} ({outcomes[-1].seconds:.0f} s)", file=sys.stderr, flush=True)
        if step == "cuda" and not ok:
            break
    return outcomes


def format_table(outcomes: list[Outcome]) -> str:
    lines = [f"{'step':<12} {'result':<6} {'seconds':>8}  figures", "-" * 72]
    lines += [f"{o.step:<12} {'ok' if o.ok else 'FAIL':<6} {o.seconds:>8.0f}  {o.figures}" for o in outcomes]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="steps: " + ", ".join(STEPS),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"), help="folder for the logs and runs of every step (default: runs/gpu-check)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps, in order (default: all)")
    parser.add_argument("--layers", type=int, default=5, help="transformer blocks of the 14B-shaped forward pass (default 5, one face block; 40 is the whole model)")
    parser.add_argument("--psnr-tolerance", type=float, default=0.1, help="largest CPU/CUDA PSNR difference at 10 s, dB (default 0.1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = [step for step in steps if step not in CHECKS]
    if unknown or not steps:
        parser.exit(2, f"error: unknown steps {', '.join(unknown) or '(none given)'}; known: {', '.join(STEPS)}\n")
    if args.layers < 1 or args.psnr_tolerance <= 0:
        parser.exit(2, "error: --layers must be >= 1 and --psnr-tolerance > 0\n")
    if "cuda" not in steps:
        steps.insert(0, "cuda")
    outcomes = run_checks(steps, args)
    print(format_table(outcomes))
    (args.out).mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps([{"step": o.step, "ok": o.ok, "seconds": o.seconds, "figures": o.figures} for o in outcomes], indent=1) + "\n")
    return 0 if all(o.ok for o in outcomes) and len(outcomes) == len(steps) else 1


if __name__ == "__main__":
    sys.exit(main())
