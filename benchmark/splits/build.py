"""Build a split from one's own long videos: ``python -m benchmark.splits build --videos DIR --out DIR``.

Each video becomes one clip, resampled to the protocol (25 fps; 832x480 landscape or 480x832
portrait; :mod:`.sources` says exactly how), with whole-body keypoints, a rendered pose-control
video, Wan-Animate-style face crops (boxes from the face keypoints, scaled 1.3 and made square) and
frame 0 as the reference. Keypoints come from a pose model (:mod:`.pose_estimation`) or, with
``--keypoints``, from files computed elsewhere (:mod:`.supplied_keypoints`), mapped through the same
resampling as the frames.

A split is as long as its shortest clip lets a horizon be, so the minimum clip length defaults to the
longest horizon the split is meant to support (``--horizon``, default 10 30 60 90 s); a shorter
video is refused, naming its length and the horizons it could support.

Resampling and keypoint provenance are recorded in each clip's ``resampling`` field. Every clip is
written into a hidden temporary folder and renamed when complete (:class:`~.clip_files.ClipWriter`);
the manifest is written last, so an interrupted build never leaves a split that loads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BuildError, ClipError
from ..files import remove_inside, sha256_file
from ..pose import crop_faces, face_boxes_from_keypoints, fill_missing_boxes, render_pose
from ..protocol import DEFAULT_HORIZONS_S, REAL_RESOLUTIONS
from ..video import iter_frames
from .clip_files import ClipWriter
from .manifest import BODY, MANIFEST_NAME, NUM_KEYPOINTS, ClipRecord, Split, load_split, write_manifest
from .pose_estimation import PoseEstimator, load_pose_estimator
from .sources import (
    SPATIAL_METHOD,
    TARGET_FPS,
    TEMPORAL_METHOD,
    SourceVideo,
    centre_crop_box,
    find_videos,
    iter_resampled,
    output_frame_count,
    scan_video,
)
from .supplied_keypoints import KEYPOINTS_METHOD, check_keypoint_folder, load_keypoint_file, to_output_pixels

LANDSCAPE_SIZE: tuple[int, int] = REAL_RESOLUTIONS[0]
DEFAULT_FACE_SIZE = 512
FACE_BOX_SCALE = 1.3
KEYPOINT_MIN_SCORE = 0.3
# Frame 0 is the reference: it must show the person, judged by this many confident body joints.
MIN_BODY_POINTS_FRAME0 = 4
CLIPS_DIR = "clips"

#: Keypoints for a batch of output frames, given the frames and the source frame each was made from.
KeypointSource = Callable[[np.ndarray, np.ndarray], np.ndarray]


def check_horizons(horizons: list[float] | tuple[float, ...] | None) -> tuple[float, ...]:
    """Sorted, de-duplicated horizons in whole seconds (the protocol scores 1 s windows)."""
    values = tuple(sorted({float(h) for h in (horizons or DEFAULT_HORIZONS_S)}))
    for h in values:
        if not math.isfinite(h) or h <= 0 or h != round(h):
            raise BuildError(f"--horizon {h:g}: a horizon is a positive whole number of seconds")
    return values


def minimum_length(horizons: tuple[float, ...], min_seconds: float | None) -> tuple[float, str]:
    """The minimum clip length in seconds, and the rule that gave it, in words."""
    asked = ", ".join(f"{h:g}" for h in horizons)
    if min_seconds is None:
        return max(horizons), f"minimum clip length {max(horizons):g} s: the longest horizon (horizons {asked} s)"
    if not math.isfinite(min_seconds) or min_seconds <= 0:
        raise BuildError(f"--min-seconds must be a positive number of seconds, got {min_seconds:g}")
    rule = f"minimum clip length {min_seconds:g} s: --min-seconds"
    if min_seconds < max(horizons):
        rule += f" (clips shorter than {max(horizons):g} s will not support every horizon of {asked} s)"
    return min_seconds, rule


def _too_short(video: SourceVideo, frames: int, min_seconds: float, horizons: tuple[float, ...]) -> str:
    longest = frames // TARGET_FPS
    fitting = [f"{h:g}" for h in horizons if round(h * TARGET_FPS) <= frames]
    if longest == 0:
        could = "it is too short for any horizon (1 s at least)"
    else:
        could = f"it could support horizons up to {longest} s" + (f" (of those asked: {', '.join(fitting)} s)" if fitting else " (none of those asked)")
    return f"{video.path.name} is {video.duration:.2f} s long ({frames} frames at {TARGET_FPS} fps), shorter than {min_seconds:g} s; {could}"


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled)


def _validated_keypoints(keypoints: np.ndarray, batch_len: int, source: SourceVideo) -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (batch_len, NUM_KEYPOINTS, 3):
        raise ClipError(source.clip_id, source.path, f"the pose estimator returned {keypoints.shape}, expected ({batch_len}, {NUM_KEYPOINTS}, 3)")
    if not np.isfinite(keypoints).all():
        raise ClipError(source.clip_id, source.path, "the pose estimator returned non-finite keypoints")
    return keypoints


def estimated(estimator: PoseEstimator) -> KeypointSource:
    """Keypoints from running ``estimator`` on the resampled frames."""
    return lambda frames, source_indices: estimator(frames)


def supplied(path: Path, source: SourceVideo, size: tuple[int, int]) -> KeypointSource:
    """Keypoints from a file of per-source-frame keypoints, mapped to the output frames."""
    mapped = to_output_pixels(load_keypoint_file(path, source), centre_crop_box(source.width, source.height, *size), size)

    def rows(frames: np.ndarray, source_indices: np.ndarray) -> np.ndarray:
        if source_indices.max() >= len(mapped):
            raise ClipError(source.clip_id, path, f"the video decoded to more frames than the {len(mapped)} rows of its keypoints")
        return mapped[source_indices]

    return rows


def build_clip(
    video: SourceVideo,
    out_dir: Path,
    size: tuple[int, int],
    keypoints_for: KeypointSource,
    face_size: int,
    num_frames: int,
    record_fields: dict,
    batch_size: int = 32,
    progress: bool = True,
) -> ClipRecord:
    """Write one clip into ``out_dir/clips/<clip_id>/`` and return its record; ``record_fields``
    are the record's source, license and resampling."""
    width, height = size
    with ClipWriter(out_dir, f"{CLIPS_DIR}/{video.clip_id}", video.clip_id, float(TARGET_FPS)) as clip:
        keypoint_batches: list[np.ndarray] = []
        with (
            clip.video("video", width, height) as video_writer,
            clip.video("pose_video", width, height) as pose_writer,
            _progress(num_frames, f"{video.clip_id}: frames+pose", progress) as bar,
        ):
            for frames, source_indices in iter_resampled(video, num_frames, size, batch_size=batch_size):
                keypoints = _validated_keypoints(keypoints_for(frames, source_indices), len(frames), video)
                if not keypoint_batches:
                    confident = int((keypoints[0, BODY, 2] >= KEYPOINT_MIN_SCORE).sum())
                    if confident < MIN_BODY_POINTS_FRAME0:
                        raise ClipError(
                            video.clip_id,
                            video.path,
                            f"no person found in frame 0 ({confident} body keypoints with score >= {KEYPOINT_MIN_SCORE}, "
                            f"{MIN_BODY_POINTS_FRAME0} needed); frame 0 is the reference and must show the person",
                        )
                    clip.write_reference(frames[0])
                video_writer.write(frames)
                pose_writer.write(render_pose(keypoints, width, height, min_score=KEYPOINT_MIN_SCORE))
                keypoint_batches.append(keypoints)
                bar.update(len(frames))
        keypoints = np.concatenate(keypoint_batches)
        face_boxes = face_boxes_from_keypoints(keypoints, scale=FACE_BOX_SCALE, min_score=KEYPOINT_MIN_SCORE)
        clip.write_keypoints(keypoints, face_boxes)

        # Face crops need the whole clip's boxes (a missing face takes a later box at the start), so
        # they come in a second pass over the lossless video just written.
        crop_boxes = fill_missing_boxes(face_boxes, width, height)
        start = 0
        with (
            clip.video("face_video", face_size, face_size) as face_writer,
            _progress(num_frames, f"{video.clip_id}: faces", progress) as bar,
        ):
            for frames in iter_frames(clip.path("video"), batch_size=batch_size, clip_id=video.clip_id):
                array = frames.numpy()
                face_writer.write(crop_faces(array, crop_boxes[start : start + len(array)], face_size))
                start += len(array)
                bar.update(len(array))
        return clip.finish(**record_fields)


def choose_orientation(sources: list[SourceVideo], orientation: str) -> str:
    """``auto`` takes the orientation all videos share; a split has one resolution, so mixed
    folders must be split up or forced with ``--orientation``."""
    if orientation in ("landscape", "portrait"):
        return orientation
    if orientation != "auto":
        raise BuildError(f"--orientation must be auto, landscape or portrait, not {orientation!r}")
    landscape = [s.path.name for s in sources if s.landscape]
    portrait = [s.path.name for s in sources if not s.landscape]
    if landscape and portrait:
        raise BuildError(
            "a split has one resolution, but these videos are landscape: "
            f"{', '.join(landscape)} and these portrait: {', '.join(portrait)}. "
            "Put them in separate folders or pass --orientation (the others get centre-cropped)."
        )
    return "landscape" if landscape else "portrait"


def build_split(
    videos_dir: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    version: str = "1",
    orientation: str = "auto",
    keypoints_dir: str | Path | None = None,
    pose_estimator: PoseEstimator | None = None,
    pose_model: str | None = None,
    det_model: str | None = None,
    pose_mode: str = "performance",
    device: str = "cpu",
    horizons: list[float] | tuple[float, ...] | None = None,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    license: str = "",
    source: str | None = None,
    face_size: int = DEFAULT_FACE_SIZE,
    landscape_size: tuple[int, int] = LANDSCAPE_SIZE,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> Split:
    """Build a split folder from every video in ``videos_dir`` and return it, loaded and validated.

    Keypoints come from ``keypoints_dir`` when given (no pose model is loaded), else from
    ``pose_estimator``, which defaults to :func:`~.pose_estimation.load_pose_estimator` with
    ``pose_model``, ``det_model``, ``pose_mode`` and ``device``. ``min_seconds`` defaults to the
    longest of ``horizons`` (default 10, 30, 60, 90 s); see :func:`minimum_length`.
    ``landscape_size`` is (width, height) of landscape clips; portrait clips take it transposed.
    ``source`` is recorded per clip (default: the video's file name).
    """
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    horizons = check_horizons(horizons)
    min_seconds, rule = minimum_length(horizons, min_seconds)
    if max_seconds is not None and max_seconds <= 0:
        raise BuildError(f"--max-seconds must be positive, got {max_seconds}")
    if max_seconds is not None and max_seconds < min_seconds:
        raise BuildError(f"--max-seconds {max_seconds:g} keeps less than the {rule}")
    if face_size < 1:
        raise BuildError(f"--face-size must be positive, got {face_size}")
    if keypoints_dir is not None and (pose_estimator is not None or pose_model or det_model):
        raise BuildError("--keypoints supplies the keypoints; it cannot be combined with a pose model (--pose-model, --det-model)")
    if (out_dir / MANIFEST_NAME).exists() and not overwrite:
        raise BuildError(f"{out_dir} already holds a split; pass --overwrite to replace it")
    sources = [scan_video(path) for path in find_videos(videos_dir)]
    chosen = choose_orientation(sources, orientation)
    size = tuple(landscape_size) if chosen == "landscape" else tuple(landscape_size[::-1])
    counts = {video.clip_id: output_frame_count(video, TARGET_FPS, max_seconds) for video in sources}
    required = max(1, round(min_seconds * TARGET_FPS))
    short = [_too_short(video, output_frame_count(video, TARGET_FPS), min_seconds, horizons) for video in sources if counts[video.clip_id] < required]
    if short:
        raise BuildError(f"too short for this split ({rule}): {'; '.join(short)}")

    if keypoints_dir is not None:
        keypoint_files = check_keypoint_folder(keypoints_dir, sources)
        keypoints_note = f"supplied in {Path(keypoints_dir).name}/ (one file per video, mapped through the same resampling as the frames)"
    else:
        estimator = pose_estimator if pose_estimator is not None else load_pose_estimator(pose_model, det_model, device, pose_mode)
        keypoints_note = getattr(estimator, "name", type(estimator).__name__)

    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / MANIFEST_NAME).exists():
        # Replacing a split: drop its manifest first, so an interrupted rebuild never loads.
        (out_dir / MANIFEST_NAME).unlink()
        remove_inside(out_dir, out_dir / CLIPS_DIR)
    records = []
    for video in sources:
        crop = centre_crop_box(video.width, video.height, *size)
        resampling = {
            "source_file": video.path.name,
            "source_fps": video.fps,
            "source_width": video.width,
            "source_height": video.height,
            "source_rotation": video.rotation,
            "source_frames": video.num_frames,
            "source_seconds": round(video.duration, 6),
            "temporal_method": TEMPORAL_METHOD,
            "spatial_method": SPATIAL_METHOD,
            "crop_box": [round(v, 3) for v in crop],
            "orientation": chosen,
            "max_seconds": max_seconds,
        }
        if keypoints_dir is not None:
            path = keypoint_files[video.clip_id]
            resampling.update(keypoints_file=path.name, keypoints_file_sha256=sha256_file(path), keypoints_method=KEYPOINTS_METHOD)
            keypoints_for = supplied(path, video, size)  # type: ignore[arg-type]
        else:
            keypoints_for = estimated(estimator)
        records.append(
            build_clip(
                video, out_dir, size, keypoints_for, face_size, counts[video.clip_id],  # type: ignore[arg-type]
                {"source": source if source is not None else video.path.name, "license": license, "resampling": resampling},
                batch_size=batch_size, progress=progress,
            )  # fmt: skip
        )
    description = f"built by `python -m benchmark.splits build` from {len(records)} videos in {videos_dir.name}/; keypoints: {keypoints_note}; {rule}"
    write_manifest(
        out_dir,
        name=name or out_dir.resolve().name,
        version=version,
        fps=TARGET_FPS,
        width=size[0],
        height=size[1],
        face_size=face_size,
        clips=records,
        description=description,
    )
    return load_split(out_dir)
