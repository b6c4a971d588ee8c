"""Video reading and writing with PyAV.

Pixel convention everywhere in the project: ``torch.uint8`` RGB frames laid out ``(frames, height, width, 3)``.

Output videos are written losslessly with FFV1 (packed RGB, ``bgr0``) in Matroska, so compression never
moves a metric: decoding an output video gives back exactly the frames the method returned. Files are bit-exact
(the same frames give the same bytes). Writes go
to a temporary name in the same folder and are renamed on success, so a video on disk is never half.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch

from .errors import ClipError

LOSSLESS_CODEC = "ffv1"
LOSSLESS_PIX_FMT = "bgr0"
VIDEO_SUFFIX = ".mkv"
# Same frames, same bytes: no random segment ids or encoder version strings in the file, so split hashes
# and output videos are reproducible.
BITEXACT = {"fflags": "+bitexact"}


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str


def _open(path: Path, clip_id: str | None):
    if not path.exists():
        raise ClipError(clip_id, path, "file does not exist")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"cannot open video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise ClipError(clip_id, path, "contains no video stream")
    return container


def probe(path: str | Path, clip_id: str | None = None, count_frames: bool = True) -> VideoInfo:
    """Read a video's fps, size and frame count. The count comes from demuxing every packet,
    which is exact for every container and costs no decoding."""
    path = Path(path)
    container = _open(path, clip_id)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else float("nan")
        width, height = stream.codec_context.width, stream.codec_context.height
        codec = stream.codec_context.name
        if count_frames:
            num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
        else:
            num_frames = stream.frames
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"unreadable video: {exc}") from exc
    finally:
        container.close()
    return VideoInfo(str(path), fps, num_frames, width, height, codec)


def iter_frames(
    path: str | Path,
    batch_size: int = 25,
    start: int = 0,
    stop: int | None = None,
    clip_id: str | None = None,
    expected_size: tuple[int, int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``uint8 (B, H, W, 3)`` batches of frames ``[start, stop)`` in order.

    Raises :class:`ClipError` naming the file when the video is corrupt, shorter than ``stop``, or
    not ``expected_size`` (width, height).
    """
    path = Path(path)
    container = _open(path, clip_id)
    batch: list[np.ndarray] = []
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if stop is not None and index >= stop:
                break
            if index >= start:
                if expected_size is not None and (frame.width, frame.height) != tuple(expected_size):
                    raise ClipError(
                        clip_id, path, f"frame {index} is {frame.width}x{frame.height}, expected {expected_size[0]}x{expected_size[1]}"
                    )
                batch.append(frame.to_ndarray(format="rgb24"))
                if len(batch) == batch_size:
                    yield torch.from_numpy(np.stack(batch))
                    batch = []
            index += 1
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ClipError(clip_id, path, f"corrupt video at frame {index}: {exc}") from exc
    finally:
        container.close()
    if stop is not None and index < stop:
        raise ClipError(clip_id, path, f"video has {index} frames, {stop} needed (truncated?)")
    if batch:
        yield torch.from_numpy(np.stack(batch))


def read_frames(path: str | Path, start: int = 0, stop: int | None = None, clip_id: str | None = None) -> torch.Tensor:
    """All frames ``[start, stop)`` as one ``uint8 (T, H, W, 3)`` tensor."""
    batches = list(iter_frames(path, batch_size=256, start=start, stop=stop, clip_id=clip_id))
    if not batches:
        raise ClipError(clip_id, path, f"no frames in [{start}, {stop})")
    return torch.cat(batches)


def prefetch(iterator: Iterator[torch.Tensor], depth: int = 4) -> Iterator[torch.Tensor]:
    """Run ``iterator`` in a background thread so decoding overlaps with the consumer's compute.
    Exceptions raised by the producer are re-raised in the consumer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop_event = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop_event.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop_event.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer thread
            items.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop_event.set()


class VideoWriter:
    """Stream frames into a lossless video; the file appears under its final name only on ``close``.

    >>> with VideoWriter(path, fps=25, width=64, height=96) as writer:
    ...     writer.write(frames)  # uint8 (T, H, W, 3)
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, clip_id: str | None = None):
        self.path = Path(path)
        self.clip_id = clip_id
        self.width, self.height = int(width), int(height)
        self.num_frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._container = av.open(str(self._tmp), mode="w", format="matroska", options=BITEXACT)
        self._stream = self._container.add_stream(LOSSLESS_CODEC, rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = LOSSLESS_PIX_FMT
        self._stream.codec_context.flags |= av.codec.context.Flags.bitexact
        self._stream.thread_type = "AUTO"

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if array.ndim == 3:
            array = array[None]
        if array.dtype != np.uint8 or array.shape[1:] != (self.height, self.width, 3):
            raise ClipError(
                self.clip_id, self.path, f"frames must be uint8 (T, {self.height}, {self.width}, 3), got {array.dtype} {array.shape}"
            )
        for image in array:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.num_frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames: torch.Tensor | np.ndarray, fps: float) -> None:
    frames = frames if isinstance(frames, np.ndarray) else frames.numpy()
    with VideoWriter(path, fps, frames.shape[2], frames.shape[1]) as writer:
        writer.write(frames)


def concat_videos(parts: list[Path], path: str | Path) -> int:
    """Join lossless segments into one video by copying packets (no re-encoding). FFV1 is intra-only,
    so every packet decodes on its own. Returns the number of frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    out = av.open(str(tmp), mode="w", format="matroska", options=BITEXACT)
    out_stream = None
    count = 0
    try:
        for part in parts:
            with av.open(str(part)) as container:
                stream = container.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream)
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    packet.stream = out_stream
                    packet.pts = packet.dts = count
                    packet.time_base = Fraction(1, int(round(float(stream.average_rate))))
                    out.mux(packet)
                    count += 1
        out.close()
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return count
