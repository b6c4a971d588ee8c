"""Splits from real-looking videos with keypoints computed elsewhere (``build --keypoints``), end to
end: build, then score a copy of the ground truth with ``benchmark.evaluate``."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from benchmark import evaluate
from benchmark.errors import BuildError, ClipError
from benchmark.files import sha256_file
from benchmark.splits import build
from benchmark.splits.__main__ import main
from benchmark.splits.build import build_split
from benchmark.splits.manifest import FACE, load_split
from benchmark.splits.sources import SourceVideo
from benchmark.splits.supplied_keypoints import check_keypoint_folder, load_keypoint_file
from benchmark.video import read_frames

skimage_data = pytest.importorskip("skimage.data")

FPS, SECONDS = 30, 6
WIDTH, HEIGHT = 480, 320
MARKER = 3  # half-side of the green square painted on the nose
# Where the person's joints are in scikit-image's astronaut photo (512 x 512): COCO body order.
ASTRONAUT_BODY = {
    0: (222, 122), 1: (245, 103), 2: (200, 103), 3: (290, 110), 4: (165, 110),
    5: (330, 290), 6: (95, 290), 7: (360, 420), 8: (45, 420), 9: (300, 490), 10: (150, 490),
    11: (290, 505), 12: (150, 505),
}  # fmt: skip
ASTRONAUT_FACE_CENTRE, ASTRONAUT_FACE_RADII = (222, 120), (45, 55)


def camera(index: int, count: int) -> tuple[int, int, int]:
    """Frame ``index``'s view of the photo: zoomed to ``side`` pixels, then a window at (left, top)."""
    f = index / (count - 1)
    side = round(512 * (1.0 + 0.2 * f))
    return side, round((side - WIDTH) * (0.5 + 0.5 * np.sin(2 * np.pi * f))), round((side - HEIGHT) * (0.1 + 0.15 * f))


def astronaut_keypoints(index: int, count: int) -> np.ndarray:
    """Hand-made COCO-WholeBody keypoints of source frame ``index``: body and face on the person,
    nose on the painted marker, points outside the frame (and hands, feet) with score 0."""
    side, left, top = camera(index, count)
    scale = side / 512

    def to_frame(x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) * scale - 0.5 - left, (y + 0.5) * scale - 0.5 - top

    keypoints = np.zeros((133, 3), np.float32)
    for k, point in ASTRONAUT_BODY.items():
        keypoints[k, :2] = to_frame(*point)
    angles = np.linspace(0, 2 * np.pi, FACE.stop - FACE.start, endpoint=False)
    (cx, cy), (rx, ry) = ASTRONAUT_FACE_CENTRE, ASTRONAUT_FACE_RADII
    for k, angle in zip(range(FACE.start, FACE.stop), angles):
        keypoints[k, :2] = to_frame(cx + rx * np.cos(angle), cy + ry * np.sin(angle))
    keypoints[0, :2] = np.round(keypoints[0, :2])  # the marker's centre pixel
    inside = (keypoints[:, 0] >= 0) & (keypoints[:, 0] <= WIDTH - 1) & (keypoints[:, 1] >= 0) & (keypoints[:, 1] <= HEIGHT - 1)
    keypoints[: FACE.stop, 2] = np.where(inside[: FACE.stop], 0.9, 0.0)
    keypoints[FACE.stop :, :2] = 0
    return keypoints


def write_astronaut_video(path: Path, count: int = FPS * SECONDS) -> np.ndarray:
    """The astronaut photo panned and zoomed at 30 fps, H.264 (lossy, yuv420p) as a camera would
    write it, with a green marker on the nose; returns the keypoints, one row per source frame."""
    photo = Image.fromarray(skimage_data.astronaut())
    keypoints = np.stack([astronaut_keypoints(i, count) for i in range(count)])
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS), options={"crf": "16", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(count):
            side, left, top = camera(index, count)
            image = np.array(photo.resize((side, side), Image.Resampling.BICUBIC).crop((left, top, left + WIDTH, top + HEIGHT)))
            x, y = keypoints[index, 0, :2].astype(int)
            image[y - MARKER : y + MARKER + 1, x - MARKER : x + MARKER + 1] = (0, 255, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return keypoints


def expected_rows(source_frames: int, output_frames: int) -> list[int]:
    """The nearest source frame of every output frame at 25 fps, ties to the earlier one."""
    times = np.arange(source_frames) / FPS
    return [int(np.argmin(np.abs(times - j / 25))) for j in range(output_frames)]


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("astronaut")
    (root / "videos").mkdir()
    (root / "keypoints").mkdir()
    keypoints = write_astronaut_video(root / "videos" / "astronaut.mp4")
    np.savez(root / "keypoints" / "astronaut.npz", keypoints=keypoints)
    return {"root": root, "videos": root / "videos", "keypoints": root / "keypoints"}


@pytest.mark.slow
def test_build_with_supplied_keypoints_then_evaluate_the_ground_truth(astronaut, tmp_path, monkeypatch, capsys):
    def no_pose_model(*args, **kwargs):
        raise AssertionError("a pose model was loaded although --keypoints was given")

    monkeypatch.setattr(build, "load_pose_estimator", no_pose_model)
    out = tmp_path / "split"
    argv = ["build", "--videos", str(astronaut["videos"]), "--keypoints", str(astronaut["keypoints"]), "--out", str(out)]
    assert main([*argv, "--horizon", "2", "--horizon", "4", "--max-seconds", "4", "--face-size", "64", "--no-progress"]) == 0
    assert "minimum clip length 4 s: the longest horizon (horizons 2, 4 s)" in capsys.readouterr().out

    split = load_split(out)
    (clip,) = split.clips
    assert (split.width, split.height, clip.id, clip.num_frames) == (832, 480, "astronaut", 4 * 25)
    assert "keypoints: supplied in keypoints/" in split.description
    resampling = clip.resampling
    assert resampling["keypoints_file"] == "astronaut.npz"
    assert resampling["keypoints_file_sha256"] == sha256_file(astronaut["keypoints"] / "astronaut.npz")
    assert "supplied per source frame" in resampling["keypoints_method"]

    # Time: output frame j has the row of its nearest source frame. Space: the crop and resize.
    with np.load(astronaut["keypoints"] / "astronaut.npz") as data:
        source_keypoints = data["keypoints"]
    x0, y0, x1, y1 = resampling["crop_box"]
    assert (x0, x1) == (0.0, WIDTH) and y0 == pytest.approx((HEIGHT - WIDTH * 480 / 832) / 2, abs=1e-3)
    rows = source_keypoints[expected_rows(len(source_keypoints), clip.num_frames)]
    expected = rows.copy()
    expected[..., 0] = (rows[..., 0] + 0.5 - x0) * 832 / (x1 - x0) - 0.5
    expected[..., 1] = (rows[..., 1] + 0.5 - y0) * 480 / (y1 - y0) - 0.5
    keypoints, face_boxes = split.load_keypoints(clip)
    np.testing.assert_allclose(keypoints, expected, atol=0.01)
    assert np.isfinite(face_boxes).all()

    # The mapped nose lands on the marker painted on the nose, in the frames themselves.
    frames = read_frames(split.path(clip, "video")).numpy()
    for j in range(0, clip.num_frames, 10):
        frame = frames[j].astype(int)
        green = (frame[..., 1] > 180) & (frame[..., 0] < 110) & (frame[..., 2] < 110)
        ys, xs = np.nonzero(green)
        assert len(xs) > 50, j
        assert abs(xs.mean() - keypoints[j, 0, 0]) < 1.0 and abs(ys.mean() - keypoints[j, 0, 1]) < 1.0, j

    # A copy of the ground truth scores PSNR at the cap at both horizons.
    submission = tmp_path / "submission"
    submission.mkdir()
    shutil.copy(split.path(clip, "video"), submission / "astronaut.mkv")
    results_dir = tmp_path / "scores"
    argv = ["--videos", str(submission), "--split", str(out), "--horizon", "2", "--horizon", "4", "--metrics", "psnr", "--out", str(results_dir), "--no-progress"]
    assert evaluate.main(argv) == 0
    results = json.loads((results_dir / "results.json").read_text())
    psnr = {m["horizon_s"]: m["value"] for m in results["metrics"] if m["metric"] == "psnr"}
    assert psnr == {2.0: 100.0, 4.0: 100.0}
    assert results["split"]["content_hash"] == split.content_hash


def test_json_keypoints_give_the_same_clip_as_npz(astronaut, tmp_path):
    with np.load(astronaut["keypoints"] / "astronaut.npz") as data:
        keypoints = data["keypoints"]
    as_json = tmp_path / "json"
    as_json.mkdir()
    (as_json / "astronaut.json").write_text(json.dumps({"keypoints": keypoints.tolist()}))
    options = {"horizons": [4], "max_seconds": 4.0, "landscape_size": (96, 56), "face_size": 16, "progress": False}
    from_npz = build_split(astronaut["videos"], tmp_path / "a", keypoints_dir=astronaut["keypoints"], **options)
    from_json = build_split(astronaut["videos"], tmp_path / "b", keypoints_dir=as_json, **options)
    (a,), (b,) = from_npz.clips, from_json.clips
    for field in ("video", "pose_video", "face_video", "keypoints", "reference"):
        assert getattr(a, f"{field}_sha256") == getattr(b, f"{field}_sha256"), field


SOURCE = SourceVideo(Path("videos/walk.mp4"), "walk", 30.0, 10, 64, 48, 0, 10 / 30)


def valid_keypoints(frames: int = 10) -> np.ndarray:
    keypoints = np.zeros((frames, 133, 3), np.float32)
    keypoints[..., 0], keypoints[..., 1], keypoints[..., 2] = 30.0, 20.0, 0.8
    return keypoints


@pytest.mark.parametrize(
    "keypoints, problem",
    [
        (valid_keypoints().astype(np.int64), r"dtype int64, expected a float array"),
        (valid_keypoints()[:, :17], r"shape \(10, 17, 3\), expected \(frames, 133, 3\)"),
        (valid_keypoints(12), r"12 rows, but the video has 10 frames; give one row per source frame"),
        (np.where(np.arange(3) == 0, np.nan, valid_keypoints()).astype(np.float32), r"NaN or infinite \(first at frame 0, point 0\)"),
        (valid_keypoints() * np.array([1, 1, 2], np.float32), r"scores range over \[1.6, 1.6\], expected \[0, 1\]"),
        (valid_keypoints() / np.array([64, 48, 1], np.float32), r"look normalised"),
        (valid_keypoints() * np.array([4, 1, 1], np.float32), r"far outside the 64x48 video"),
    ],
)
def test_bad_keypoint_files_are_named(tmp_path, keypoints, problem):
    path = tmp_path / "walk.npz"
    np.savez(path, keypoints=keypoints)
    with pytest.raises(ClipError, match=rf"clip 'walk', file .*walk.npz: .*{problem}.*\(keypoints for walk.mp4\)"):
        load_keypoint_file(path, SOURCE)


def test_unreadable_missing_and_ambiguous_keypoint_files(tmp_path):
    assert load_keypoint_file(write(tmp_path / "ok.npz", valid_keypoints()), SOURCE).dtype == np.float32
    np.savez(tmp_path / "other.npz", points=valid_keypoints())
    with pytest.raises(ClipError, match=r"no array 'keypoints' in the .npz \(it holds \['points'\]\)"):
        load_keypoint_file(tmp_path / "other.npz", SOURCE)
    (tmp_path / "bad.json").write_text('{"keypoints": [[1, 2], [3]]}')
    with pytest.raises(ClipError, match=r"bad.json: 'keypoints' is not a \(frames, 133, 3\) array of numbers"):
        load_keypoint_file(tmp_path / "bad.json", SOURCE)
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(ClipError, match="expected a JSON object"):
        load_keypoint_file(tmp_path / "list.json", SOURCE)
    (tmp_path / "pickled.npz").write_bytes(b"not a zip file")
    with pytest.raises(ClipError, match="unreadable .npz"):
        load_keypoint_file(tmp_path / "pickled.npz", SOURCE)

    folder = tmp_path / "keypoints"
    folder.mkdir()
    with pytest.raises(ClipError, match=r"clip 'walk', file videos/walk.mp4: no keypoints file for this video .*walk.npz or walk.json"):
        check_keypoint_folder(folder, [SOURCE])
    write(folder / "walk.npz", valid_keypoints())
    (folder / "walk.json").write_text(json.dumps({"keypoints": valid_keypoints().tolist()}))
    with pytest.raises(ClipError, match="both walk.npz and walk.json exist"):
        check_keypoint_folder(folder, [SOURCE])
    with pytest.raises(BuildError, match="is not a folder"):
        check_keypoint_folder(tmp_path / "missing", [SOURCE])


def test_a_bad_keypoint_file_stops_the_build_before_any_clip(astronaut, tmp_path):
    folder = tmp_path / "keypoints"
    folder.mkdir()
    write(folder / "astronaut.npz", np.zeros((5, 133, 3), np.float32))
    with pytest.raises(ClipError, match=r"astronaut.npz: 5 rows, but the video has 180 frames"):
        build_split(astronaut["videos"], tmp_path / "out", keypoints_dir=folder, horizons=[4], progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(BuildError, match="cannot be combined with a pose model"):
        build_split(astronaut["videos"], tmp_path / "out", keypoints_dir=folder, pose_model="model.onnx", horizons=[4])


def write(path: Path, keypoints: np.ndarray) -> Path:
    np.savez(path, keypoints=keypoints)
    return path
