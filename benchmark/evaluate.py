"""Evaluate videos against a split at every horizon.

``python -m benchmark.evaluate --videos DIR --split NAME --horizon 10 --horizon 90`` scores videos made
elsewhere (one file per clip id, e.g. ``DIR/<clip_id>.mp4``): the path for external methods and
leaderboard submissions. ``benchmark.run`` calls the same code on the videos it generated.

Without ``--horizon``, the default horizons that fit in the split's shortest clip are used (and the
dropped ones named); explicit horizons must all fit. The chunk structure of videos made elsewhere is
unknown unless ``--carry-over`` (and ``--chunk-frames``) say it, and without it the seam score is
reported as unavailable rather than guessed.

The region metrics (background and person PSNR/SSIM) take each ground-truth frame's person region
from the split's exact masks when it has them (the synthetic splits), else from its keypoints
(``--person-region`` chooses; the source is recorded in the results).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .errors import BenchmarkError, ClipError
from .metrics.spec import METRICS, unknown_metrics
from .protocol import Protocol, resolve_horizons
from .results import (
    RunResults,
    environment_info,
    format_table,
    git_info,
    package_versions,
    plot_drift,
    write_csv,
    write_jsonl,
    write_results_json,
)
from .splits.manifest import Split
from .splits.registry import resolve_split
from .video import VideoInfo, iter_frames, prefetch, probe

VIDEO_EXTENSIONS = (".mkv", ".mp4", ".mov", ".webm", ".avi")
# Why metrics that need chunk boundaries (the seam score) are not scored for videos made elsewhere
# unless their chunk structure is given: assuming one would score seams where there are none.
CHUNK_STRUCTURE_UNKNOWN = "chunk structure unknown: pass --carry-over FRAMES (and --chunk-frames) to score seams"
# Where the region metrics take the person region from: the split's masks when it has them, else its
# keypoints ("auto"); only the masks (an error for a split without); only the keypoints.
PERSON_REGION_CHOICES = ("auto", "masks", "keypoints")


@dataclass
class Evaluation:
    """Per-clip evaluations of this process, failures, and the harness holding pooled statistics."""

    harness: object
    clips: list = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class VideoSearch:
    """What :func:`find_videos` found in a folder: per clip id its video, or the error that fails that
    clip; and the names of the files that belong to no clip."""

    folder: Path
    videos: dict[str, Path | ClipError]
    unknown: list[str] = field(default_factory=list)

    def __getitem__(self, clip_id: str) -> Path | ClipError:
        return self.videos[clip_id]


def find_videos(directory: Path, split: Split) -> VideoSearch:
    """Match the files of ``directory`` to the split's clip ids: ``<clip_id><ext>`` for an extension in
    :data:`VIDEO_EXTENSIONS`.

    A clip with no video, or with several candidates (which one was meant cannot be guessed), gets a
    :class:`ClipError` that fails only that clip. Files that match no clip id are listed in one warning on
    stderr, since they are usually misnamed submissions; hidden files and sub-folders (such as the
    ``evaluation/`` output) are not looked at.
    """
    directory = Path(directory)
    candidates: dict[str, list[Path]] = {clip.id: [] for clip in split.clips}
    unknown: list[str] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.suffix == ".json" and entry.stem in candidates:
            continue  # the runner's record of a video it wrote (videos/<clip>.json)
        if entry.stem in candidates and entry.suffix.lower() in VIDEO_EXTENSIONS:
            candidates[entry.stem].append(entry)
        else:
            unknown.append(entry.name)
    videos: dict[str, Path | ClipError] = {}
    for clip_id, found in candidates.items():
        if len(found) == 1:
            videos[clip_id] = found[0]
        elif found:
            names = ", ".join(p.name for p in found)
            videos[clip_id] = ClipError(clip_id, None, f"{len(found)} candidate videos in {directory}: {names}; keep exactly one")
        else:
            others = [name for name in unknown if Path(name).stem == clip_id]
            hint = f"; not accepted: {', '.join(others)}" if others else ""
            videos[clip_id] = ClipError(
                clip_id, None, f"no video for this clip in {directory} (looked for {clip_id} with extension {', '.join(VIDEO_EXTENSIONS)}){hint}"
            )
    if unknown and distributed.rank() == 0:
        print(f"warning: {len(unknown)} file(s) in {directory} match no evaluated clip id and are ignored: {', '.join(unknown)}", file=sys.stderr)
    return VideoSearch(directory, videos, unknown)


def make_harness(
    protocol: Protocol,
    horizons: tuple[float, ...],
    metrics: list[str] | None,
    device: str,
    weights_dir: str | None,
    unavailable: dict[str, str] | None = None,
):
    """The evaluation harness; ``unavailable`` names metrics the caller cannot score, with the reason."""
    from .metrics import EvaluationHarness
    from .weights import WeightsConfig

    weights = WeightsConfig.from_env(weights_dir) if weights_dir else WeightsConfig.from_env()
    return EvaluationHarness(protocol, horizons_s=list(horizons), metrics=metrics, device=device, weights=weights, unavailable=unavailable)


def longest_horizon(protocol: Protocol, clip_seconds: float) -> float:
    """The longest horizon (whole drift windows) that fits in a clip of ``clip_seconds``."""
    return math.floor(clip_seconds / protocol.window_s + 1e-9) * protocol.window_s


def default_horizons(protocol: Protocol, clip_seconds: float) -> tuple[tuple[float, ...], str | None]:
    """The protocol's default horizons that fit in the shortest clip, and a line naming the ones
    dropped (None when all fit). Raises ``ValueError`` when none fits, naming the longest horizon
    the split supports. Only for horizons nobody asked for: explicit ones are checked strictly by
    :func:`benchmark.protocol.resolve_horizons`."""
    fits = [h for h in protocol.horizons_s if h <= clip_seconds + 1e-9]
    dropped = [h for h in protocol.horizons_s if h not in fits]
    if not fits:
        longest = longest_horizon(protocol, clip_seconds)
        supported = f"this split supports horizons up to {longest:g} s (pass --horizon SECONDS)" if longest > 0 else "this split supports no horizon"
        raise ValueError(
            f"no default horizon ({', '.join(f'{h:g}' for h in protocol.horizons_s)} s) fits in the shortest clip of the split "
            f"({clip_seconds:.1f} s); {supported}"
        )
    note = None
    if dropped:
        names = ", ".join(f"{h:g}" for h in dropped)
        note = f"{'horizons' if len(dropped) > 1 else 'horizon'} {names} s dropped: the shortest clip is {clip_seconds:.1f} s"
    return resolve_horizons(fits, protocol, clip_seconds), note


def person_region_source(split: Split, choice: str) -> str:
    """The source of the person regions (``masks`` or ``keypoints``) for ``--person-region choice``;
    raises ``ValueError`` for an unknown choice or ``masks`` on a split without masks."""
    from .metrics.regions import KEYPOINTS, MASKS

    if choice not in PERSON_REGION_CHOICES:
        raise ValueError(f"--person-region {choice!r}: choose from {', '.join(PERSON_REGION_CHOICES)}")
    if choice == "masks" and split.person_masks is None:
        raise ValueError(f"--person-region masks: split {split.name!r} has no person masks; use keypoints (or auto)")
    return MASKS if choice != "keypoints" and split.person_masks is not None else KEYPOINTS


def clip_person_regions(split: Split, clip, keypoints, source: str):
    """The clip's :class:`~benchmark.metrics.regions.PersonRegions` from ``source``: the split's
    verified masks, or the keypoint boxes."""
    from .metrics.regions import MASKS, PersonRegions

    if source == MASKS:
        return PersonRegions.from_masks(split.load_person_masks(clip))
    return PersonRegions.from_keypoints(keypoints)


def evaluate_clips(
    harness,
    split: Split,
    protocol: Protocol,
    videos: dict[str, Path | BenchmarkError | None],
    boundaries: dict[str, list[int]],
    already_failed: dict[str, str] | None = None,
    progress: bool = True,
    person_region: str = "auto",
) -> Evaluation:
    """Evaluate this process's clips. A bad clip (an error or None in ``videos``, or a video that cannot be
    scored) is recorded as failed and the others go on. Each clip evaluation carries the file it scored
    (see :func:`video_record`), which :func:`build_results` writes into the results. The region metrics
    take the person regions from ``person_region`` (:data:`PERSON_REGION_CHOICES`)."""
    result = Evaluation(harness=harness, failed=dict(already_failed or {}))
    num_frames = protocol.horizon_frames(max(protocol.horizons_s))
    window = protocol.window_frames
    began = time.perf_counter()
    clips = [c for c in split.clips if c.id in videos and c.id not in result.failed]
    region_source = person_region_source(split, person_region) if harness.needs_person_regions else None
    for clip in tqdm(clips, desc="evaluate", unit="clip", disable=not progress, leave=False):
        path = videos[clip.id]
        try:
            if isinstance(path, BenchmarkError):
                raise path
            if path is None:
                raise ClipError(clip.id, None, f"no video for this clip (expected <clip_id>{'|'.join(VIDEO_EXTENSIONS)})")
            info = probe(path, clip.id)
            if (info.width, info.height) != (split.width, split.height):
                raise ClipError(clip.id, path, f"resolution {info.width}x{info.height}, the split needs {split.width}x{split.height}")
            if abs(info.fps - protocol.fps) > 1e-3:
                raise ClipError(clip.id, path, f"fps {info.fps:g}, the protocol needs {protocol.fps}")
            if info.num_frames < num_frames:
                raise ClipError(clip.id, path, f"{info.num_frames} frames, the longest horizon needs {num_frames}")
            keypoints, face_boxes = split.load_keypoints(clip)
            regions = clip_person_regions(split, clip, keypoints[:num_frames], region_source) if region_source else None
            size = (split.width, split.height)
            generated = prefetch(iter_frames(path, window, stop=num_frames, clip_id=clip.id, expected_size=size))
            truth = prefetch(iter_frames(split.path(clip, "video"), window, stop=num_frames, clip_id=clip.id, expected_size=size))
            evaluation = harness.evaluate_clip(
                clip.id, generated=generated, ground_truth=truth, face_boxes=face_boxes[:num_frames], chunk_boundaries=boundaries.get(clip.id, []),
                person_regions=regions,
            )  # fmt: skip
            evaluation.video = video_record(path, info)
            result.clips.append(evaluation)
        except BenchmarkError as exc:
            result.failed[clip.id] = str(exc)
            tqdm.write(f"FAILED {exc}", file=sys.stderr)
    result.seconds = time.perf_counter() - began
    return result


def person_region_record(split: Split, clips: list) -> dict:
    """The split fields saying where the region metrics' person regions came from: ``person_region``
    (``masks`` or ``keypoints``; several joined if clips differ) and, for masks, the hash of the
    manifest's mask record. Empty when no region metric was computed."""
    from .metrics.regions import KEYPOINT_RULE, MASKS

    sources = sorted({ev.person_region for ev in clips if ev.person_region is not None})
    if not sources:
        return {}
    record: dict = {"person_region": ", ".join(sources)}
    if MASKS in sources and split.person_masks is not None:
        record.update(person_masks_hash=split.person_masks.hash, person_mask_rule=split.person_masks.rule)
    if MASKS not in sources or len(sources) > 1:
        record["person_keypoint_rule"] = KEYPOINT_RULE
    return record


def video_record(path: Path, info: VideoInfo) -> dict:
    """What a clip was scored from: the file name (relative to its folder), codec, pixel format and
    whether decoding it gives the method's RGB frames exactly. It rides on the clip's evaluation, so it
    reaches :func:`build_results` through :func:`gather` from any process."""
    return {"file": Path(path).name, "codec": info.codec, "pix_fmt": info.pix_fmt, "lossless": info.lossless}


def lossy_warning(clip_videos: dict[str, dict]) -> str | None:
    """One line naming the clips scored from lossy video, whose compression counts as the method's error."""
    lossy = [f"{clip_id} ({video['codec']} {video['pix_fmt']})" for clip_id, video in clip_videos.items() if not video["lossless"]]
    if not lossy:
        return None
    return (
        f"warning: {len(lossy)} of {len(clip_videos)} clips were scored from lossy video, so compression counts as the "
        f"method's error: {', '.join(lossy)}"
    )


def gather(evaluation: Evaluation, split: Split) -> tuple[list, dict[str, str]]:
    """All processes' clip evaluations in split order, and all failures."""
    order = {clip.id: i for i, clip in enumerate(split.clips)}
    evaluation.harness.sync()
    clips = distributed.gather_objects(evaluation.clips, key=lambda ev: order[ev.clip_id])
    failures = distributed.gather_objects(sorted(evaluation.failed.items()), key=lambda item: order.get(item[0], -1))
    return clips, dict(failures)


def build_results(
    harness,
    clips: list,
    failed: dict[str, str],
    split: Split,
    protocol: Protocol,
    method: dict,
    limit: int | None,
    device: str,
    timing: dict,
) -> RunResults:
    aggregate = harness.aggregate(clips, failed_clips=failed)
    drift = [asdict(point) for point in aggregate.drift]
    clip_videos = {ev.clip_id: ev.video for ev in clips if ev.video is not None}
    warning = lossy_warning(clip_videos)
    if warning:
        print(warning, file=sys.stderr)
    return RunResults(
        protocol=protocol.to_dict(),
        protocol_hash=protocol.hash,
        split={
            "name": split.name,
            "version": split.version,
            "content_hash": split.content_hash,
            "num_clips": len(split.clips),
            "clip_ids": [c.id for c in split.clips],
            **person_region_record(split, clips),
        },
        method=method,
        limit=limit,
        metrics=list(aggregate.horizons),
        clips_evaluated=[ev.clip_id for ev in clips],
        clips_failed=failed,
        git=git_info(),
        packages=package_versions(),
        environment=environment_info(device, distributed.world_size()),
        timing=timing,
        drift=drift,
        clip_videos=clip_videos,
    )


def publish(out: Path, results: RunResults, clips: list) -> None:
    """Write ``results.json``, ``windows.jsonl``, ``summary.csv`` and ``drift.png`` in ``out`` and print
    the table. ``results.json`` comes last: its presence means the run is complete."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "windows.jsonl", (row for ev in clips for row in ev.window_rows()))
    write_csv(out / "summary.csv", results.csv_rows())
    plot_drift(out / "drift.png", results)
    write_results_json(out / "results.json", results)
    print(format_table(results))
    print(f"results written to {out / 'results.json'}")


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default="synthetic", help="split name (synthetic, synthetic-train) or a split folder holding manifest.json (default: synthetic)")
    parser.add_argument(
        "--horizon", type=float, action="append", metavar="SECONDS", help="horizon in seconds, repeatable (default: 10 30 60 90); each must fit in the shortest clip"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N clips; results are marked as not comparable")
    parser.add_argument("--out", type=Path, help="output folder for results.json, windows.jsonl, summary.csv, drift.png")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--metrics", help=f"comma-separated subset of metrics (default: all): {','.join(METRICS)}")
    parser.add_argument("--weights-dir", help="folder with metric network weights (see python -m benchmark.weights)")
    parser.add_argument(
        "--person-region",
        choices=PERSON_REGION_CHOICES,
        default="auto",
        help="person region of the background/person metrics: the split's exact masks (synthetic splits), or the box of each frame's "
        "keypoints dilated by 10%% of its longer side; auto = masks when the split has them (default: auto)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def parse_metrics(text: str | None) -> list[str] | None:
    """``--metrics psnr,ssim`` -> ``["psnr", "ssim"]`` (None: all), every name checked."""
    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = unknown_metrics(names)
    if unknown or not names:
        raise ValueError(f"--metrics {text!r}: unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {','.join(METRICS)}")
    return names


def check_device(name: str) -> str:
    """``--device``: a device torch knows and this machine has."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: only cpu and cuda are supported")
    return name


def chunk_structure(split: Split, horizons: tuple[float, ...], carry_over: int | None, chunk_frames: int | None) -> tuple[Protocol, dict, dict[str, str]]:
    """The protocol to record for videos made elsewhere, the method arguments that describe their
    chunk structure, and the metrics that cannot be scored without it.

    With ``carry_over`` given, the chunk structure is known (``chunk_frames`` defaults to the
    protocol's) and the seam score is computed at its boundaries. Without it, the protocol keeps
    the default chunk fields, so the results still load and compare, ``carry_over`` is recorded as
    ``"unknown"`` in the method arguments, and the seam score is unavailable with the reason.
    """
    if carry_over is None:
        unavailable = {name: CHUNK_STRUCTURE_UNKNOWN for name, spec in METRICS.items() if spec.needs_chunk_boundaries}
        return split.protocol(horizons_s=horizons), {"carry_over": "unknown"}, unavailable
    chunk = {} if chunk_frames is None else {"chunk_frames": chunk_frames}
    protocol = split.protocol(horizons_s=horizons, carry_over=carry_over, **chunk)
    return protocol, {"carry_over": protocol.carry_over, "chunk_frames": protocol.chunk_frames}, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.evaluate",
        description="Score videos made elsewhere against a split: one video per clip id (DIR/<clip_id>.mp4|.mkv|...), "
        "at the split's resolution and 25 fps, at least as long as the longest horizon. Frame l is compared with ground-truth frame l. "
        "Without --horizon, the default horizons (10 30 60 90) that fit in the shortest clip are used. "
        "The seam score needs --carry-over (the videos' chunk structure).",
    )
    parser.add_argument("--videos", type=Path, required=True, help="folder of generated videos named <clip_id>.<ext>")
    parser.add_argument("--method-name", default="external", help="method name recorded in the results (default: external)")
    parser.add_argument(
        "--carry-over",
        type=int,
        metavar="FRAMES",
        help="frames shared by consecutive chunks of these videos, which locates their chunk seams (default: unknown, and the seam score is not reported)",
    )
    parser.add_argument(
        "--chunk-frames",
        type=int,
        metavar="FRAMES",
        help="frames per chunk of these videos, used with --carry-over (default: the protocol's 77)",
    )
    add_evaluation_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if not args.videos.is_dir():
            raise ValueError(f"--videos {args.videos} is not a folder")
        check_device(args.device)
        metrics = parse_metrics(args.metrics)
        distributed.init_from_env(args.device)
    except (BenchmarkError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = _evaluate_folder(args, metrics)
    # Reached by every process on success and on input errors alike; an exception is left to torchrun.
    distributed.shutdown()
    return code


def _load(args: argparse.Namespace, metrics: list[str] | None, is_main: bool) -> tuple:
    split = resolve_split(args.split, verify="auto" if is_main else "none").limited(args.limit)
    if args.horizon:
        horizons = resolve_horizons(args.horizon, split.protocol(), split.shortest_seconds)
    else:
        horizons, dropped = default_horizons(split.protocol(), split.shortest_seconds)
        if dropped and is_main:
            print(f"note: {dropped}", file=sys.stderr)
    protocol, arguments, unavailable = chunk_structure(split, horizons, args.carry_over, args.chunk_frames)
    person_region_source(split, args.person_region)
    harness = make_harness(protocol, horizons, metrics, args.device, args.weights_dir, unavailable)
    return split, horizons, protocol, arguments, harness


def _evaluate_folder(args: argparse.Namespace, metrics: list[str] | None) -> int:
    is_main = distributed.rank() == 0
    # The first process reads and verifies the split; the others load it once it has succeeded.
    loaded, error = distributed.main_process_first(lambda main: _load(args, metrics, main), (BenchmarkError, ValueError))
    if error is not None:
        if is_main:
            print(f"error: {error}", file=sys.stderr)
        return 2
    split, horizons, protocol, arguments, harness = loaded
    if args.carry_over is None:
        boundaries = []
    else:
        starts = protocol.chunk_starts(protocol.horizon_frames(max(horizons)))
        boundaries = [s + protocol.carry_over for s in starts[1:]]
    videos = find_videos(args.videos, split)
    mine = {clip_id: videos[clip_id] for clip_id in distributed.shard([c.id for c in split.clips])}
    evaluation = evaluate_clips(harness, split, protocol, mine, {c: boundaries for c in mine}, progress=not args.no_progress, person_region=args.person_region)
    clips, failed = gather(evaluation, split)
    if is_main:
        method = {"name": args.method_name, "arguments": {"videos": str(args.videos), **arguments}}
        results = build_results(harness, clips, failed, split, protocol, method, args.limit, args.device, {"evaluation_s": round(evaluation.seconds, 3)})
        publish(args.out or args.videos / "evaluation", results, clips)
    return 1 if failed else 0

if __name__ == "__main__":
    raise SystemExit(main())
