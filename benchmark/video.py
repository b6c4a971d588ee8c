"""Video reading and writing with PyAV.

Pixel convention everywhere in the project: ``torch.uint8`` RGB frames laid out ``(frames, height, width, 3)``.

Output videos are written losslessly with FFV1 (packed RGB, ``bgr0``) in Matroska, so compression never
moves a metric: decoding an output video gives back exactly the frames the method returned. Files are bit-exact
(the same frames give the same bytes). They are FFV1 level 3 with a CRC per slice, and reading checks every
slice, so a damaged file fails its clip instead of being scored. Writes go to a uniquely named temporary file
in the same folder and are renamed on success, so a video on disk is never half, even with two writers.
"""

from __future__ import annotations

import os
import queue
import threading
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch
from av.error import FFmpegError

from .errors import ClipError
from .files import unique_sibling

LOSSLESS_CODEC = "ffv1"
LOSSLESS_PIX_FMT = "bgr0"
VIDEO_SUFFIX = ".mkv"
# Same frames, same bytes: no random segment ids or encoder version strings in the file, so split hashes
# and output videos are reproducible.
BITEXACT = {"fflags": "+bitexact"}
# Level 3 keeps a CRC per slice. Pinned rather than left to FFmpeg's defaults, which differ between versions.
FFV1_OPTIONS = {"level": "3", "slicecrc": "1"}

# Intrinsically lossless codecs, and the pixel formats that hold RGB frames without a colour conversion.
LOSSLESS_CODECS = frozenset({"ffv1", "ffvhuff", "huffyuv", "utvideo", "png", "rawvideo", "magicyuv", "qtrle"})
RGB_PIX_FMTS = frozenset(
    {"rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "0rgb", "bgr0", "rgb0", "0bgr"}
    | {"rgb48le", "rgb48be", "bgr48le", "bgr48be", "rgba64le", "rgba64be", "bgra64le", "bgra64be"}
    | {f"{planar}{depth}{endian}" for planar in ("gbrp", "gbrap") for depth in ("9", "10", "12", "14", "16") for endian in ("le", "be")}
    | {"gbrp", "gbrap"}
)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str
    pix_fmt: str

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the RGB frames that were encoded, bit for bit.

        True only for an intrinsically lossless codec (ffv1, ffvhuff, huffyuv, utvideo, png, rawvideo,
        magicyuv, qtrle) storing an RGB-family pixel format (packed rgb24/bgr24, the 32-bit rgba/bgra/argb/
        abgr/0rgb/bgr0/rgb0/0bgr, their 48/64-bit forms, and planar gbrp/gbrap at any bit depth). Anything
        else is lossy with respect to RGB frames: H.264 at any quality, and a lossless codec storing YUV
        (yuv420p or yuv444p FFV1), whose RGB/YUV conversion rounds.
        """
        return self.codec in LOSSLESS_CODECS and self.pix_fmt in RGB_PIX_FMTS


def _open(path: Path, clip_id: str | None):
    if not path.exists():
        raise ClipError(clip_id, path, "file does not exist")
    try:
        container = av.open(str(path))
    except FFmpegError as exc:
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
        pix_fmt = stream.codec_context.pix_fmt or ""
        if count_frames:
            num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
        else:
            num_frames = stream.frames
    except FFmpegError as exc:
        raise ClipError(clip_id, path, f"unreadable video: {exc}") from exc
    finally:
        container.close()
    return VideoInfo(str(path), fps, num_frames, width, height, codec, pix_fmt)


# ---- slice CRCs ------------------------------------------------------------------------------
# FFmpeg's FFV1 decoder only logs a slice CRC mismatch: it conceals the slice with the previous frame's pixels
# and returns the frame as if it were intact, whatever ``err_detect`` says. So the CRCs are checked here, on
# each packet before it is decoded.
_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))
# Each FFV1 level-3 slice ends with its payload size (24 bits, big-endian); with slice CRCs, an error-status
# byte and a 32-bit parity follow, so that the CRC of the whole slice is 0.
_TRAILER_WITH_CRC, _TRAILER_WITHOUT_CRC = 8, 3


def _crc_is_zero(data: bytes | memoryview) -> bool:
    """Whether FFmpeg's AV_CRC_32_IEEE (MSB first, initial value 0, no final xor) of ``data`` is 0. ``data``
    must already be bit-reversed byte by byte: zlib's CRC-32 is the bit-reflected form of the same CRC, and
    reflecting a zero remainder leaves it zero."""
    return zlib.crc32(data, 0xFFFFFFFF) == 0xFFFFFFFF


def _slices(data: bytes, trailer: int) -> list[tuple[int, int]] | None:
    """``(start, end)`` of each slice of an FFV1 level-3 packet, walking the size fields back from the end;
    None when they do not chain exactly to the packet's start."""
    slices = []
    end = len(data)
    while end > 0:
        if end < trailer:
            return None
        start = end - trailer - int.from_bytes(data[end - trailer : end - trailer + 3], "big")
        if start < 0:
            return None
        slices.append((start, end))
        end = start
    return slices[::-1] or None


def _has_v3_header(stream) -> bool:
    """FFV1 level 3 and later carry their parameters in a header that ends with its own CRC."""
    extradata = stream.codec_context.extradata
    return stream.codec_context.name == "ffv1" and bool(extradata) and _crc_is_zero(bytes(extradata).translate(_BIT_REVERSED))


def _slice_problem(data: bytes) -> str | None:
    """Why a packet with slice CRCs is damaged, or None when every slice matches its CRC."""
    slices = _slices(data, _TRAILER_WITH_CRC)
    if slices is None:
        return "slice sizes do not add up to the packet size"
    reversed_bits = memoryview(data.translate(_BIT_REVERSED))
    for number, (start, end) in enumerate(slices):
        if not _crc_is_zero(reversed_bits[start:end]):
            return f"slice {number + 1} of {len(slices)} does not match its CRC (the file is damaged)"
    return None


class _SliceChecker:
    """Checks the slice CRCs of each packet of an FFV1 stream that has them; a no-op for any other stream."""

    def __init__(self, stream) -> None:
        self.active: bool | None = None if _has_v3_header(stream) else False

    def problem(self, packet) -> str | None:
        if self.active is False:
            return None
        data = bytes(packet)
        if self.active is None:
            # Whether the stream has slice CRCs is in its range-coded header; the first packet's layout says
            # the same: its size fields chain with 8-byte trailers exactly when it has them.
            if _slices(data, _TRAILER_WITH_CRC) is not None:
                self.active = True
            elif _slices(data, _TRAILER_WITHOUT_CRC) is not None:
                self.active = False
                return None
            else:
                return "slice sizes do not add up to the packet size"
        return _slice_problem(data)


def iter_frames(
    path: str | Path,
    batch_size: int = 25,
    start: int = 0,
    stop: int | None = None,
    clip_id: str | None = None,
    expected_size: tuple[int, int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``uint8 (B, H, W, 3)`` batches of frames ``[start, stop)`` in order.

    Raises :class:`ClipError` naming the file when the video is corrupt (including an FFV1 slice whose CRC
    does not match), shorter than ``stop``, or not ``expected_size`` (width, height). The file is closed when
    the iterator finishes, fails or is closed; no ``yield`` sits inside an ``except``, so an iterator left
    unfinished until interpreter exit closes quietly.
    """
    path = Path(path)
    container = _open(path, clip_id)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    decoded = _decode(container, stream, path, clip_id, stop)
    try:
        batch: list[np.ndarray] = []
        index = 0
        while stop is None or index < stop:
            frame = _next_frame(decoded, path, clip_id, index)
            if frame is None:
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
    finally:
        decoded.close()
        container.close()
    if stop is not None and index < stop:
        raise ClipError(clip_id, path, f"video has {index} frames, {stop} needed (truncated?)")
    if batch:
        yield torch.from_numpy(np.stack(batch))


def _decode(container, stream, path: Path, clip_id: str | None, stop: int | None) -> Iterator:
    """Decoded frames in order, each packet's slice CRCs checked before it is decoded. Packets from ``stop``
    on are not checked: a threaded decoder reads ahead of the frames it returns."""
    checker = _SliceChecker(stream)
    packets = 0
    for packet in container.demux(stream):
        if packet.size > 0:
            if stop is None or packets < stop:
                problem = checker.problem(packet)
                if problem is not None:
                    raise ClipError(clip_id, path, f"corrupt video at frame {packets}: {problem}")
            packets += 1
        yield from stream.decode(packet)


def _next_frame(decoded: Iterator, path: Path, clip_id: str | None, index: int):
    """The next decoded frame or None at the end, with FFmpeg's errors as a :class:`ClipError`."""
    try:
        return next(decoded, None)
    except FFmpegError as exc:
        raise ClipError(clip_id, path, f"corrupt video at frame {index}: {exc}") from exc


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
        self._tmp = unique_sibling(self.path)
        try:
            self._container = av.open(str(self._tmp), mode="w", format="matroska", options=BITEXACT)
            self._stream = self._container.add_stream(LOSSLESS_CODEC, rate=Fraction(fps).limit_denominator(1001), options=FFV1_OPTIONS)
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = LOSSLESS_PIX_FMT
            self._stream.codec_context.flags |= av.codec.context.Flags.bitexact
            self._stream.thread_type = "AUTO"
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

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
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

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
    """Join lossless segments into one video by copying packets (no re-encoding). Each segment starts
    with a keyframe, where FFV1 resets its coding state, so the packets decode as they did in their
    segments. Returns the number of frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_sibling(path)
    out = None
    out_stream = None
    count = 0
    try:
        out = av.open(str(tmp), mode="w", format="matroska", options=BITEXACT)
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
        os.replace(tmp, path)
    except BaseException:
        try:
            if out is not None:
                out.close()
        finally:
            tmp.unlink(missing_ok=True)
        raise
    return count
