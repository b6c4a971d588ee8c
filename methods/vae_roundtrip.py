"""The paper's Finding 1 with an oracle generator: chunk ``n`` (0-based) of the output is chunk ``n`` of
the ground truth passed through the VAE ``n + 1`` times, the round trips image-space carry-over has
made by then. ``once=true`` gives the once-only variant, what latent carry pays.

``python -m methods.vae_roundtrip --trips 10`` prints the PSNR of 1..10 round trips on the synthetic
test split.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from .base import ChunkControls, ChunkMethod, ClipContext, State
from .wan.backbone import LatentCodec, WanBackbone
from .wan.method import WanMethod
from .wan.runtime import pad_frames, vae_length


def trips_for_chunk(chunk_index: int, once: bool) -> int:
    """Round trips behind chunk ``chunk_index``: one per chunk so far with image-space carry-over."""
    return 1 if once else chunk_index + 1


def round_trips(codec: LatentCodec, frames: torch.Tensor, trips: int) -> torch.Tensor:
    """``frames`` (uint8, any length) encoded and decoded ``trips`` times, quantised to uint8 between
    trips as a carried-over frame is."""
    length = frames.shape[0]
    current = pad_frames(frames, vae_length(length))
    for _ in range(trips):
        current = codec.round_trip(current)
    return current[:length]


class VaeRoundTrip(WanMethod, ChunkMethod):
    """Options: ``preset``, ``weights``, ``once`` (one round trip per chunk). Loads only the preset's
    VAE. ``backbone=`` for tests."""

    name = "vae-roundtrip"
    default_carry_over = 1
    no_memory_reason = (
        "an oracle of the carry path: chunk n is the ground truth passed through the VAE n + 1 times, "
        "so nothing generated passes from one chunk to the next"
    )
    codec_only = True

    def __init__(
        self,
        device: str | torch.device = "cpu",
        preset: str = "synthetic",
        weights: str | Path | None = None,
        once: bool = False,
        backbone: WanBackbone | None = None,
    ):
        super().__init__(device, preset, weights, backbone, once=bool(once))
        self.once = bool(once)

    def start(self, clip: ClipContext) -> State:
        self.codec.check_size(clip.height, clip.width)
        # The ground-truth reader is an input of the clip, set again by start() on resume.
        self._read_ground_truth = clip.read_ground_truth
        return {}

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        truth = self._read_ground_truth(controls.start, controls.start + len(controls))
        trips = trips_for_chunk(controls.index, self.once)
        return round_trips(self.codec, truth, trips), {**state, "last_trips": trips}


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 videos ``(T, H, W, 3)``: the mean over frames of the benchmark's
    per-frame PSNR (MAX 255, capped at 100 dB), so these tables match the scored numbers."""
    from benchmark.metrics.frame import mean_psnr

    return mean_psnr(a, b, cap_db=100.0)


def round_trip_table(codec: LatentCodec, clips: list[torch.Tensor], max_trips: int) -> list[tuple[int, float]]:
    """Mean PSNR against the input after 1..max_trips round trips, over ``clips`` (uint8 videos)."""
    totals = [0.0] * max_trips
    for frames in clips:
        current = pad_frames(frames, vae_length(frames.shape[0]))
        for trip in range(max_trips):
            current = codec.round_trip(current)
            totals[trip] += psnr_uint8(current[: frames.shape[0]], frames)
    return [(trip + 1, totals[trip] / len(clips)) for trip in range(max_trips)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PSNR of repeated VAE round trips (paper Finding 1).")
    parser.add_argument("--trips", type=int, default=10)
    parser.add_argument("--split", default="synthetic")
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--frames", type=int, default=77, help="frames per clip (the first chunk)")
    parser.add_argument("--start", type=int, default=0, help="first frame of the window in each clip")
    args = parser.parse_args(argv)

    from benchmark.splits.registry import resolve_split
    from benchmark.video import read_frames

    from .wan.presets import load_codec

    codec = load_codec(args.preset, args.weights)
    split = resolve_split(args.split)
    clips = [read_frames(split.path(c, "video"), args.start, args.start + args.frames, clip_id=c.id) for c in split.clips]
    print(f"VAE round trips on {split.name} ({len(clips)} clips x {args.frames} frames from frame {args.start}), preset {args.preset}")
    print(f"{'trips':>5}  {'PSNR dB':>8}  {'vs 1 trip':>9}")
    table = round_trip_table(codec, clips, args.trips)
    for trips, psnr in table:
        delta = psnr - table[0][1]
        print(f"{trips:>5}  {psnr:>8.2f}  {delta:>+9.2f}" if math.isfinite(psnr) else f"{trips:>5}  {'n/a':>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
