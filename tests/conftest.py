"""Shared fixtures: a tiny hand-made split that needs neither the synthetic renderer nor any network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmark.splits.clip_files import write_clip  # noqa: E402
from benchmark.splits.manifest import KEYPOINT_LAYOUT, load_split, write_manifest  # noqa: E402

TINY_W, TINY_H, TINY_FACE, TINY_FRAMES = 32, 48, 16, 250


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped without one (run by python -m benchmark.gpu_check)")


def render_tiny_clip(index: int, num_frames: int = TINY_FRAMES, width: int = TINY_W, height: int = TINY_H) -> dict:
    """A striped static background and a square that moves; exact, deterministic, fast."""
    rng = np.random.default_rng(1000 + index)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(40, 200, size=3)
    background = np.stack([(base[c] + 40 * ((xx // (3 + c) + yy // 4) % 2)) for c in range(3)], -1).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, 0)
    colour = rng.integers(0, 256, size=3, dtype=np.uint8)
    t = np.arange(num_frames)
    cx = (width / 2 + (width / 3) * np.sin(2 * np.pi * t / 50 + index)).astype(int)
    cy = (height / 2 + (height / 4) * np.cos(2 * np.pi * t / 70)).astype(int)
    keypoints = np.zeros((num_frames, 133, 3), np.float32)
    face_boxes = np.full((num_frames, 4), np.nan, np.float32)
    pose = np.zeros_like(frames)
    for i in range(num_frames):
        x0, y0 = max(cx[i] - 5, 0), max(cy[i] - 5, 0)
        frames[i, y0 : cy[i] + 5, x0 : cx[i] + 5] = colour
        pose[i, y0 : cy[i] + 5, x0 : cx[i] + 5] = (255, 0, 0)
        keypoints[i, :, 0], keypoints[i, :, 1], keypoints[i, :, 2] = cx[i], cy[i], 1.0
        if i % 10 != 9:  # every tenth frame has no face
            face_boxes[i] = (x0, y0, min(cx[i] + 5, width), min(cy[i] + 5, height))
    face = np.zeros((num_frames, TINY_FACE, TINY_FACE, 3), np.uint8)
    face[:] = colour
    return {"rgb": frames, "pose": pose, "face": face, "keypoints": keypoints, "face_boxes": face_boxes}


def make_tiny_split(root: Path, num_clips: int = 2, num_frames: int = TINY_FRAMES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(num_clips):
        clip_id = f"tiny{index:02d}"
        data = render_tiny_clip(index, num_frames)
        records.append(
            write_clip(
                root, clip_id, clip_id, fps=25, video=data["rgb"], pose_video=data["pose"], face_video=data["face"],
                keypoints=data["keypoints"], face_boxes=data["face_boxes"], source="test fixture", license="CC0-1.0",
            )  # fmt: skip
        )
    write_manifest(root, "tiny", "1", 25, TINY_W, TINY_H, TINY_FACE, records, description=f"test split ({KEYPOINT_LAYOUT})")
    return root


@pytest.fixture(scope="module")
def single_thread():
    """Small tensors: one intra-op thread avoids thread-pool contention on a shared 2-core machine.
    Test modules opt in with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_split_dir(tmp_path_factory) -> Path:
    return make_tiny_split(tmp_path_factory.mktemp("tiny_split"))


@pytest.fixture(scope="session")
def tiny_split(tiny_split_dir):
    return load_split(tiny_split_dir)


@pytest.fixture
def tiny_split_copy(tmp_path) -> Path:
    """A fresh split folder a test may damage."""
    return make_tiny_split(tmp_path / "split")


class Interrupted(Exception):
    """Raised by a test to stop a rollout in the middle, as a crash would."""


def check_resume_matches(make_method, split, protocol, num_frames: int, tmp_path: Path, crash_at: int = 2) -> None:
    """A rollout through the runner that crashes at chunk ``crash_at`` and is resumed with a fresh
    method (``make_method()``) writes the same video as one that ran straight through."""
    import torch

    from benchmark.rollout import generate_clip, plan_clip
    from benchmark.video import read_frames

    clip = split.clips[0]
    plan = plan_clip(protocol, clip, num_frames)
    device = torch.device("cpu")
    straight, _ = generate_clip(make_method(), split, protocol, plan, tmp_path / "straight", "fp", False, device)
    crashing = make_method()
    original = crashing.generate_chunk

    def crash(state, controls):
        if controls.index == crash_at:
            raise Interrupted
        return original(state, controls)

    crashing.generate_chunk = crash
    with pytest.raises(Interrupted):
        generate_clip(crashing, split, protocol, plan, tmp_path / "resumed", "fp", True, device)
    resumed, timings = generate_clip(make_method(), split, protocol, plan, tmp_path / "resumed", "fp", True, device)
    assert len(timings) == len(plan.starts) - crash_at
    assert torch.equal(read_frames(straight), read_frames(resumed))
