"""Build a split from one's own long videos: ``python -m benchmark.split build --videos DIR --out DIR``.

Each video becomes one clip, resampled to the protocol (25 fps; 832x480 landscape or 480x832
portrait), with whole-body keypoints from an RTMPose/DWPose-style ONNX model run through rtmlib,
a rendered pose-control video, Wan-Animate-style face crops and frame 0 as the reference.

Resampling is recorded in each clip's ``resampling`` field, so a split says exactly how its frames
relate to the source files:

- time: output frame ``i`` is the source frame whose timestamp is nearest ``t0 + i / 25`` s (``t0`` is
  the first frame's timestamp; ties go to the earlier frame); the clip has ``round(duration * 25)``
  frames, where ``duration`` runs from the first frame's timestamp to the end of the last frame;
- space: the largest centred region of the source with the output's aspect ratio is cut out and
  resized with Pillow's bicubic filter (a "cover" resize: the frame is filled, the overflow cropped).

Every clip is written into a hidden temporary folder and renamed when complete; the manifest is
written last, so an interrupted build never leaves a split that loads.
"""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import av
import numpy as np
from PIL import Image

from .errors import BenchmarkError, ClipError
from .files import CLIP_ID_RULE, is_safe_clip_id
from .pose import crop_faces, face_boxes_from_keypoints, fill_missing_boxes, render_pose
from .protocol import REAL_RESOLUTIONS
from .split import BODY, MANIFEST_NAME, NUM_KEYPOINTS, Split, load_split, make_clip_record, write_manifest
from .video import VideoWriter, iter_frames

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")
TARGET_FPS = 25
LANDSCAPE_SIZE: tuple[int, int] = REAL_RESOLUTIONS[0]
DEFAULT_FACE_SIZE = 512
FACE_BOX_SCALE = 1.3
KEYPOINT_MIN_SCORE = 0.3
# Frame 0 is the reference: it must show the person, judged by this many confident body joints.
MIN_BODY_POINTS_FRAME0 = 4
POSE_MODEL_ENV = "EVERANIMATE_POSE_MODEL"
DET_MODEL_ENV = "EVERANIMATE_DET_MODEL"
CLIPS_DIR = "clips"

TEMPORAL_METHOD = "nearest-timestamp: output frame i takes the source frame nearest t0 + i/25 s (ties to the earlier)"
SPATIAL_METHOD = "centre crop to the output aspect ratio, then Pillow bicubic resize"


class BuildError(BenchmarkError):
    """The build as a whole cannot proceed (no videos, bad options, pose models missing)."""


class PoseEstimator(Protocol):
    """Whole-body pose for a batch of frames.

    Takes ``uint8 (B, H, W, 3)`` RGB frames and returns ``float32 (B, 133, 3)``: COCO-WholeBody
    keypoints of the one person of interest per frame, x and y in pixels of the given frames and a
    score in [0, 1] (0 where nothing was found).
    """

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


# ---- pose estimation -----------------------------------------------------------------------------


def select_person(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """rtmlib output for one image (``keypoints (N, 133, 2)``, ``scores (N, 133)``) -> ``(133, 3)``
    of the person with the highest mean body score. Scores are clipped to [0, 1]: RTMPose's SimCC
    confidences can exceed 1."""
    keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 2)
    scores = np.clip(np.asarray(scores, dtype=np.float32).reshape(-1, NUM_KEYPOINTS), 0.0, 1.0)
    if len(keypoints) == 0:
        return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    best = int(np.argmax(scores[:, BODY].mean(axis=1)))
    return np.concatenate([keypoints[best], scores[best, :, None]], axis=1)


class RtmlibWholebody:
    """COCO-WholeBody keypoints from rtmlib's YOLOX detector + RTMPose/RTMW whole-body model (onnxruntime).

    ``pose_model`` / ``det_model`` are local ``.onnx`` files or URLs; when not given they come from
    ``$EVERANIMATE_POSE_MODEL`` / ``$EVERANIMATE_DET_MODEL``, else rtmlib downloads its ``mode``
    defaults into its cache (``$TORCH_HOME`` or ``~/.cache/rtmlib``).
    """

    def __init__(self, pose_model: str | None = None, det_model: str | None = None, device: str = "cpu", mode: str = "performance"):
        pose_model = pose_model or os.environ.get(POSE_MODEL_ENV) or None
        det_model = det_model or os.environ.get(DET_MODEL_ENV) or None
        for label, model in (("pose", pose_model), ("detector", det_model)):
            if model and "://" not in model and not Path(model).is_file():
                raise BuildError(f"{label} model {model!r} is neither an existing file nor a URL")
        try:
            from rtmlib import Wholebody
        except ImportError as exc:
            raise BuildError("pose extraction needs rtmlib and onnxruntime: pip install 'everanimate-bench[pose]'") from exc
        if mode not in Wholebody.MODE:
            raise BuildError(f"unknown pose mode {mode!r}; rtmlib knows {sorted(Wholebody.MODE)}")
        defaults = Wholebody.MODE[mode]
        kwargs: dict = {"mode": mode, "backend": "onnxruntime", "device": device, "to_openpose": False}
        if pose_model:
            kwargs.update(pose=pose_model, pose_input_size=defaults["pose_input_size"])
        if det_model:
            kwargs.update(det=det_model, det_input_size=defaults["det_input_size"])
        try:
            self._model = Wholebody(**kwargs)
        except Exception as exc:  # rtmlib raises whatever its download or onnxruntime raises
            raise BuildError(
                f"could not load the whole-body pose models ({exc}). Without network access, download the "
                f"detector and pose ONNX files elsewhere and pass --det-model / --pose-model "
                f"(or set ${DET_MODEL_ENV} / ${POSE_MODEL_ENV})."
            ) from exc
        self._match_input_size()
        self.name = f"rtmlib Wholebody ({pose_model or defaults['pose']}; detector {det_model or defaults['det']})"

    def _match_input_size(self) -> None:
        """Take the pose model's input size from the ONNX graph, so a custom model cannot be fed
        crops of the wrong size."""
        session = getattr(getattr(self._model, "pose_model", None), "session", None)
        if session is None or not hasattr(session, "get_inputs"):
            return
        shape = session.get_inputs()[0].shape
        if len(shape) == 4 and all(isinstance(side, int) for side in shape[2:]):
            self._model.pose_model.model_input_size = (shape[3], shape[2])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = np.zeros((len(frames), NUM_KEYPOINTS, 3), dtype=np.float32)
        for index, rgb in enumerate(frames):
            keypoints, scores = self._model(np.ascontiguousarray(rgb[..., ::-1]))
            out[index] = select_person(keypoints, scores)
        return out


def load_pose_estimator(pose_model: str | None = None, det_model: str | None = None, device: str = "cpu", mode: str = "performance") -> PoseEstimator:
    """The pose estimator the ``build`` command uses. It is the one place the CLI creates one, so
    tests replace this function to run the CLI without model weights."""
    return RtmlibWholebody(pose_model=pose_model, det_model=det_model, device=device, mode=mode)


# ---- source videos -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceVideo:
    """What a first, decode-free pass learns about a video (plus its first frame's rotation)."""

    path: Path
    clip_id: str
    fps: float
    num_frames: int
    width: int  # as displayed, after rotation
    height: int
    rotation: int  # degrees counterclockwise, a multiple of 90
    duration: float  # first timestamp to the end of the last frame, in seconds

    @property
    def landscape(self) -> bool:
        return self.width >= self.height


def find_videos(videos_dir: Path) -> list[Path]:
    if not videos_dir.is_dir():
        raise BuildError(f"--videos {videos_dir} is not a folder")
    videos = sorted(p for p in videos_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise BuildError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {videos_dir}")
    seen: dict[str, Path] = {}
    for path in videos:
        if not is_safe_clip_id(path.stem):
            raise ClipError(None, path, f"the file name without its suffix is the clip id, and {path.stem!r} is not a safe one ({CLIP_ID_RULE}); rename the file")
        if path.stem.lower() in seen:
            raise ClipError(path.stem, path, f"same clip id as {seen[path.stem.lower()].name} (ids must differ ignoring case); rename one of them")
        seen[path.stem.lower()] = path
    return videos


def _rotation_degrees(frame: av.VideoFrame) -> int:
    rotation = getattr(frame, "rotation", 0) or 0
    return int(round(rotation / 90.0)) * 90 % 360


def scan_video(path: Path) -> SourceVideo:
    """Read fps, frame count and timestamps from the packets, and the display rotation from the
    first decoded frame. Errors name the file."""
    clip_id = path.stem
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"unreadable video: {exc}") from exc
    try:
        if not container.streams.video:
            raise ClipError(clip_id, path, "contains no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise ClipError(clip_id, path, "the video stream has no frame rate")
        fps = float(rate)
        pts = [packet.pts for packet in container.demux(stream) if packet.size > 0]
        if not pts:
            raise ClipError(clip_id, path, "the video stream has no frames")
        if any(p is None for p in pts) or stream.time_base is None:
            duration = len(pts) / fps
        else:
            times = np.sort(np.asarray(pts, dtype=np.float64)) * float(stream.time_base)
            duration = float(times[-1] - times[0]) + 1.0 / fps
        container.seek(0)
        first = next(container.decode(stream), None)
        if first is None:
            raise ClipError(clip_id, path, "no frame could be decoded")
        rotation = _rotation_degrees(first)
        width, height = first.width, first.height
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"unreadable video: {exc}") from exc
    finally:
        container.close()
    if rotation in (90, 270):
        width, height = height, width
    return SourceVideo(path, clip_id, fps, len(pts), width, height, rotation, duration)


def centre_crop_box(source_width: int, source_height: int, width: int, height: int) -> tuple[float, float, float, float]:
    """The largest centred region of the source with the output's aspect ratio, in source pixels."""
    if source_width * height > width * source_height:
        crop_width = source_height * width / height
        x0 = (source_width - crop_width) / 2
        return (x0, 0.0, x0 + crop_width, float(source_height))
    crop_height = source_width * height / width
    y0 = (source_height - crop_height) / 2
    return (0.0, y0, float(source_width), y0 + crop_height)


def output_frame_count(source: SourceVideo, fps: int = TARGET_FPS, max_seconds: float | None = None) -> int:
    count = int(math.floor(source.duration * fps + 0.5))  # round half up, unlike Python's round()
    if max_seconds is not None:
        count = min(count, int(math.floor(max_seconds * fps + 1e-9)))
    return count


def iter_resampled(
    source: SourceVideo,
    num_frames: int,
    size: tuple[int, int],
    batch_size: int = 32,
    fps: int = TARGET_FPS,
) -> Iterator[np.ndarray]:
    """Yield ``uint8 (B, H, W, 3)`` batches of the resampled video, ``num_frames`` frames in all.

    Decodes once, in order, holding only the previous source frame, so a long video streams.
    """
    width, height = size
    crop = centre_crop_box(source.width, source.height, width, height)
    path, clip_id = source.path, source.clip_id

    def convert(frame: av.VideoFrame) -> np.ndarray:
        image = frame.to_ndarray(format="rgb24")
        if source.rotation:
            image = np.rot90(image, k=source.rotation // 90)
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BICUBIC, box=crop))

    batch: list[np.ndarray] = []
    emitted = 0
    previous: tuple[float, int, av.VideoFrame] | None = None  # (time, source index, frame)
    cached: tuple[int, np.ndarray] | None = None  # the last converted source frame, reused on repeats
    t0 = 0.0

    def emit(source_index: int, frame: av.VideoFrame) -> list[np.ndarray]:
        nonlocal emitted, cached
        if cached is None or cached[0] != source_index:
            cached = (source_index, convert(frame))
        batch.append(cached[1])
        emitted += 1
        if len(batch) == batch_size:
            full = np.stack(batch)
            batch.clear()
            return [full]
        return []

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"unreadable video: {exc}") from exc
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            time = frame.time if frame.time is not None else index / source.fps
            if previous is None:
                t0 = time
            while emitted < num_frames and t0 + emitted / fps <= time:
                target = t0 + emitted / fps
                if previous is not None and target - previous[0] <= time - target:
                    yield from emit(previous[1], previous[2])
                else:
                    yield from emit(index, frame)
            if emitted >= num_frames:
                break
            previous = (time, index, frame)
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"corrupt video at frame {index}: {exc}") from exc
    finally:
        container.close()
    if emitted < num_frames:
        if previous is None:
            raise ClipError(clip_id, path, "no frame could be decoded")
        # Targets past the last timestamp fall inside the last frame's display time; beyond one
        # source frame of it, the file ended early.
        last_time, last_index, last_frame = previous
        if t0 + (num_frames - 1) / fps - last_time > 1.0 / source.fps + 1e-6:
            raise ClipError(clip_id, path, f"decoding stopped at {last_time - t0:.2f} s, the container says {source.duration:.2f} s (truncated?)")
        while emitted < num_frames:
            yield from emit(last_index, last_frame)
    if batch:
        yield np.stack(batch)


# ---- writing -------------------------------------------------------------------------------------


def save_keypoints(path: Path, keypoints: np.ndarray, face_boxes: np.ndarray) -> None:
    """Write the keypoints ``.npz`` with fixed zip timestamps, so equal arrays give equal bytes
    (``np.savez`` stamps the current time, which would change the split hash on every build)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in (("keypoints", keypoints), ("face_boxes", face_boxes)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


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


def build_clip(
    source: SourceVideo,
    clip_dir: Path,
    size: tuple[int, int],
    estimator: PoseEstimator,
    face_size: int,
    num_frames: int,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, str]:
    """Write one clip's five files into ``clip_dir``; return field name -> file name."""
    width, height = size
    files = {
        "video": "video.mkv",
        "pose_video": "pose.mkv",
        "face_video": "face.mkv",
        "keypoints": "keypoints.npz",
        "reference": "reference.png",
    }
    clip_dir.mkdir(parents=True, exist_ok=True)
    keypoint_batches: list[np.ndarray] = []
    with (
        VideoWriter(clip_dir / files["video"], TARGET_FPS, width, height, clip_id=source.clip_id) as video_writer,
        VideoWriter(clip_dir / files["pose_video"], TARGET_FPS, width, height, clip_id=source.clip_id) as pose_writer,
        _progress(num_frames, f"{source.clip_id}: frames+pose", progress) as bar,
    ):
        for frames in iter_resampled(source, num_frames, size, batch_size=batch_size):
            keypoints = _validated_keypoints(estimator(frames), len(frames), source)
            if not keypoint_batches:
                confident = int((keypoints[0, BODY, 2] >= KEYPOINT_MIN_SCORE).sum())
                if confident < MIN_BODY_POINTS_FRAME0:
                    raise ClipError(
                        source.clip_id,
                        source.path,
                        f"no person found in frame 0 ({confident} body keypoints with score >= {KEYPOINT_MIN_SCORE}, "
                        f"{MIN_BODY_POINTS_FRAME0} needed); frame 0 is the reference and must show the person",
                    )
                Image.fromarray(frames[0]).save(clip_dir / files["reference"], format="PNG")
            video_writer.write(frames)
            pose_writer.write(render_pose(keypoints, width, height, min_score=KEYPOINT_MIN_SCORE))
            keypoint_batches.append(keypoints)
            bar.update(len(frames))
    keypoints = np.concatenate(keypoint_batches)
    face_boxes = face_boxes_from_keypoints(keypoints, scale=FACE_BOX_SCALE, min_score=KEYPOINT_MIN_SCORE)
    save_keypoints(clip_dir / files["keypoints"], keypoints, face_boxes)

    # Face crops need the whole clip's boxes (a missing face takes a later box at the start), so
    # they come in a second pass over the lossless video just written.
    crop_boxes = fill_missing_boxes(face_boxes, width, height)
    start = 0
    with (
        VideoWriter(clip_dir / files["face_video"], TARGET_FPS, face_size, face_size, clip_id=source.clip_id) as face_writer,
        _progress(num_frames, f"{source.clip_id}: faces", progress) as bar,
    ):
        for frames in iter_frames(clip_dir / files["video"], batch_size=batch_size, clip_id=source.clip_id):
            array = frames.numpy()
            face_writer.write(crop_faces(array, crop_boxes[start : start + len(array)], face_size))
            start += len(array)
            bar.update(len(array))
    if start != num_frames:
        raise ClipError(source.clip_id, clip_dir / files["video"], f"re-read {start} frames, wrote {num_frames}")
    return files


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
    pose_estimator: PoseEstimator | None = None,
    pose_model: str | None = None,
    det_model: str | None = None,
    pose_mode: str = "performance",
    device: str = "cpu",
    max_seconds: float | None = None,
    min_seconds: float = 1.0,
    license: str = "",
    source: str | None = None,
    face_size: int = DEFAULT_FACE_SIZE,
    landscape_size: tuple[int, int] = LANDSCAPE_SIZE,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> Split:
    """Build a split folder from every video in ``videos_dir`` and return it, loaded and validated.

    ``pose_estimator`` defaults to :func:`load_pose_estimator` with ``pose_model``, ``det_model``,
    ``pose_mode`` and ``device``. ``landscape_size`` is (width, height) of landscape clips; portrait
    clips take it transposed. ``source`` is recorded per clip (default: the video's file name).
    """
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    if max_seconds is not None and max_seconds <= 0:
        raise BuildError(f"--max-seconds must be positive, got {max_seconds}")
    if face_size < 1:
        raise BuildError(f"--face-size must be positive, got {face_size}")
    if (out_dir / MANIFEST_NAME).exists() and not overwrite:
        raise BuildError(f"{out_dir} already holds a split; pass --overwrite to replace it")
    sources = [scan_video(path) for path in find_videos(videos_dir)]
    chosen = choose_orientation(sources, orientation)
    size = tuple(landscape_size) if chosen == "landscape" else tuple(landscape_size[::-1])
    counts = {}
    for video in sources:
        if output_frame_count(video, TARGET_FPS) < max(1, round(min_seconds * TARGET_FPS)):
            raise ClipError(video.clip_id, video.path, f"too short: {video.duration:.2f} s, at least {min_seconds:g} s needed")
        counts[video.clip_id] = output_frame_count(video, TARGET_FPS, max_seconds)
    estimator = pose_estimator if pose_estimator is not None else load_pose_estimator(pose_model, det_model, device, pose_mode)

    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / MANIFEST_NAME).exists():
        # Replacing a split: drop its manifest first, so an interrupted rebuild never loads.
        (out_dir / MANIFEST_NAME).unlink()
        shutil.rmtree(out_dir / CLIPS_DIR, ignore_errors=True)
    records = []
    for video in sources:
        final = out_dir / CLIPS_DIR / video.clip_id
        partial = out_dir / CLIPS_DIR / f".{video.clip_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            files = build_clip(video, partial, size, estimator, face_size, counts[video.clip_id], batch_size=batch_size, progress=progress)  # type: ignore[arg-type]
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        relative = {key: f"{CLIPS_DIR}/{video.clip_id}/{file}" for key, file in files.items()}
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
        records.append(
            make_clip_record(
                out_dir,
                video.clip_id,
                relative,
                fps=float(TARGET_FPS),
                num_frames=counts[video.clip_id],
                width=size[0],
                height=size[1],
                source=source if source is not None else video.path.name,
                license=license,
                resampling=resampling,
            )
        )
    estimator_name = getattr(estimator, "name", type(estimator).__name__)
    description = f"built by `benchmark.split build` from {len(records)} videos in {videos_dir.name}/; keypoints: {estimator_name}"
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
