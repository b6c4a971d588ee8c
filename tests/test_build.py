"""The split builder on small generated videos, with a stub pose estimator instead of model weights."""

from __future__ import annotations

import hashlib
import sys
import time
import types
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from benchmark.errors import BuildError, ClipError
from benchmark.files import sha256_file
from benchmark.splits import build
from benchmark.splits.__main__ import main
from benchmark.splits.build import build_split
from benchmark.splits.clip_files import save_keypoints
from benchmark.splits.manifest import FACE, MANIFEST_NAME, load_split
from benchmark.splits.pose_estimation import RtmlibWholebody, select_person
from benchmark.video import read_frames

SMALL_LANDSCAPE = (96, 64)


CODE_BITS, CODE_CELL, CODE_X0 = 7, 10, 10


def write_source_video(path: Path, width: int, height: int, fps: int, num_frames: int) -> None:
    """A grey background with a moving coloured square; a strip of black/white cells along the top
    spells the frame index in binary, so the output shows which source frame each frame took."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        side = min(width, height) // 4
        for index in range(num_frames):
            image = np.full((height, width, 3), 100, dtype=np.uint8)
            for bit in range(CODE_BITS):
                x = CODE_X0 + bit * CODE_CELL
                image[:12, x : x + CODE_CELL] = 255 if index >> bit & 1 else 0
            x = int((width - side) * index / max(num_frames - 1, 1))
            image[height // 2 - side // 2 : height // 2 + side // 2, x : x + side] = (220, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def stub_keypoints(frames: np.ndarray) -> np.ndarray:
    """A standing person in the middle of each frame, with a visible face; deterministic."""
    batch, height, width = frames.shape[:3]
    keypoints = np.zeros((batch, 133, 3), np.float32)
    rows = np.linspace(0.15, 0.9, 23)
    keypoints[:, :23, 0] = width * (0.5 + 0.1 * np.sin(np.arange(23)))
    keypoints[:, :23, 1] = height * rows
    angles = np.linspace(0, 2 * np.pi, FACE.stop - FACE.start, endpoint=False)
    keypoints[:, FACE, 0] = width * (0.5 + 0.08 * np.cos(angles))
    keypoints[:, FACE, 1] = height * (0.15 + 0.06 * np.sin(angles))
    keypoints[:, 91:, 0] = width * 0.3
    keypoints[:, 91:, 1] = height * 0.5
    keypoints[..., 2] = 0.9
    return keypoints


class StubEstimator:
    name = "stub"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
        self.calls += 1
        return stub_keypoints(frames)


@pytest.fixture(scope="module")
def source_videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    (root / "landscape").mkdir()
    (root / "portrait").mkdir()
    # 66 frames at 30 fps and 53 at 24 fps: 2.2 s -> 55 frames, 2.208 s -> 55 frames at 25 fps.
    write_source_video(root / "landscape" / "walk_01.mp4", 100, 60, 30, 66)
    write_source_video(root / "portrait" / "dance-02.mp4", 60, 100, 24, 53)
    return {"landscape": root / "landscape", "portrait": root / "portrait", "root": root}


@pytest.fixture(scope="module")
def landscape_split(source_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "land"
    return build_split(
        source_videos["landscape"], out, name="mine", version="2", pose_estimator=StubEstimator(), horizons=[2],
        face_size=32, landscape_size=SMALL_LANDSCAPE, batch_size=16, progress=False, license="CC-BY-4.0",
    )  # fmt: skip


def test_landscape_build_loads_with_protocol_fps_size_and_length(landscape_split):
    split = load_split(landscape_split.root)
    assert (split.name, split.version, split.fps) == ("mine", "2", 25)
    assert (split.width, split.height, split.face_size) == (96, 64, 32)
    (clip,) = split.clips
    assert clip.id == "walk_01"
    assert clip.num_frames == round(66 / 30 * 25) == 55
    assert clip.license == "CC-BY-4.0" and clip.source == "walk_01.mp4"
    resampling = clip.resampling
    assert resampling["source_fps"] == pytest.approx(30.0)
    assert (resampling["source_width"], resampling["source_height"], resampling["source_frames"]) == (100, 60, 66)
    assert "nearest" in resampling["temporal_method"] and "crop" in resampling["spatial_method"]
    # 100x60 into 96x64 (3:2): full height, 90 px wide centred.
    assert resampling["crop_box"] == [5.0, 0.0, 95.0, 60.0]
    for field in ("video", "pose_video", "face_video", "keypoints", "reference"):
        assert sha256_file(split.path(clip, field)) == getattr(clip, f"{field}_sha256")
    keypoints, face_boxes = split.load_keypoints(clip)
    assert np.allclose(keypoints, stub_keypoints(np.zeros((55, 64, 96, 3), np.uint8)))
    assert np.isfinite(face_boxes).all()
    widths, heights = face_boxes[:, 2] - face_boxes[:, 0], face_boxes[:, 3] - face_boxes[:, 1]
    assert np.allclose(widths, heights)


def test_resampling_takes_the_nearest_source_frame(landscape_split):
    (clip,) = landscape_split.clips
    frames = read_frames(landscape_split.path(clip, "video")).numpy()
    crop_x0 = clip.resampling["crop_box"][0]
    scale = 96 / 90
    cells = [int((CODE_X0 + (bit + 0.5) * CODE_CELL - crop_x0) * scale) for bit in range(CODE_BITS)]
    bits = frames[:, 4, cells].mean(axis=-1) > 128
    source_index = (bits * (1 << np.arange(CODE_BITS))).sum(axis=1)
    expected = [int(np.argmin(np.abs(np.arange(66) / 30 - i / 25))) for i in range(55)]
    assert source_index.tolist() == expected
    reference = landscape_split.load_reference(clip).numpy()
    assert np.array_equal(reference, frames[0])


def test_pose_video_shows_the_skeleton(landscape_split):
    (clip,) = landscape_split.clips
    pose = read_frames(landscape_split.path(clip, "pose_video"), stop=1).numpy()[0]
    assert pose.shape == (64, 96, 3)
    assert 0 < (pose.max(axis=-1) > 0).mean() < 0.5


def test_portrait_video_gets_the_portrait_resolution(source_videos, tmp_path):
    split = build_split(
        source_videos["portrait"], tmp_path / "portrait", pose_estimator=StubEstimator(), face_size=32,
        landscape_size=SMALL_LANDSCAPE, progress=False, max_seconds=1.0, horizons=[1],
    )  # fmt: skip
    assert (split.width, split.height) == (64, 96)
    (clip,) = split.clips
    assert clip.id == "dance-02"
    assert clip.num_frames == 25  # max_seconds
    assert clip.resampling["orientation"] == "portrait" and clip.resampling["max_seconds"] == 1.0
    assert clip.resampling["source_fps"] == pytest.approx(24.0)


def test_mixed_orientations_need_a_choice(source_videos, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for folder in ("landscape", "portrait"):
        for video in source_videos[folder].iterdir():
            (mixed / video.name).symlink_to(video)
    with pytest.raises(BuildError, match="walk_01.mp4.*dance-02.mp4"):
        build_split(mixed, tmp_path / "out", pose_estimator=StubEstimator(), progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_build_and_info(source_videos, tmp_path, monkeypatch, capsys):
    estimator = StubEstimator()
    monkeypatch.setattr(build, "load_pose_estimator", lambda *args, **kwargs: estimator)
    out = tmp_path / "cli"
    argv = ["build", "--videos", str(source_videos["landscape"]), "--out", str(out), "--name", "cli", "--min-seconds", "0.4", "--max-seconds", "0.4", "--face-size", "24", "--no-progress"]
    assert main(argv) == 0
    assert estimator.calls > 0
    assert "minimum clip length 0.4 s: --min-seconds" in capsys.readouterr().out
    split = load_split(out)
    assert (split.width, split.height, split.face_size) == (832, 480, 24)
    assert split.clips[0].num_frames == 10
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cli" in printed and split.content_hash in printed and "walk_01" in printed and "0.40 s" in printed
    # A second build into the same folder must be asked for explicitly.
    assert main(argv) != 0
    assert "--overwrite" in capsys.readouterr().err


def test_corrupt_video_is_named(tmp_path, monkeypatch, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ClipError, match="broken.mp4") as info:
        build_split(videos, tmp_path / "out", pose_estimator=StubEstimator(), progress=False)
    assert info.value.clip_id == "broken"
    monkeypatch.setattr(build, "load_pose_estimator", lambda *args, **kwargs: StubEstimator())
    assert main(["build", "--videos", str(videos), "--out", str(tmp_path / "out")]) != 0
    assert "broken.mp4" in capsys.readouterr().err
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_empty_folder_and_bad_names(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "notes.txt").write_text("not a video")
    with pytest.raises(BuildError, match="no videos"):
        build_split(videos, tmp_path / "out", pose_estimator=StubEstimator(), progress=False)
    with pytest.raises(BuildError, match="not a folder"):
        build_split(tmp_path / "missing", tmp_path / "out", pose_estimator=StubEstimator(), progress=False)
    (videos / "bad name.mp4").write_bytes(b"")
    with pytest.raises(ClipError, match="bad name.mp4"):
        build_split(videos, tmp_path / "out", pose_estimator=StubEstimator(), progress=False)


def test_minimum_length_is_the_longest_horizon(source_videos, tmp_path, capsys):
    """A 2.2 s video supports a 2 s horizon, not a 4 s one; the default asks for 90 s."""
    with pytest.raises(BuildError, match=r"minimum clip length 90 s: the longest horizon.*walk_01.mp4 is 2.20 s long \(55 frames.*up to 2 s \(none of those asked\)"):
        build_split(source_videos["landscape"], tmp_path / "a", pose_estimator=StubEstimator(), progress=False)
    with pytest.raises(BuildError, match=r"minimum clip length 4 s.*walk_01.mp4 is 2.20 s long.*up to 2 s \(of those asked: 2 s\)"):
        build_split(source_videos["landscape"], tmp_path / "b", pose_estimator=StubEstimator(), horizons=[2, 4], progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # The CLI prints the rule it used, and an explicit --min-seconds says what it gives up.
    code = main(["build", "--videos", str(source_videos["landscape"]), "--out", str(tmp_path / "c"), "--horizon", "4", "--min-seconds", "3", "--no-progress"])
    assert code != 0
    printed = capsys.readouterr()
    assert "minimum clip length 3 s: --min-seconds (clips shorter than 4 s will not support every horizon of 4 s)" in printed.out
    assert "walk_01.mp4 is 2.20 s long" in printed.err
    with pytest.raises(BuildError, match="whole number of seconds"):
        build_split(source_videos["landscape"], tmp_path / "d", pose_estimator=StubEstimator(), horizons=[2.5])
    with pytest.raises(BuildError, match="--max-seconds 1 keeps less than the minimum clip length 2 s"):
        build_split(source_videos["landscape"], tmp_path / "e", pose_estimator=StubEstimator(), horizons=[2], max_seconds=1.0)


def test_too_short_and_no_person(source_videos, tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    write_source_video(short / "blink.mp4", 64, 48, 25, 10)
    with pytest.raises(BuildError, match=r"too short.*blink.mp4 is 0.40 s long.*too short for any horizon"):
        build_split(short, tmp_path / "out", pose_estimator=StubEstimator(), horizons=[1], progress=False)

    def nobody(frames: np.ndarray) -> np.ndarray:
        return np.zeros((len(frames), 133, 3), np.float32)

    out = tmp_path / "out2"
    with pytest.raises(ClipError, match="walk_01.mp4.*no person found in frame 0"):
        build_split(source_videos["landscape"], out, pose_estimator=nobody, horizons=[2], landscape_size=SMALL_LANDSCAPE, face_size=16, progress=False)
    assert not (out / MANIFEST_NAME).exists()
    assert not any((out / "clips").iterdir())  # the partial clip folder was removed


def test_select_person_takes_the_highest_body_score():
    keypoints = np.stack([np.full((133, 2), 1.0), np.full((133, 2), 2.0)])
    scores = np.stack([np.full(133, 0.4), np.full(133, 1.7)])
    person = select_person(keypoints, scores)
    assert person.shape == (133, 3)
    assert np.all(person[:, :2] == 2.0) and np.all(person[:, 2] == 1.0)  # scores clipped to [0, 1]
    assert np.all(select_person(np.zeros((0, 133, 2)), np.zeros((0, 133))) == 0)


def test_rtmlib_wrapper_feeds_bgr_and_converts(monkeypatch):
    seen = []

    class FakeWholebody:
        MODE = {"performance": {"det": "det.onnx", "det_input_size": (640, 640), "pose": "pose.onnx", "pose_input_size": (288, 384)}}

        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def __call__(self, image):
            seen.append(image.copy())
            keypoints = np.zeros((2, 133, 2), np.float32)
            keypoints[1] = image[0, 0, 0]  # the blue channel of BGR
            return keypoints, np.stack([np.full(133, 0.2), np.full(133, 0.8)])

    monkeypatch.setitem(sys.modules, "rtmlib", types.SimpleNamespace(Wholebody=FakeWholebody))
    estimator = RtmlibWholebody(device="cpu")
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    frames[..., 2] = 77  # blue in RGB
    out = estimator(frames)
    assert out.shape == (3, 133, 3)
    assert np.all(out[..., :2] == 77) and np.allclose(out[..., 2], 0.8)
    assert all(image[0, 0, 0] == 77 for image in seen)
    assert estimator._model.kwargs["backend"] == "onnxruntime"
    with pytest.raises(BuildError, match="neither an existing file nor a URL"):
        RtmlibWholebody(pose_model="/no/such/model.onnx")


def test_keypoint_files_do_not_depend_on_when_they_are_written(tmp_path, monkeypatch):
    """A zip entry can carry the time it was written (``zipfile`` stamps the clock, older ``np.savez``
    the temporary file's mtime), which would change a split's hash on every build. Written under
    two clocks years apart, the files must be equal and carry no time at all."""
    keypoints = np.random.default_rng(0).random((5, 133, 3), dtype=np.float32)
    boxes = np.full((5, 4), np.nan, np.float32)
    monkeypatch.setattr(time, "time", lambda: 978_307_200.0)  # 2001-01-01
    save_keypoints(tmp_path / "a.npz", keypoints, boxes)
    monkeypatch.setattr(time, "time", lambda: 1_940_000_000.0)  # 2031-06-22
    save_keypoints(tmp_path / "b.npz", keypoints, boxes)
    monkeypatch.undo()
    digest = [hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("a.npz", "b.npz")]
    assert digest[0] == digest[1]
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:
        assert [info.filename for info in archive.infolist()] == ["keypoints.npy", "face_boxes.npy"]
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) and not info.extra for info in archive.infolist())
    with np.load(tmp_path / "a.npz") as data:
        assert np.array_equal(data["keypoints"], keypoints) and np.isnan(data["face_boxes"]).all()
