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
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch
from tqdm.auto import tqdm

from methods import registry

from . import distributed
from .errors import BenchmarkError, ClipError
from .evaluate import add_evaluation_arguments, build_results, evaluate_clips, gather, make_harness, parse_metrics, publish
from .protocol import resolve_horizons
from .rollout import generate_clip, plan_clip
from .split import atomic_write_text, resolve_split


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.run",
        description="Generate every clip of a split chunk by chunk (77-frame chunks at 25 fps) with one method, "
        "stream the frames to lossless videos, and evaluate PSNR, SSIM, LPIPS, FID, V-MAE, F-PSNR, seam score and "
        "drift curves at every horizon. Writes results.json, windows.jsonl, summary.csv and drift.png.",
        epilog=f"methods: {', '.join(registry.available())}",
    )
    parser.add_argument("--method", required=True, help="registered method name (see the list below)")
    parser.add_argument(
        "--method-arg", action="append", metavar="KEY=VALUE", help="method option, repeatable, e.g. --method-arg refert_num=5 (recorded in the results)"
    )
    add_evaluation_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last completed chunk")
    parser.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start again")
    return parser


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepare_out(out: Path, run_record: dict, resume: bool, overwrite: bool) -> None:
    record_path = out / "run.json"
    if record_path.exists():
        previous = json.loads(record_path.read_text())
        if resume:
            if previous.get("fingerprint") != run_record["fingerprint"]:
                raise BenchmarkError(
                    f"{out} holds a run of a different method, protocol or split ({previous.get('method')}); resume needs the same command, or use another --out"
                )
            return
        if not overwrite:
            raise BenchmarkError(f"{out} already holds a run; pass --resume to continue it, --overwrite to start again, or choose another --out")
        for name in ("videos", "work", "results.json", "windows.jsonl", "summary.csv", "drift.png", "run.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_path, json.dumps(run_record, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    distributed.init_from_env(args.device)
    is_main = distributed.rank() == 0
    progress = not args.no_progress and is_main
    device = torch.device(args.device)
    try:
        options = registry.parse_options(args.method_arg)
        method = registry.build(args.method, device=args.device, **options)
        # The first process renders (or validates) the split; the others then load the cached copy.
        split = resolve_split(args.split) if is_main else None
        distributed.barrier()
        split = (split or resolve_split(args.split)).limited(args.limit)
        horizons = resolve_horizons(args.horizon, split.protocol(), split.shortest_seconds)
        carry_over = method.carry_over_frames(split.protocol())
        protocol = split.protocol(horizons_s=horizons).with_carry_over(method.name, carry_over)
        described = method.describe()
        fingerprint = hashlib.sha256(json.dumps([described, protocol.hash, split.content_hash], sort_keys=True, default=str).encode()).hexdigest()[:16]
        out = args.out or Path("runs") / f"{method.name}-{split.name}"
        run_record = {"method": described, "protocol_hash": protocol.hash, "split": split.name, "split_hash": split.content_hash, "limit": args.limit, "fingerprint": fingerprint}
        if is_main:
            _prepare_out(out, run_record, args.resume, args.overwrite)
        distributed.barrier()
    except (BenchmarkError, KeyError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    num_frames = protocol.horizon_frames(max(horizons))
    mine = [clip for clip in split.clips if clip.id in set(distributed.shard([c.id for c in split.clips]))]
    videos, boundaries, failed, chunk_seconds = {}, {}, {}, []
    began = time.perf_counter()
    clip_bar = tqdm(mine, desc=f"{method.name}", unit="clip", disable=not progress)
    for clip in clip_bar:
        clip_bar.set_postfix_str(clip.id)
        try:
            plan = plan_clip(protocol, clip, num_frames, carry_over)
            boundaries[clip.id] = plan.boundaries

            def chunk_bar(total: int, initial: int, clip_id: str = clip.id) -> tqdm:
                return tqdm(total=total, initial=initial, desc=f"  {clip_id}", unit="chunk", leave=False, disable=not progress)

            videos[clip.id], timings = generate_clip(method, split, protocol, plan, out, fingerprint, args.resume, device, chunk_bar)
            chunk_seconds.extend(timings)
        except BenchmarkError as exc:
            failed[clip.id] = str(exc)
            tqdm.write(f"FAILED {exc}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a method bug fails its clip, not the whole run
            failed[clip.id] = str(ClipError(clip.id, None, f"{type(exc).__name__}: {exc}"))
            tqdm.write(f"FAILED clip {clip.id!r}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", file=sys.stderr)
    generation_s = time.perf_counter() - began

    harness = make_harness(protocol, horizons, parse_metrics(args.metrics), args.device, args.weights_dir)
    evaluation = evaluate_clips(harness, split, protocol, videos, boundaries, already_failed=failed, progress=progress)
    clips, failed = gather(evaluation, split)
    if is_main:
        timing = {
            "generation_s": round(generation_s, 3),
            "evaluation_s": round(evaluation.seconds, 3),
            "chunks_generated": len(chunk_seconds),
            "seconds_per_chunk": round(sum(chunk_seconds) / len(chunk_seconds), 4) if chunk_seconds else None,
            "peak_rss_mb": round(_peak_rss_mb(), 1),
        }
        results = build_results(harness, clips, failed, split, protocol, described, args.limit, args.device, timing)
        publish(out, results, clips)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
