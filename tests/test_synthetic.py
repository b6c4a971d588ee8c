"""The synthetic splits: deterministic, exact, well-formed, learnable, and cached with hashes."""

from __future__ import annotations

import dataclasses
import shutil
import time

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from benchmark.errors import ManifestError
from benchmark.files import CACHE_ENV
from benchmark.splits.manifest import FACE, NUM_KEYPOINTS, load_split
from benchmark.splits.registry import resolve_split
from benchmark.splits.synthetic import cache
from benchmark.splits.synthetic.render import RenderedClip, render_clip, resample_psnr
from benchmark.splits.synthetic.rig import ClipMotion, clip_motion, view_names
from benchmark.splits.synthetic.spec import SPLITS, SyntheticSpec
from benchmark.video import read_frames

TEST = SPLITS["synthetic"]
# The first seconds of the test split's clips: same seeds, so the same worlds and motion.
SHORT = dataclasses.replace(TEST, num_frames=60)
TINY = SyntheticSpec("tiny-synthetic", "1", num_clips=2, num_frames=30, seed_offset=7_000_000)

# The content hashes of the synthetic test split and of TINY. A change to either literal is a
# deliberate new version of the split: the frames, keypoints or fields changed, every earlier
# result on it stops being comparable, and the split's version (SPLITS) should change with it.
SYNTHETIC_CONTENT_HASH = "acd1467776b0109c"
TINY_CONTENT_HASH = "43db746b23b1bc7b"


@pytest.fixture(scope="module")
def short_clips() -> list[RenderedClip]:
    return [render_clip(SHORT, index) for index in range(SHORT.num_clips)]


@pytest.fixture(scope="module")
def motions() -> list[ClipMotion]:
    return [clip_motion(TEST, index) for index in range(TEST.num_clips)]


def test_split_specs():
    assert set(SPLITS) == {"synthetic", "synthetic-train"}
    train = SPLITS["synthetic-train"]
    for spec in (TEST, train):
        assert (spec.width, spec.height, spec.fps, spec.face_size) == (64, 96, 25, 32)
    assert (TEST.num_clips, TEST.num_frames) == (3, 2250)
    test_seeds = {TEST.seed(i) for i in range(TEST.num_clips)}
    train_seeds = {train.seed(i) for i in range(train.num_clips)}
    assert len(test_seeds) == TEST.num_clips and len(train_seeds) == train.num_clips
    assert not test_seeds & train_seeds
    with pytest.raises(IndexError):
        TEST.seed(TEST.num_clips)


def test_rendering_is_deterministic(short_clips):
    again = render_clip(SHORT, 1)
    for field in dataclasses.fields(RenderedClip):
        np.testing.assert_array_equal(getattr(again, field.name), getattr(short_clips[1], field.name), err_msg=field.name)
    assert not np.array_equal(short_clips[0].rgb, short_clips[1].rgb)
    assert not np.array_equal(short_clips[0].background, short_clips[1].background)
    assert not np.allclose(short_clips[0].keypoints, short_clips[1].keypoints)


def test_a_shorter_clip_is_the_beginning_of_a_longer_one(short_clips):
    shorter = render_clip(dataclasses.replace(SHORT, num_frames=25), 2)
    np.testing.assert_array_equal(shorter.rgb, short_clips[2].rgb[:25])
    np.testing.assert_array_equal(shorter.keypoints, short_clips[2].keypoints[:25])


def test_shapes_dtypes_and_ranges(short_clips):
    t, h, w, s = SHORT.num_frames, SHORT.height, SHORT.width, SHORT.face_size
    for clip in short_clips:
        assert clip.rgb.shape == (t, h, w, 3) and clip.rgb.dtype == np.uint8
        assert clip.pose.shape == (t, h, w, 3) and clip.pose.dtype == np.uint8
        assert clip.face.shape == (t, s, s, 3) and clip.face.dtype == np.uint8
        assert clip.keypoints.shape == (t, NUM_KEYPOINTS, 3) and clip.keypoints.dtype == np.float32
        assert clip.face_boxes.shape == (t, 4) and clip.face_boxes.dtype == np.float32
        assert clip.yaw.shape == (t,) and clip.background.shape == (h, w, 3)
        assert np.isfinite(clip.keypoints).all()
        assert ((clip.keypoints[..., 2] >= 0) & (clip.keypoints[..., 2] <= 1)).all()
        assert clip.rgb.std() > 10 and clip.face.std() > 5
        # Pose frames are a skeleton on black: mostly black, with saturated colours.
        black = (clip.pose.max(-1) == 0).mean()
        assert 0.8 < black < 0.99 and clip.pose.max() == 255


def test_keypoints_and_face_boxes_stay_in_frame(motions):
    for motion in motions:
        x, y = motion.keypoints[..., 0], motion.keypoints[..., 1]
        assert x.min() >= 0 and x.max() <= TEST.width - 1
        assert y.min() >= 0 and y.max() <= TEST.height - 1
        boxes = motion.face_boxes[motion.face_visible]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= TEST.width).all() and (boxes[:, 3] <= TEST.height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all()
        np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], rtol=1e-5)


def test_face_boxes_are_nan_exactly_when_the_face_is_turned_away(motions):
    for motion in motions:
        missing = np.isnan(motion.face_boxes).any(1)
        assert np.array_equal(missing, ~motion.face_visible)
        assert np.array_equal(missing, np.isnan(motion.face_boxes).all(1))
        face_scores = motion.keypoints[:, FACE, 2]
        assert (face_scores[missing] == 0).all() and (face_scores[~missing] >= 0.3).all()
        views = view_names(motion.yaw)
        assert not missing[views == "front"].any() and not missing[views == "three-quarter"].any()
        assert missing[views == "back"].all()


def test_left_and_right_swap_between_front_and_back(motions):
    """The person's left shoulder is on the image's right from the front, on its left from the back."""
    for motion in motions:
        views = view_names(motion.yaw)
        left_minus_right = motion.keypoints[:, 5, 0] - motion.keypoints[:, 6, 0]
        assert (left_minus_right[views == "front"] > 0).all()
        assert (left_minus_right[views == "back"] < 0).all()
        front = views == "front"
        # Face landmarks: the person's right eye (36-41) is on the image's left.
        assert (motion.keypoints[front, 23 + 36, 0] < motion.keypoints[front, 23 + 45, 0]).all()


def test_every_test_clip_turns_through_all_views_and_moves(motions, short_clips):
    for motion in motions:
        views = view_names(motion.yaw)
        for view in ("front", "side", "back"):
            assert (views == view).sum() >= 2 * TEST.fps, view
        assert np.abs(np.diff(motion.keypoints[..., :2], axis=0)).mean() > 0.05
    for clip in short_clips:
        assert np.abs(np.diff(clip.rgb.astype(np.int16), axis=0)).mean() > 0.1


def test_background_is_static_away_from_the_character(short_clips):
    """Pixels more than 10 px from every keypoint of every frame show the room, unchanged."""
    for clip in short_clips:
        touched = np.zeros(clip.rgb.shape[1:3], dtype=bool)
        x = np.clip(np.round(clip.keypoints[..., 0]).astype(int), 0, SHORT.width - 1)
        y = np.clip(np.round(clip.keypoints[..., 1]).astype(int), 0, SHORT.height - 1)
        touched[y.ravel(), x.ravel()] = True
        far = distance_transform_edt(~touched) > 10
        assert far.mean() > 0.2
        assert (clip.rgb[:, far] == clip.background[far]).all()


def test_downsample_upsample_bound():
    """Area-downsample then bicubic-upsample: the world keeps most of its content at 4x, so a
    small VAE of that compression can reconstruct it well enough for drift to be measurable."""
    spec = dataclasses.replace(TEST, num_frames=100)
    for index in range(spec.num_clips):
        rgb = render_clip(spec, index).rgb
        bounds = {factor: resample_psnr(rgb, factor) for factor in (2, 4, 8)}
        print(f"clip {index}: " + ", ".join(f"{f}x {db:.1f} dB" for f, db in bounds.items()))
        assert bounds[4] >= 28.0
        assert bounds[2] > bounds[4] > bounds[8]


def test_rendering_stays_cheap_enough_to_render_on_first_use():
    """The test split renders on first use, so a 90 s clip must stay within 20 s of CPU (about 6 s
    today, on the shared 2-core machine). CPU time, not wall time: other jobs on the machine slow the
    clock, not the work."""
    spec = dataclasses.replace(TEST, num_frames=250)
    start = time.process_time()
    render_clip(spec, 0)
    per_clip = (time.process_time() - start) * TEST.num_frames / spec.num_frames
    print(f"rendering: {per_clip:.1f} s of CPU per 90 s clip")
    assert per_clip < 20.0


def test_ensure_split_renders_once_and_validates(tmp_path, monkeypatch):
    monkeypatch.setitem(SPLITS, TINY.name, TINY)
    split = cache.ensure_split(TINY.name, cache_dir=tmp_path)
    folder = cache.split_folder(TINY.name, cache_dir=tmp_path)
    assert split.root == folder
    assert folder.name == f"{TINY.name}-v{TINY.version}-{cache.renderer_hash()}"
    assert folder.parent == tmp_path / "splits"
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no partial folders left
    assert [c.id for c in split.clips] == [TINY.clip_id(i) for i in range(TINY.num_clips)]
    assert (split.width, split.height, split.fps, split.face_size) == (TINY.width, TINY.height, TINY.fps, TINY.face_size)
    assert all(c.license == cache.LICENSE and c.source == f"synthetic renderer v1, seed {TINY.seed(i)}" for i, c in enumerate(split.clips))
    load_split(folder)

    # Lossless: the files hold exactly what the renderer produced.
    clip = render_clip(TINY, 1)
    record = split.clips[1]
    np.testing.assert_array_equal(read_frames(split.path(record, "video")).numpy(), clip.rgb)
    np.testing.assert_array_equal(read_frames(split.path(record, "pose_video")).numpy(), clip.pose)
    np.testing.assert_array_equal(read_frames(split.path(record, "face_video")).numpy(), clip.face)
    np.testing.assert_array_equal(split.load_reference(record).numpy(), clip.rgb[0])
    keypoints, boxes = split.load_keypoints(record)
    np.testing.assert_array_equal(keypoints, clip.keypoints)
    np.testing.assert_array_equal(boxes, clip.face_boxes)

    # A second call loads the cache without rendering; a limit trims the clips, not the split.
    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(cache, "render_clip", no_rendering)
    again = cache.ensure_split(TINY.name, cache_dir=tmp_path)
    assert again.content_hash == split.content_hash
    limited = cache.ensure_split(TINY.name, cache_dir=tmp_path, limit=1, verify="none")
    assert len(limited.clips) == 1 and limited.content_hash == split.content_hash
    monkeypatch.undo()

    # A changed renderer renders into a new folder instead of reusing the old clips.
    monkeypatch.setitem(SPLITS, TINY.name, dataclasses.replace(TINY, num_clips=1))
    monkeypatch.setattr(cache, "renderer_hash", lambda: "0123456789ab")
    changed = cache.ensure_split(TINY.name, cache_dir=tmp_path)
    assert changed.root != folder and changed.root.name.endswith("-0123456789ab")
    assert folder.exists() and len(changed.clips) == 1


def test_content_hash_is_pinned_and_independent_of_the_renderer_source(tmp_path, monkeypatch):
    """Same bytes, same hash: a renderer whose source changed (here: its hash) re-renders into a new
    folder, and the split it renders has the same content hash when its frames are the same."""
    monkeypatch.setitem(SPLITS, TINY.name, TINY)
    first = cache.ensure_split(TINY.name, cache_dir=tmp_path)
    assert first.content_hash == TINY_CONTENT_HASH
    monkeypatch.setattr(cache, "renderer_hash", lambda: "fedcba987654")
    again = cache.ensure_split(TINY.name, cache_dir=tmp_path)
    assert again.root != first.root
    assert again.content_hash == first.content_hash


def test_synthetic_test_split_content_hash_is_pinned():
    """The real test split, rendered into the cache on first use (15-30 s), then loaded."""
    assert resolve_split("synthetic").content_hash == SYNTHETIC_CONTENT_HASH


def test_renderer_hash_covers_every_renderer_source_file(tmp_path, monkeypatch):
    package = cache.PACKAGE
    files = cache.renderer_files()
    assert files == sorted(files, key=lambda p: p.relative_to(cache.BENCHMARK).as_posix())
    assert set(files) == set(package.rglob("*.py")) | {cache.BENCHMARK / "pose.py"}
    assert {p.name for p in files} >= {"__init__.py", "__main__.py", "cache.py", "render.py", "rig.py", "spec.py", "pose.py"}

    # The same tree elsewhere hashes the same; an edit to any one of its files changes the hash.
    copy = tmp_path / "benchmark"
    shutil.copytree(package, copy / "splits" / "synthetic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(cache.BENCHMARK / "pose.py", copy / "pose.py")
    original = cache.renderer_hash()
    monkeypatch.setattr(cache, "PACKAGE", copy / "splits" / "synthetic")
    monkeypatch.setattr(cache, "BENCHMARK", copy)
    assert cache.renderer_hash() == original
    for path in cache.renderer_files():
        text = path.read_text()
        path.write_text(text + "\n")
        assert cache.renderer_hash() != original, path.name
        path.write_text(text)
    assert cache.renderer_hash() == original
    (copy / "splits" / "synthetic" / "extra.py").write_text("")
    assert cache.renderer_hash() != original


def test_cache_location_and_unknown_split(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache.split_folder("synthetic").parent == tmp_path / "splits"
    assert cache.split_folder("synthetic", cache_dir=tmp_path / "other").parent == tmp_path / "other" / "splits"
    with pytest.raises(ManifestError, match="unknown synthetic split"):
        cache.ensure_split("no-such-split", cache_dir=tmp_path)
