"""What a synthetic split is: the frame format, the split definitions and each clip's random streams.

A clip is a pure function of ``(split version, seed)`` with ``seed = seed_offset + index``; the
train split's seeds start far above the test split's, so the two never share a clip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT, FPS, FACE_SIZE = 64, 96, 25, 32
# Every part is drawn at this many samples per pixel along each axis, then area-downsampled.
SUPERSAMPLE = 2


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic split: ``num_clips`` clips of ``num_frames`` frames, clip ``i`` seeded ``seed_offset + i``."""

    name: str
    version: str
    num_clips: int
    num_frames: int
    width: int = WIDTH
    height: int = HEIGHT
    face_size: int = FACE_SIZE
    fps: int = FPS
    seed_offset: int = 0

    def seed(self, index: int) -> int:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"split {self.name!r} has clips 0-{self.num_clips - 1}, not {index}")
        return self.seed_offset + index

    def clip_id(self, index: int) -> str:
        return f"{self.name}-{index:03d}"


SPLITS: dict[str, SyntheticSpec] = {
    "synthetic": SyntheticSpec("synthetic", "1", num_clips=3, num_frames=90 * FPS, seed_offset=0),
    "synthetic-train": SyntheticSpec("synthetic-train", "1", num_clips=48, num_frames=12 * FPS, seed_offset=1_000_000),
}


def random_streams(spec: SyntheticSpec, index: int) -> dict[str, np.random.Generator]:
    """Independent generators per aspect, so changing how one aspect draws never moves another."""
    digest = hashlib.sha256(f"everanimate-synthetic/v{spec.version}/{spec.seed(index)}".encode()).digest()
    root = np.random.SeedSequence(int.from_bytes(digest[:16], "little"))
    names = ("look", "room", "rhythm", "moves", "turns", "face")
    return {name: np.random.default_rng(child) for name, child in zip(names, root.spawn(len(names)))}
