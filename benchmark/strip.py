"""Frames of several runs side by side: ``python -m benchmark.strip RUN_DIR [RUN_DIR ...] --out FILE.png``.

One row for the ground truth and one per run, one column per time (the horizons by default), all from
one clip. The frames are read from the runs' lossless videos, so the picture shows exactly what the
metrics scored. Rows are labelled with the method and the arguments that tell apart runs of one method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .compare import load_run, run_folder, run_labels
from .errors import BenchmarkError
from .files import temporary_sibling
from .splits.registry import resolve_split
from .video import read_frames

if TYPE_CHECKING:
    from PIL import Image


def frame_at(path: Path, index: int, clip_id: str) -> torch.Tensor:
    return read_frames(path, index, index + 1, clip_id=clip_id)[0]


def strip_image(rows: list[tuple[str, list[torch.Tensor]]], times: list[float], scale: int = 2) -> "Image.Image":
    """A labelled grid: ``rows`` of (label, frames ``uint8 (H, W, 3)``), columns headed by ``times``."""
    from PIL import Image, ImageDraw

    height, width = rows[0][1][0].shape[:2]
    cell_w, cell_h = width * scale, height * scale
    label_w, header_h, gap = 200, 16, 2
    canvas = Image.new("RGB", (label_w + len(times) * (cell_w + gap), header_h + len(rows) * (cell_h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, seconds in enumerate(times):
        draw.text((label_w + column * (cell_w + gap) + 2, 2), f"{seconds:g} s", fill="black")
    for row_index, (label, frames) in enumerate(rows):
        top = header_h + row_index * (cell_h + gap)
        draw.text((4, top + cell_h // 2 - 6), label[:32], fill="black")
        for column, frame in enumerate(frames):
            tile = Image.fromarray(np.ascontiguousarray(frame.numpy())).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (label_w + column * (cell_w + gap), top))
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.strip", description=__doc__.split("\n\n")[0].split(": ")[0] + ".",
                                     epilog="Example: python -m benchmark.strip runs/wan-animate runs/vae-roundtrip --clip synthetic-000 --out strip.png")
    parser.add_argument("runs", nargs="+", help="run folders written by benchmark.run (with videos/)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--clip", help="clip id (default: the first clip every run evaluated)")
    parser.add_argument("--times", default=None, help="comma-separated seconds (default: 0 and the runs' horizons, last frame of each)")
    parser.add_argument("--scale", type=int, default=2, help="pixel upscaling of each frame")
    parser.add_argument("--split", help="split name or folder (default: the runs' split)")
    args = parser.parse_args(argv)
    try:
        runs = {str(path): load_run(path) for path in args.runs}
        first = next(iter(runs.values()))
        split = resolve_split(args.split or first.split["name"])
        if split.content_hash != first.split["content_hash"]:
            raise ValueError(f"split {split.name} has content hash {split.content_hash}, the runs scored {first.split['content_hash']}")
        evaluated = [set(run.clips_evaluated) for run in runs.values()]
        clip_id = args.clip or next((c.id for c in split.clips if all(c.id in e for e in evaluated)), None)
        if clip_id is None or not all(clip_id in e for e in evaluated):
            raise ValueError(f"clip {clip_id!r} was not evaluated by every run")
        clip = next(c for c in split.clips if c.id == clip_id)
        times = [float(t) for t in args.times.split(",")] if args.times else [0.0, *first.horizons]
        indices = [min(max(0, round(t * split.fps) - 1), clip.num_frames - 1) for t in times]
        rows = [("ground truth", [frame_at(split.path(clip, "video"), i, clip_id) for i in indices])]
        labels = run_labels(runs)
        for key, run in runs.items():
            video = run_folder(key) / "videos" / f"{clip_id}.mkv"
            if not video.exists():
                raise FileNotFoundError(f"{video}: the run's video of clip {clip_id} is missing")
            rows.append((labels[key], [frame_at(video, i, clip_id) for i in indices]))
    except (BenchmarkError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    image = strip_image(rows, times, args.scale)
    with temporary_sibling(args.out) as tmp:
        image.save(tmp, format="PNG")
    print(f"wrote {args.out}: clip {clip_id}, {len(rows)} rows x {len(times)} times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
