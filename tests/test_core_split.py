"""The loader validates everything and names the clip and the file in every error."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import ClipError, ManifestError
from benchmark.splits.manifest import MANIFEST_NAME, ClipRecord, load_split, make_clip_record, write_manifest
from benchmark.video import write_video


def rewrite(root: Path, clip_index: int = 0, **changes) -> None:
    """Re-hash the files and rewrite the manifest with ``changes`` applied to one clip's record."""
    document = json.loads((root / MANIFEST_NAME).read_text())
    clips = []
    for i, raw in enumerate(document["clips"]):
        files = {k: raw[k] for k in ("video", "pose_video", "face_video", "keypoints", "reference")}
        fields_ = {k: raw[k] for k in ("fps", "num_frames", "width", "height", "source", "license")}
        if i == clip_index:
            fields_.update(changes)
        clips.append(make_clip_record(root, raw["id"], files, **fields_))
    write_manifest(root, document["name"], document["version"], document["fps"], document["width"], document["height"], document["face_size"], clips)


def test_tiny_split_loads(tiny_split):
    assert [c.id for c in tiny_split.clips] == ["tiny00", "tiny01"]
    assert (tiny_split.width, tiny_split.height, tiny_split.fps) == (32, 48, 25)
    assert tiny_split.clips[0].seconds == 10.0
    keypoints, boxes = tiny_split.load_keypoints(tiny_split.clips[0])
    assert keypoints.shape == (250, 133, 3) and boxes.shape == (250, 4)
    assert tiny_split.load_reference(tiny_split.clips[0]).shape == (48, 32, 3)
    assert len(tiny_split.content_hash) == 16


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_split(tmp_path)


def test_edited_manifest_is_detected(tiny_split_copy):
    path = tiny_split_copy / MANIFEST_NAME
    document = json.loads(path.read_text())
    document["clips"][0]["num_frames"] = 249
    path.write_text(json.dumps(document))
    with pytest.raises(ManifestError, match="content hash mismatch"):
        load_split(tiny_split_copy)


def test_missing_field(tiny_split_copy):
    path = tiny_split_copy / MANIFEST_NAME
    document = json.loads(path.read_text())
    del document["clips"][1]["video_sha256"]
    path.write_text(json.dumps(document))
    with pytest.raises(ClipError, match=r"clip 'tiny01'.*missing fields \['video_sha256'\]"):
        load_split(tiny_split_copy)


def test_missing_file_names_clip_and_file(tiny_split_copy):
    (tiny_split_copy / "tiny01" / "pose.mkv").unlink()
    with pytest.raises(ClipError) as info:
        load_split(tiny_split_copy)
    assert info.value.clip_id == "tiny01" and info.value.path.endswith("tiny01/pose.mkv")
    assert "does not exist" in str(info.value)


def test_changed_file_fails_hash(tiny_split_copy):
    with open(tiny_split_copy / "tiny00" / "keypoints.npz", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*keypoints.npz.*sha256"):
        load_split(tiny_split_copy)


def test_corrupt_video(tiny_split_copy):
    (tiny_split_copy / "tiny00" / "video.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    rewrite(tiny_split_copy)
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*video.mkv.*(cannot open|unreadable|corrupt)"):
        load_split(tiny_split_copy)


def test_truncated_video(tiny_split_copy):
    frames = np.zeros((200, 48, 32, 3), np.uint8)
    write_video(tiny_split_copy / "tiny00" / "video.mkv", frames, 25)
    rewrite(tiny_split_copy)
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*video.mkv: 200 frames, manifest says 250"):
        load_split(tiny_split_copy)


def test_wrong_resolution(tiny_split_copy):
    write_video(tiny_split_copy / "tiny01" / "pose.mkv", np.zeros((250, 40, 32, 3), np.uint8), 25)
    rewrite(tiny_split_copy)
    with pytest.raises(ClipError, match=r"clip 'tiny01'.*pose.mkv: resolution 32x40, expected 32x48"):
        load_split(tiny_split_copy)


def test_wrong_fps(tiny_split_copy):
    write_video(tiny_split_copy / "tiny00" / "face.mkv", np.zeros((250, 16, 16, 3), np.uint8), 30)
    rewrite(tiny_split_copy)
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*face.mkv: fps 30, expected 25"):
        load_split(tiny_split_copy)


def test_record_fps_must_match_split(tiny_split_copy):
    rewrite(tiny_split_copy, fps=30)
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*fps 30"):
        load_split(tiny_split_copy)


def test_wrong_keypoint_shape(tiny_split_copy):
    np.savez(tiny_split_copy / "tiny00" / "keypoints.npz", keypoints=np.zeros((250, 17, 3)), face_boxes=np.zeros((250, 4)))
    rewrite(tiny_split_copy)
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*keypoints.npz: keypoints shape \(250, 17, 3\)"):
        load_split(tiny_split_copy)


def test_limited_split(tiny_split):
    assert [c.id for c in tiny_split.limited(1).clips] == ["tiny00"]
    assert tiny_split.limited(None) is tiny_split
    with pytest.raises(ValueError):
        tiny_split.limited(0)
    assert isinstance(tiny_split.clips[0], ClipRecord)
