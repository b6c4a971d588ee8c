"""``python -m benchmark.splits {build,info,verify,export-hf,import-hf}``: build, inspect and share splits.

The commands load only what they need: ``build`` imports the builder (and the pose model only without
``--keypoints``), ``export-hf`` and ``import-hf`` the ``datasets`` package.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import BenchmarkError
from .manifest import CLIP_FILE_FIELDS, Split
from .registry import resolve_split, split_names

PROG = "python -m benchmark.splits"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Build, inspect and share benchmark splits.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = " / ".join(split_names())

    build = commands.add_parser(
        "build",
        help="build a split from your own long videos",
        description=(
            "Turn every video in --videos (mp4, mkv, mov, avi, webm; the file name is the clip id) into a clip: "
            "resampled to 25 fps (nearest timestamp) and 832x480 or 480x832 (centre crop), with whole-body "
            "keypoints (from --keypoints, or rtmlib + onnxruntime, the 'pose' extra), a pose-control video, face "
            "crops and frame 0 as the reference. Videos shorter than the longest --horizon are refused. The "
            "manifest is written last."
        ),
    )
    build.add_argument("--videos", required=True, metavar="DIR", help="folder of source videos")
    build.add_argument("--out", required=True, metavar="DIR", help="split folder to create")
    build.add_argument("--name", help="split name (default: the --out folder's name)")
    build.add_argument("--version", default="1", help="split version recorded in the manifest (default: 1)")
    build.add_argument(
        "--orientation",
        choices=("auto", "landscape", "portrait"),
        default="auto",
        help="832x480 (landscape) or 480x832 (portrait); auto takes the orientation all videos share (default: auto)",
    )
    build.add_argument(
        "--keypoints",
        metavar="DIR",
        help=(
            "keypoints computed elsewhere, one file per video: <clip_id>.npz with an array 'keypoints' float "
            "(source frames, 133, 3), COCO-WholeBody, x and y in source-video pixels, score in [0, 1], one row per "
            "source frame; or <clip_id>.json {\"keypoints\": [[[x, y, s], ...133], ...]}. They are mapped through the "
            "same resampling and crop as the frames; no pose model is loaded"
        ),
    )
    build.add_argument(
        "--pose-model",
        metavar="PATH_OR_URL",
        help="whole-body RTMPose/RTMW ONNX model (default: $EVERANIMATE_POSE_MODEL, else rtmlib's download for --pose-mode)",
    )
    build.add_argument(
        "--det-model",
        metavar="PATH_OR_URL",
        help="person detector (YOLOX) ONNX model (default: $EVERANIMATE_DET_MODEL, else rtmlib's download)",
    )
    build.add_argument(
        "--pose-mode",
        choices=("performance", "balanced", "lightweight"),
        default="performance",
        help="rtmlib's model preset, used for models not given explicitly (default: performance)",
    )
    build.add_argument("--device", default="cpu", help="onnxruntime device: cpu, cuda or cuda:N (default: cpu)")
    build.add_argument(
        "--horizon",
        type=float,
        action="append",
        metavar="SECONDS",
        help="a horizon the split must support, in whole seconds, repeatable (default: 10 30 60 90)",
    )
    build.add_argument("--min-seconds", type=float, metavar="S", help="refuse videos shorter than S seconds (default: the longest --horizon)")
    build.add_argument("--max-seconds", type=float, metavar="S", help="keep at most the first S seconds of each video")
    build.add_argument("--face-size", type=int, default=512, metavar="N", help="side of the square face crops (default: 512)")
    build.add_argument("--license", default="", metavar="TEXT", help="licence recorded for every clip")
    build.add_argument("--source", metavar="TEXT", help="source recorded for every clip (default: the video's file name)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing split in --out")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")

    info = commands.add_parser("info", help="print a split's name, version, content hash and clips", description="Load and validate a split, then summarise it.")
    info.add_argument("split", metavar="SPLIT", help=f"a split folder, or {named}")

    verify = commands.add_parser(
        "verify",
        help="re-hash every file of a split and check every video",
        description=(
            "Read every file of a split in full: sha256 against the manifest, frame count, size and fps of every video, "
            "the keypoints, and the reference against frame 0. Later loads only compare file sizes and modification "
            "times with this verification, recorded in the cache folder."
        ),
    )
    verify.add_argument("split", metavar="SPLIT", help=f"a split folder, or {named}")

    export = commands.add_parser(
        "export-hf",
        help="save a split as a Hugging Face dataset folder",
        description="Save a split as a datasets.Dataset (one row per clip, files as binary columns) with save_to_disk; push it with Dataset.push_to_hub if you like.",
    )
    export.add_argument("split", metavar="SPLIT", help=f"a split folder, or {named}")
    export.add_argument("out", metavar="OUT", help="folder to write the dataset into")

    imported = commands.add_parser(
        "import-hf",
        help="turn a Hugging Face dataset back into a split folder",
        description="Load a dataset written by export-hf (a local folder or a Hub repo id), write the split files and manifest, and check the content hash.",
    )
    imported.add_argument("source", metavar="SOURCE", help="dataset folder or Hub repo id")
    imported.add_argument("out", metavar="OUT", help="split folder to create")
    imported.add_argument("--revision", help="Hub revision (branch, tag or commit) to load")
    imported.add_argument("--hf-split", default="train", help="dataset split holding the clips, for Hub sources (default: train)")
    return parser


def _print_info(split: Split) -> None:
    print(f"name:         {split.name}")
    print(f"version:      {split.version}")
    print(f"content hash: {split.content_hash}")
    print(f"root:         {split.root}")
    print(f"protocol:     {split.width}x{split.height} @ {split.fps} fps, face crops {split.face_size}x{split.face_size}")
    if split.description:
        print(f"description:  {split.description}")
    print(f"clips:        {len(split.clips)} ({sum(c.seconds for c in split.clips):.2f} s in all)")
    for clip in split.clips:
        print(f"  {clip.id:<24} {clip.num_frames:>7} frames  {clip.seconds:9.2f} s")


def _build(args: argparse.Namespace) -> None:
    from .build import build_split, check_horizons, minimum_length

    horizons = check_horizons(args.horizon)
    print(minimum_length(horizons, args.min_seconds)[1])
    split = build_split(
        args.videos,
        args.out,
        name=args.name,
        version=args.version,
        orientation=args.orientation,
        keypoints_dir=args.keypoints,
        pose_model=args.pose_model,
        det_model=args.det_model,
        pose_mode=args.pose_mode,
        device=args.device,
        horizons=horizons,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        license=args.license,
        source=args.source,
        face_size=args.face_size,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    _print_info(split)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmark.splits``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            _build(args)
        elif args.command == "info":
            _print_info(resolve_split(args.split))
        elif args.command == "verify":
            began = time.perf_counter()
            split = resolve_split(args.split, verify="full")
            files = len(split.clips) * len(CLIP_FILE_FIELDS)
            print(f"{split.name} ({split.content_hash}): {len(split.clips)} clips, {files} files verified in {time.perf_counter() - began:.1f} s")
        elif args.command == "export-hf":
            from .hf import export_split

            print(export_split(resolve_split(args.split), args.out))
        elif args.command == "import-hf":
            from .hf import import_split

            _print_info(import_split(args.source, args.out, revision=args.revision, hf_split=args.hf_split))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
