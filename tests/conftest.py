"""Shared fixtures: a tiny hand-made split that needs neither the synthetic renderer nor any network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmark.split import KEYPOINT_LAYOUT, load_split, make_clip_record, write_manifest  # noqa: E402
from benchmark.video import write_video  # noqa: E402

TINY_W, TINY_H, TINY_FACE, TINY_FRAMES = 32, 48, 16, 250


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
        files = {
            "video": f"{clip_id}/video.mkv",
            "pose_video": f"{clip_id}/pose.mkv",
            "face_video": f"{clip_id}/face.mkv",
            "keypoints": f"{clip_id}/keypoints.npz",
            "reference": f"{clip_id}/reference.png",
        }
        (root / clip_id).mkdir(exist_ok=True)
        write_video(root / files["video"], data["rgb"], 25)
        write_video(root / files["pose_video"], data["pose"], 25)
        write_video(root / files["face_video"], data["face"], 25)
        np.savez(root / files["keypoints"], keypoints=data["keypoints"], face_boxes=data["face_boxes"])
        Image.fromarray(data["rgb"][0]).save(root / files["reference"])
        records.append(
            make_clip_record(root, clip_id, files, fps=25, num_frames=num_frames, width=TINY_W, height=TINY_H, source="test fixture", license="CC0-1.0")
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
