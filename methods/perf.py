"""Time and peak memory per chunk of the Wan baselines: ``python -m methods.perf``.

Runs each method the way the runner does (chunk by chunk, or whole-video for ``unianimate-dit``) on a
clip of seeded random frames at the synthetic protocol (64x96, 77-frame chunks), without writing
frames, and prints per method: seconds per chunk (mean, and the last chunk's), peak memory, and the ratio of the peak memory of a
90 s rollout to that of a 10 s one (an autoregressive method should stay flat: goal <= 1.1). For the whole-video ``unianimate-dit`` a
"chunk" is the time of one video divided by the chunks the protocol would cut it into.

Memory is the process's peak resident set on CPU while a chunk runs and
``torch.cuda.max_memory_allocated`` on CUDA (:class:`benchmark.memory.PeakMemory`).
``--preset tiny-random`` (test weights) runs anywhere in seconds; ``--preset synthetic`` needs the
trained weights. ``--estimate`` prints the per-chunk GPU cost of each method on the 14B preset that docs/backbone.md
quotes, from FLOPs counted on the meta device (:mod:`methods.wan.cost`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmark.memory import PeakMemory
from benchmark.protocol import Protocol

from .base import ChunkMethod, VideoMethod
from .wan.random_clip import random_clip_context


@dataclass
class PerfRecord:
    method: str
    preset: str
    chunks: int
    seconds_per_chunk: float
    seconds_last_chunk: float | None
    peak_mb_short: float
    peak_mb_long: float
    short_s: float
    long_s: float

    @property
    def ratio(self) -> float:
        return self.peak_mb_long / self.peak_mb_short


def measure_chunk_method(method: ChunkMethod, protocol: Protocol, short_s: float, long_s: float, face_size: int, device: torch.device) -> tuple[list[float], list[int], int]:
    """Seconds and peak bytes of every chunk of a ``long_s`` rollout, and how many chunks cover ``short_s``."""
    frames = protocol.horizon_frames(long_s)
    clip = random_clip_context(protocol, frames, face_size=face_size)
    carry = method.carry_over_frames(protocol)
    starts = protocol.chunk_starts(frames, carry)
    short_chunks = len(protocol.chunk_starts(protocol.horizon_frames(short_s), carry))
    state = method.start(clip)
    seconds, peaks = [], []
    for index, start in enumerate(starts):
        controls = clip.read_controls(start, start + protocol.chunk_frames, index)
        with PeakMemory(device) as memory:
            began = time.perf_counter()
            _, state = method.generate_chunk(state, controls)
            seconds.append(time.perf_counter() - began)
        peaks.append(memory.peak)
    return seconds, peaks, short_chunks


def measure_video_method(method: VideoMethod, protocol: Protocol, horizon_s: float, face_size: int, device: torch.device) -> tuple[float, int, int]:
    """Seconds, peak bytes and number of chunk-equivalents of one whole-video generation."""
    frames = protocol.horizon_frames(horizon_s)
    clip = random_clip_context(protocol, frames, face_size=face_size)
    with PeakMemory(device) as memory:
        began = time.perf_counter()
        method.generate_video(clip, frames, lambda batch: None)
        elapsed = time.perf_counter() - began
    chunks = len(protocol.chunk_starts(frames, 0))
    return elapsed, memory.peak, chunks


def run(methods: list[str], preset: str, weights: str | None, steps: int | None, short_s: float, long_s: float, device: torch.device, lora: str = "stage2") -> list[PerfRecord]:
    from .registry import method_class
    from .wan.presets import tiny_random_backbone

    protocol = Protocol(width=64, height=96)
    face_size = 32
    backbone = tiny_random_backbone(device=device) if preset == "tiny-random" else None
    records = []
    for name in methods:
        options = {"backbone": backbone} if backbone is not None else {"preset": preset, "weights": weights}
        if name != "vae-roundtrip" and steps is not None:
            options["steps"] = steps
        if name == "everanimate":
            # The shipped LoRAs fit the synthetic preset only; a test backbone runs without one.
            options["lora"] = "none" if backbone is not None else lora
        method = method_class(name)(device=device, **options)
        if isinstance(method, ChunkMethod):
            seconds, peaks, short_chunks = measure_chunk_method(method, protocol, short_s, long_s, face_size, device)
            records.append(PerfRecord(name, preset, len(seconds), sum(seconds) / len(seconds), seconds[-1], max(peaks[:short_chunks]) / 2**20, max(peaks) / 2**20, short_s, long_s))
        else:
            short_time, short_peak, short_chunks = measure_video_method(method, protocol, short_s, face_size, device)
            long_time, long_peak, long_chunks = measure_video_method(method, protocol, long_s, face_size, device)
            records.append(PerfRecord(name, preset, long_chunks, long_time / long_chunks, None, short_peak / 2**20, long_peak / 2**20, short_s, long_s))
        print(format_row(records[-1]), flush=True)
    return records


def format_row(record: PerfRecord) -> str:
    last = "-" if record.seconds_last_chunk is None else f"{record.seconds_last_chunk:.2f}"
    return (
        f"{record.method:<15} {record.preset:<12} {record.chunks:>6} {record.seconds_per_chunk:>10.2f} {last:>10} "
        f"{record.peak_mb_short:>11.0f} {record.peak_mb_long:>11.0f} {record.ratio:>7.3f}"
    )


HEADER = f"{'method':<15} {'preset':<12} {'chunks':>6} {'s/chunk':>10} {'s/last':>10} {'peak MB@S':>11} {'peak MB@L':>11} {'L/S':>7}"


def print_estimate(horizon_s: float) -> None:
    from .wan.cost import ASSUMED_UTILISATION, GPU_TFLOPS, estimate

    gpus = ", ".join(f"{gpu} {tflops:g}" for gpu, tflops in GPU_TFLOPS.items())
    print(f"14B preset, 832x480, 77-frame chunks, 20 steps; FLOPs counted on the meta device; time at {ASSUMED_UTILISATION:.0%} of dense bf16 TFLOP/s ({gpus})")
    print(f"{'method':<27} {'slots':>5} {'tokens':>7} {'PFLOP DiT':>10} {'PFLOP VAE':>10} {'s H100':>7} {'s A100':>7} {'GB':>6}")
    for row in estimate(horizon_s=horizon_s):
        print(
            f"{row['method']:<27} {row['slots']:>5} {row['tokens']:>7,} {row['transformer_pflop']:>10.2f} {row['vae_pflop']:>10.2f} "
            f"{row['seconds_H100']:>7.0f} {row['seconds_A100']:>7.0f} {row['memory_gb']:>6.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time and peak memory per chunk of the Wan baselines.")
    parser.add_argument("--preset", default="synthetic", help="synthetic (trained weights) or tiny-random (test weights)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--methods", nargs="+", default=["everanimate", "wan-animate", "vae-roundtrip", "unianimate-dit"])
    parser.add_argument("--lora", default="stage2", help="everanimate's LoRA: stage2, stage1, none or a folder (default: stage2)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the protocol's 20)")
    parser.add_argument("--short", type=float, default=10.0, help="short horizon, seconds")
    parser.add_argument("--long", type=float, default=90.0, help="long horizon, seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    parser.add_argument("--estimate", action="store_true", help="print the estimated per-chunk cost of each method on the 14B preset (FLOPs counted on the meta device, no weights needed) and exit; unianimate-dit is averaged over a --long video")
    args = parser.parse_args(argv)
    if args.estimate:
        print_estimate(args.long)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"protocol 64x96, 77-frame chunks; S = {args.short:g} s, L = {args.long:g} s; threads {torch.get_num_threads()}; device {args.device}")
    print(HEADER)
    records = run(args.methods, args.preset, args.weights, args.steps, args.short, args.long, torch.device(args.device), args.lora)
    by_name = {r.method: r for r in records}
    if "everanimate" in by_name and "wan-animate" in by_name:
        ratio = by_name["everanimate"].seconds_per_chunk / by_name["wan-animate"].seconds_per_chunk
        print(f"time per chunk everanimate / wan-animate: {ratio:.3f} (goal <= 1.0: the re-encode is skipped)")
        print(f"peak memory at {args.long:g} s / {args.short:g} s for everanimate: {by_name['everanimate'].ratio:.3f} (goal <= 1.1)")
    if args.json is not None:
        args.json.write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in records], indent=1))
    failing = [r.method for r in records if r.method != "unianimate-dit" and (math.isnan(r.ratio) or r.ratio > 1.1)]
    if failing:
        print(f"peak memory grows with the horizon for: {', '.join(failing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
