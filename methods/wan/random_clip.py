"""A clip of seeded random frames with the runner's interface, for tests and timing runs that must not
depend on a split being built. Frames are generated on demand, so a 90 s clip costs no memory."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.protocol import Protocol
from methods.base import ChunkControls, ClipContext

NUM_KEYPOINTS = 133


def _frames(seed: int, start: int, stop: int, height: int, width: int) -> torch.Tensor:
    """Frame ``i`` is a deterministic function of (seed, i) alone, so overlapping reads agree."""
    out = torch.empty(stop - start, height, width, 3, dtype=torch.uint8)
    for row, index in enumerate(range(start, stop)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        out[row] = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return out


def random_clip_context(protocol: Protocol, num_frames: int, face_size: int = 16, seed: int = 0, clip_id: str = "random-0", device: str = "cpu") -> ClipContext:
    """A :class:`ClipContext` whose ground truth, pose and face videos are seeded random frames."""
    height, width = protocol.height, protocol.width
    keypoints = np.zeros((num_frames, NUM_KEYPOINTS, 3), dtype=np.float32)
    face_boxes = np.zeros((num_frames, 4), dtype=np.float32)

    def read_controls(start: int, stop: int, chunk: int = 0) -> ChunkControls:
        index = np.clip(np.arange(start, stop), 0, num_frames - 1)
        return ChunkControls(
            index=chunk,
            start=start,
            pose=_frames(seed + 1, start, stop, height, width),
            face=_frames(seed + 2, start, stop, face_size, face_size),
            keypoints=keypoints[index],
            face_boxes=face_boxes[index],
            generator=torch.Generator().manual_seed(protocol.chunk_seed(clip_id, chunk)),
        )

    def read_ground_truth(start: int, stop: int) -> torch.Tensor:
        return _frames(seed, start, stop, height, width)

    return ClipContext(
        clip_id=clip_id,
        references=read_ground_truth(0, 1),
        keypoints=keypoints,
        face_boxes=face_boxes,
        num_frames=num_frames,
        protocol=protocol,
        face_size=face_size,
        device=torch.device(device),
        read_controls=read_controls,
        read_ground_truth=read_ground_truth,
    )
