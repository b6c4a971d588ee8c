"""Source videos and what the builder does to their frames.

A first, decode-free pass (:func:`scan_video`) reads each video's fps, frame count, duration and
display rotation. :func:`iter_resampled` then decodes once, in order, and brings the frames to the
protocol:

- time: output frame ``i`` is the source frame whose timestamp is nearest ``t0 + i / 25`` s (``t0`` is
  the first frame's timestamp; ties go to the earlier frame); the clip has ``round(duration * 25)``
  frames, where ``duration`` runs from the first frame's timestamp to the end of the last frame;
- space: the largest centred region of the source with the output's aspect ratio
  (:func:`centre_crop_box`) is cut out and resized with Pillow's bicubic filter (a "cover" resize:
  the frame is filled, the overflow cropped).

It yields the index of the source frame behind every output frame too, so keypoints given per
source frame follow exactly the frames' selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from ..errors import BuildError, ClipError
from ..files import CLIP_ID_RULE, is_safe_clip_id

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")
TARGET_FPS = 25

TEMPORAL_METHOD = "nearest-timestamp: output frame i takes the source frame nearest t0 + i/25 s (ties to the earlier)"
SPATIAL_METHOD = "centre crop to the output aspect ratio, then Pillow bicubic resize"


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
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield batches ``(frames, source_indices)`` of the resampled video, ``num_frames`` frames in
    all: ``uint8 (B, H, W, 3)`` frames and, for each, the index (in display order, as decoded) of
    the source frame it was made from.

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
    indices: list[int] = []
    emitted = 0
    previous: tuple[float, int, av.VideoFrame] | None = None  # (time, source index, frame)
    cached: tuple[int, np.ndarray] | None = None  # the last converted source frame, reused on repeats
    t0 = 0.0

    def emit(source_index: int, frame: av.VideoFrame) -> list[tuple[np.ndarray, np.ndarray]]:
        nonlocal emitted, cached
        if cached is None or cached[0] != source_index:
            cached = (source_index, convert(frame))
        batch.append(cached[1])
        indices.append(source_index)
        emitted += 1
        if len(batch) == batch_size:
            full = (np.stack(batch), np.asarray(indices, dtype=np.int64))
            batch.clear()
            indices.clear()
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
        yield np.stack(batch), np.asarray(indices, dtype=np.int64)
