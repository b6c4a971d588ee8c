"""The chunk loop: cuts a clip's controls into protocol chunks, calls the method chunk by chunk, streams
the kept frames to disk and saves the method state after every chunk so that ``--resume`` continues
exactly where a run stopped.

Layout of a clip's work folder while it is being generated::

    work/<clip>/segment_00007.mkv   frames kept from chunk 7 (lossless)
    work/<clip>/state_00007.*       method state after chunk 7 (.safetensors tensors, .json scalars)

The ``.json`` file is written last and marks the chunk complete; it records the sha256 of every segment
so far, which ``--resume`` checks before trusting them. When all chunks are done the segments are joined
into ``videos/<clip>.mkv``, its sha256 and frame count go to ``videos/<clip>.json``, and the work folder
is removed. A resumed run reuses a finished video only if it still has that hash.

Controls past the end of a clip (the last chunk may overshoot the horizon) are extended by ping-pong
reflection, ``i -> 2 (T - 1) - i``; the frames they produce lie past the horizon and are never scored.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from methods.base import ChunkControls, ChunkMethod, ClipContext, Method, State, VideoMethod, check_frames, state_from_disk, state_to_disk

from .errors import ClipError
from .protocol import Protocol
from .files import atomic_write_text, check_inside, remove_inside, sha256_file, temporary_sibling
from .splits.manifest import ClipRecord, Split
from .video import VIDEO_SUFFIX, VideoWriter, concat_videos, iter_frames, write_video


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Frame indices ``[start, stop)`` folded into ``[0, length)`` by ping-pong reflection."""
    index = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = index % period
    return np.where(index < length, index, period - index)


class SequentialReader:
    """Reads frame ranges of one video in increasing order without decoding from the start each time.

    Keeps the frames of the last request, so the overlap between consecutive chunks is not decoded
    twice; a request before the buffered range reopens the file.
    """

    def __init__(self, path: Path, clip_id: str, num_frames: int, size: tuple[int, int]):
        self.path, self.clip_id, self.num_frames, self.size = path, clip_id, num_frames, size
        self._iterator = None
        self._next = 0  # index of the next frame the decoder yields
        self._buffer: list[torch.Tensor] = []
        self._buffer_start = 0

    def _restart(self, start: int) -> None:
        self._iterator = iter_frames(self.path, batch_size=1, start=start, clip_id=self.clip_id, expected_size=self.size)
        self._next = start
        self._buffer, self._buffer_start = [], start

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``[start, stop)``, reflected past the end of the clip; ``uint8 (stop - start, H, W, 3)``."""
        wanted = reflect_indices(start, stop, self.num_frames)
        low, high = int(wanted.min()), int(wanted.max()) + 1
        if self._iterator is None or low < self._buffer_start:
            self._restart(low)
        drop = low - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:] if drop < len(self._buffer) else []
            self._buffer_start = low
        if self._buffer_start + len(self._buffer) < low:
            self._restart(low)
        while self._buffer_start + len(self._buffer) < high:
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ClipError(self.clip_id, self.path, f"video ends at frame {self._next}, manifest says {self.num_frames}") from None
            if self._next >= self._buffer_start:
                self._buffer.append(batch[0])
            self._next += 1
        frames = torch.stack(self._buffer)
        return frames[torch.from_numpy(wanted - self._buffer_start)]


@dataclass
class ClipPlan:
    """What the runner will generate for one clip: ``num_frames`` output frames from chunks starting at
    ``starts``. ``clip`` is the split's record of the clip; it is None for a clip that belongs to no
    split (:mod:`everanimate.sample`)."""

    clip_id: str
    num_frames: int
    carry_over: int
    starts: list[int]
    clip: ClipRecord | None = None

    @property
    def boundaries(self) -> list[int]:
        """Output-frame index of the first kept frame of every chunk after the first."""
        return [s + self.carry_over for s in self.starts[1:]]


def plan_frames(protocol: Protocol, clip_id: str, num_frames: int) -> ClipPlan:
    """The chunk plan for ``num_frames`` output frames; controls past the end of the clip are reflected."""
    return ClipPlan(clip_id, num_frames, protocol.carry_over, protocol.chunk_starts(num_frames))


def plan_clip(protocol: Protocol, clip: ClipRecord, num_frames: int) -> ClipPlan:
    if num_frames > clip.num_frames:
        raise ClipError(clip.id, None, f"needs {num_frames} frames for the horizon, clip has {clip.num_frames}")
    plan = plan_frames(protocol, clip.id, num_frames)
    plan.clip = clip
    return plan


def build_context(split: Split, clip: ClipRecord, protocol: Protocol, device: torch.device) -> ClipContext:
    keypoints, face_boxes = split.load_keypoints(clip)
    return context_from_files(
        clip.id,
        split.load_reference(clip).unsqueeze(0),
        split.path(clip, "pose_video"),
        split.path(clip, "face_video"),
        clip.num_frames,
        (split.width, split.height),
        split.face_size,
        keypoints,
        face_boxes,
        protocol,
        device,
        ground_truth=split.path(clip, "video"),
    )


def context_from_files(
    clip_id: str,
    references: torch.Tensor,
    pose_video: Path,
    face_video: Path,
    num_frames: int,
    frame_size: tuple[int, int],
    face_size: int,
    keypoints: np.ndarray,
    face_boxes: np.ndarray,
    protocol: Protocol,
    device: torch.device,
    ground_truth: Path | None = None,
) -> ClipContext:
    """A clip's context from its control videos: ``references uint8 (m, H, W, 3)``, the pose video
    (``frame_size`` = (width, height)) and the face-crop video (``face_size`` square), ``num_frames``
    frames each, with ``keypoints (T, 133, 3)`` and ``face_boxes (T, 4)``. Chunk ``k``'s generator is
    seeded from ``clip_id`` and ``k`` by the protocol's seed rule. Without ``ground_truth``,
    ``read_ground_truth`` raises :class:`ClipError`."""
    pose = SequentialReader(pose_video, clip_id, num_frames, frame_size)
    face = SequentialReader(face_video, clip_id, num_frames, (face_size, face_size))
    if ground_truth is not None:
        read_ground_truth = SequentialReader(ground_truth, clip_id, num_frames, frame_size).read
    else:

        def read_ground_truth(start: int, stop: int) -> torch.Tensor:
            raise ClipError(clip_id, None, "this clip has no ground-truth video (it belongs to no split)")

    def read_controls(start: int, stop: int, chunk: int = 0) -> ChunkControls:
        index = reflect_indices(start, stop, num_frames)
        return ChunkControls(
            index=chunk,
            start=start,
            pose=pose.read(start, stop),
            face=face.read(start, stop),
            keypoints=keypoints[index],
            face_boxes=face_boxes[index],
            generator=torch.Generator().manual_seed(protocol.chunk_seed(clip_id, chunk)),
        )

    return ClipContext(
        clip_id=clip_id,
        references=references,
        keypoints=keypoints,
        face_boxes=face_boxes,
        num_frames=num_frames,
        protocol=protocol,
        face_size=face_size,
        device=device,
        read_controls=read_controls,
        read_ground_truth=read_ground_truth,
    )


def _state_paths(work: Path, chunk: int) -> tuple[Path, Path]:
    return work / f"state_{chunk:05d}.safetensors", work / f"state_{chunk:05d}.json"


def _segment_path(work: Path, chunk: int) -> Path:
    return work / f"segment_{chunk:05d}{VIDEO_SUFFIX}"


def segment_paths(work: Path, plan: ClipPlan) -> list[Path]:
    """The lossless segments :func:`rollout_chunks` wrote for ``plan``, in order."""
    return [_segment_path(work, k) for k in range(len(plan.starts))]


def _save_state(work: Path, chunk: int, state: dict, meta: dict) -> None:
    tensors, scalars = state_to_disk(state)
    tensor_path, json_path = _state_paths(work, chunk)
    with temporary_sibling(tensor_path) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(json_path, json.dumps({"scalars": scalars, **meta}))
    for older in range(chunk):
        for path in _state_paths(work, older):
            path.unlink(missing_ok=True)


def _last_complete_chunk(work: Path, fingerprint: str) -> tuple[int, dict, list[str]] | None:
    """The last chunk whose state and segments are all on disk and unchanged, its state and the
    segments' hashes; None when there is none (start the clip over)."""
    markers = sorted(work.glob("state_*.json"))
    for marker in reversed(markers):
        chunk = int(marker.stem.split("_")[1])
        meta = json.loads(marker.read_text())
        tensor_path, _ = _state_paths(work, chunk)
        if meta.get("fingerprint") != fingerprint:
            raise ClipError(None, marker, "saved state was made by a different method, protocol or split; use another --out")
        hashes = meta.get("segments", [])
        if not tensor_path.exists() or len(hashes) != chunk + 1:
            continue
        for k, expected in enumerate(hashes):
            segment = _segment_path(work, k)
            if not segment.exists() or sha256_file(segment) != expected:
                tqdm.write(f"warning: {segment} is missing or changed since it was written; generating the clip again", file=sys.stderr)
                return None
        return chunk, state_from_disk(load_file(str(tensor_path)), meta["scalars"]), hashes
    return None


def rollout_chunks(
    method: ChunkMethod,
    context: ClipContext,
    plan: ClipPlan,
    work: Path,
    fingerprint: str,
    resume: bool,
    chunk_bar: Callable[[int, int], tqdm] | None = None,
) -> list[float]:
    """Generate every chunk of a clip into ``work``; returns the seconds each newly generated chunk took."""
    protocol = context.protocol
    length = protocol.chunk_frames
    work.mkdir(parents=True, exist_ok=True)
    state = method.start(context)
    first, hashes = 0, []
    if resume and (saved := _last_complete_chunk(work, fingerprint)) is not None:
        first, state, hashes = saved[0] + 1, saved[1], saved[2]
    timings = []
    bar = chunk_bar(len(plan.starts), first) if chunk_bar else None
    produced = sum(_kept(plan, k, length) for k in range(first))
    for chunk in range(first, len(plan.starts)):
        kept_frames, state, seconds = step_chunk(method, context, plan, state, chunk)
        timings.append(seconds)
        segment = _segment_path(work, chunk)
        write_video(segment, kept_frames, protocol.fps)
        hashes.append(sha256_file(segment))
        produced += len(kept_frames)
        _save_state(work, chunk, state, {"chunk": chunk, "frames": produced, "fingerprint": fingerprint, "segments": hashes})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return timings


def step_chunk(method: ChunkMethod, context: ClipContext, plan: ClipPlan, state: State, chunk: int) -> tuple[torch.Tensor, State, float]:
    """One step of the chunk loop: chunk ``chunk`` generated from ``state`` with its controls (and their
    generator, seeded from the clip id and chunk index), its frames checked. Returns the frames the
    output keeps (all of chunk 0; later chunks without their first ``carry_over`` frames; the last
    chunk cut at ``plan.num_frames``), which are output frames ``[first_kept_frame(plan, chunk), ...)``,
    the new state and the seconds ``generate_chunk`` took."""
    protocol = context.protocol
    length = protocol.chunk_frames
    start = plan.starts[chunk]
    controls = context.read_controls(start, start + length, chunk)
    began = time.perf_counter()
    frames, state = method.generate_chunk(state, controls)
    seconds = time.perf_counter() - began
    frames = check_frames(frames, (length, protocol.height, protocol.width, 3), plan.clip_id, f"chunk {chunk}")
    offset = 0 if chunk == 0 else plan.carry_over
    return frames[offset : offset + _kept(plan, chunk, length)], state, seconds


def first_kept_frame(plan: ClipPlan, chunk: int) -> int:
    """Output-frame index of the first frame chunk ``chunk`` adds to the output."""
    return 0 if chunk == 0 else plan.starts[chunk] + plan.carry_over


def _kept(plan: ClipPlan, chunk: int, length: int) -> int:
    """Frames chunk ``chunk`` adds to the output (the last chunk is cut at the horizon)."""
    begin = first_kept_frame(plan, chunk)
    end = min(plan.starts[chunk] + length, plan.num_frames)
    return max(0, end - begin)


def generate_clip(
    method: Method,
    split: Split,
    protocol: Protocol,
    plan: ClipPlan,
    out_dir: Path,
    fingerprint: str,
    resume: bool,
    device: torch.device,
    chunk_bar: Callable[[int, int], tqdm] | None = None,
) -> tuple[Path, list[float]]:
    """Generate one clip's video ``videos/<clip>.mkv`` (skipped when it already exists on resume)."""
    clip = plan.clip
    if clip is None:
        raise ValueError(f"generate_clip needs a plan made for a clip of the split (plan_clip); {plan.clip_id!r} has none")
    video_path = check_inside(out_dir, out_dir / "videos" / f"{clip.id}{VIDEO_SUFFIX}")
    record_path = video_path.with_suffix(".json")
    work = check_inside(out_dir, out_dir / "work" / clip.id)
    if resume and finished_video_holds(video_path, record_path, plan.num_frames, fingerprint):
        return video_path, []
    remove_inside(out_dir, record_path)
    context = build_context(split, clip, protocol, device)
    if isinstance(method, ChunkMethod):
        timings = rollout_chunks(method, context, plan, work, fingerprint, resume, chunk_bar)
        count = concat_videos(segment_paths(work, plan), video_path)
    elif isinstance(method, VideoMethod):
        began = time.perf_counter()
        with VideoWriter(video_path, split.fps, split.width, split.height, clip_id=clip.id) as writer:
            expected = (split.height, split.width, 3)

            def write(frames: torch.Tensor) -> None:
                batch = int(getattr(frames, "shape", (0,))[0])
                checked = check_frames(frames, (batch, *expected), clip.id, "generate_video")
                remaining = plan.num_frames - writer.num_frames
                writer.write(checked[:remaining])

            method.generate_video(context, plan.num_frames, write)
            if writer.num_frames != plan.num_frames:
                raise ClipError(clip.id, None, f"generate_video wrote {writer.num_frames} frames, {plan.num_frames} expected")
        timings = [time.perf_counter() - began]
        count = plan.num_frames
    else:
        raise TypeError(f"{type(method).__name__} is neither a ChunkMethod nor a VideoMethod")
    if count != plan.num_frames:
        raise ClipError(clip.id, video_path, f"joined video has {count} frames, {plan.num_frames} expected")
    atomic_write_text(record_path, json.dumps({"sha256": sha256_file(video_path), "frames": count, "fingerprint": fingerprint}))
    remove_inside(out_dir, work)
    return video_path, timings


def finished_video_holds(video_path: Path, record_path: Path, num_frames: int, fingerprint: str) -> bool:
    """A finished video is reused only when its record (JSON with ``fingerprint``, ``frames`` and
    ``sha256``) matches this run and its bytes are unchanged."""
    if not video_path.exists():
        return False
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint or record.get("frames") != num_frames:
        return False
    if sha256_file(video_path) != record.get("sha256"):
        tqdm.write(f"warning: {video_path} changed since it was written; generating it again", file=sys.stderr)
        return False
    return True

