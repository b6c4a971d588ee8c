"""Run a method on a split under the common chunk protocol, then evaluate every horizon.

    python -m benchmark.run --method reference-copy --horizon 10 --horizon 90 --out runs/refcopy

The runner owns the chunk loop, seeding, streaming to disk, resume and evaluation. Under ``torchrun``
clips are sharded across processes and gathered before aggregation; the numbers do not depend on
the process count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from methods import registry
from methods.base import Method
from methods.registry import MethodError

from . import distributed
from .errors import BenchmarkError, ClipError
from .evaluate import (
    add_evaluation_arguments,
    build_results,
    check_device,
    evaluate_clips,
    gather,
    make_harness,
    parse_metrics,
    person_region_source,
    publish,
)
from .files import atomic_write_text, remove_inside
from .lock import FolderLock
from .memory import peak_rss_bytes
from .protocol import Protocol, resolve_horizons
from .rollout import generate_clip, plan_clip
from .splits.manifest import Split
from .splits.registry import resolve_split


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.run",
        description="Generate every clip of a split chunk by chunk (77-frame chunks at 25 fps) with one method, "
        "stream the frames to lossless videos, and evaluate PSNR, SSIM, LPIPS, FID, V-MAE, F-PSNR, seam score, background "
        "and person PSNR/SSIM and "
        "drift curves at every horizon. Writes results.json, windows.jsonl, summary.csv and drift.png. "
        "Every argument is checked before the first clip is generated; an input mistake exits with status 2.",
        epilog=f"methods: {', '.join(registry.available())}",
    )
    parser.add_argument("--method", required=True, help="registered method name (see the list below), or package.module:Class")
    parser.add_argument(
        "--method-arg",
        action="append",
        metavar="KEY=VALUE",
        help="method option, repeatable, e.g. --method-arg refert_num=5; unknown options are refused (recorded in the results)",
    )
    add_evaluation_arguments(parser)
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last completed chunk")
    existing.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start again")
    return parser


RUN_OUTPUTS = ("videos", "work", "results.json", "windows.jsonl", "summary.csv", "drift.png", "run.json")


def _peak_rss_mb() -> float:
    """This process's peak resident set since it started, in MB (:mod:`benchmark.memory`)."""
    return peak_rss_bytes() / 2**20


def _prepare_out(out: Path, run_record: dict, resume: bool, overwrite: bool) -> None:
    record_path = out / "run.json"
    if record_path.exists():
        try:
            previous = json.loads(record_path.read_text())
        except (OSError, ValueError) as exc:
            raise BenchmarkError(f"{record_path} is unreadable ({exc}); use --overwrite to start again") from exc
        if resume:
            if not isinstance(previous, dict) or previous.get("fingerprint") != run_record["fingerprint"]:
                method = previous.get("method") if isinstance(previous, dict) else None
                raise BenchmarkError(f"{out} holds a run of a different method, protocol or split ({method}); resume needs the same command, or use another --out")
            return
        if not overwrite:
            raise BenchmarkError(f"{out} already holds a run; pass --resume to continue it, --overwrite to start again, or choose another --out")
        for name in RUN_OUTPUTS:
            remove_inside(out, out / name)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_path, json.dumps(run_record, indent=1))


@dataclass
class RunSetup:
    """Everything checked before the first clip: a bad input never costs any generation."""

    method: Method
    split: Split
    protocol: Protocol
    horizons: tuple[float, ...]
    described: dict
    fingerprint: str
    out: Path
    harness: object


INPUT_ERRORS = (BenchmarkError, MethodError, ValueError)


def prepare(args: argparse.Namespace, method: Method, is_main: bool) -> RunSetup:
    """Resolve the split, horizons, protocol and harness. The first process reads and verifies the split;
    the others load it afterwards without re-hashing."""
    split = resolve_split(args.split, verify="auto" if is_main else "none").limited(args.limit)
    horizons = resolve_horizons(args.horizon, split.protocol(), split.shortest_seconds)
    person_region_source(split, args.person_region)
    protocol = method.effective_protocol(split.protocol(horizons_s=horizons))
    harness = make_harness(protocol, horizons, parse_metrics(args.metrics), args.device, args.weights_dir)
    described = method.describe()
    fingerprint = hashlib.sha256(json.dumps([described, protocol.hash, split.content_hash], sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = args.out or Path("runs") / f"{method.name}-{split.name}"
    return RunSetup(method, split, protocol, horizons, described, fingerprint, out, harness)


def _claim_out(args: argparse.Namespace, setup: RunSetup) -> FolderLock:
    """Lock ``--out`` for this run and check or write its run record (first process only)."""
    lock = FolderLock(setup.out).acquire()
    run_record = {
        "method": setup.described,
        "protocol_hash": setup.protocol.hash,
        "split": setup.split.name,
        "split_hash": setup.split.content_hash,
        "limit": args.limit,
        "fingerprint": setup.fingerprint,
    }
    try:
        _prepare_out(setup.out, run_record, args.resume, args.overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_device(args.device)
        parse_metrics(args.metrics)
        distributed.init_from_env(args.device)
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    locks: list[FolderLock] = []
    try:
        code = _run(args, locks)
    finally:
        for lock in locks:
            lock.release()
    # Reached by every process on success and on input errors alike; an exception is left to torchrun.
    distributed.shutdown()
    return code


def _run(args: argparse.Namespace, locks: list[FolderLock]) -> int:
    is_main = distributed.rank() == 0
    method, error = None, None
    try:
        # Every process builds its method at the same time.
        method = registry.build_from_command_line(args.method, args.method_arg, device=args.device)
    except INPUT_ERRORS as exc:
        error = str(exc)
    error = distributed.first_error(error)

    def setup_step(main: bool) -> RunSetup:
        setup = prepare(args, method, is_main=main)
        if main:
            locks.append(_claim_out(args, setup))
        return setup

    # The first process checks the split and claims --out alone; the others follow once it has succeeded.
    setup, error = (None, error) if error else distributed.main_process_first(setup_step, INPUT_ERRORS)
    if error is not None:
        if is_main:
            print(f"error: {error}", file=sys.stderr)
        return 2
    return _generate_and_evaluate(args, setup, progress=not args.no_progress and is_main, is_main=is_main)


def _generate_and_evaluate(args: argparse.Namespace, setup: RunSetup, progress: bool, is_main: bool) -> int:
    method, split, protocol, out = setup.method, setup.split, setup.protocol, setup.out
    device = torch.device(args.device)
    num_frames = protocol.horizon_frames(max(setup.horizons))
    mine = [clip for clip in split.clips if clip.id in set(distributed.shard([c.id for c in split.clips]))]
    videos, boundaries, failed, chunk_seconds = {}, {}, {}, []
    began = time.perf_counter()
    clip_bar = tqdm(mine, desc=f"{method.name}", unit="clip", disable=not progress)
    for clip in clip_bar:
        clip_bar.set_postfix_str(clip.id)
        try:
            plan = plan_clip(protocol, clip, num_frames)
            boundaries[clip.id] = plan.boundaries

            def chunk_bar(total: int, initial: int, clip_id: str = clip.id) -> tqdm:
                return tqdm(total=total, initial=initial, desc=f"  {clip_id}", unit="chunk", leave=False, disable=not progress)

            videos[clip.id], timings = generate_clip(method, split, protocol, plan, out, setup.fingerprint, args.resume, device, chunk_bar)
            chunk_seconds.extend(timings)
        except BenchmarkError as exc:
            failed[clip.id] = str(exc)
            tqdm.write(f"FAILED {exc}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a method bug fails its clip, not the whole run
            failed[clip.id] = str(ClipError(clip.id, None, f"{type(exc).__name__}: {exc}"))
            tqdm.write(f"FAILED clip {clip.id!r}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", file=sys.stderr)
    generation_s = time.perf_counter() - began

    evaluation = evaluate_clips(setup.harness, split, protocol, videos, boundaries, already_failed=failed, progress=progress, person_region=args.person_region)
    clips, failed = gather(evaluation, split)
    # Every process's share of the work: the slowest process's phase times, all chunks, the largest peak.
    shares = distributed.gather_objects([(distributed.rank(), generation_s, evaluation.seconds, chunk_seconds, _peak_rss_mb())], key=lambda share: share[0])
    if is_main:
        chunk_seconds = [seconds for share in shares for seconds in share[3]]
        timing = {
            "generation_s": round(max(share[1] for share in shares), 3),
            "evaluation_s": round(max(share[2] for share in shares), 3),
            "chunks_generated": len(chunk_seconds),
            "seconds_per_chunk": round(sum(chunk_seconds) / len(chunk_seconds), 4) if chunk_seconds else None,
            "peak_rss_mb": round(max(share[4] for share in shares), 1),
        }
        results = build_results(setup.harness, clips, failed, split, protocol, setup.described, args.limit, args.device, timing)
        publish(out, results, clips)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
