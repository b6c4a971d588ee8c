"""Region metrics: background and person PSNR/SSIM from exact masks or keypoint boxes, skipped and
counted empty regions, window sums, verified synthetic masks, and the reports they reach."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from benchmark import compare
from benchmark import evaluate as evaluate_cli
from benchmark.errors import ClipError, ManifestError
from benchmark.metrics import EvaluationHarness
from benchmark.metrics.frame import psnr_per_frame, ssim_per_frame
from benchmark.metrics.regions import (
    KEYPOINTS,
    MASKS,
    PERSON_KEYPOINT_MIN_SCORE,
    PersonRegions,
    RegionPSNR,
    RegionSSIM,
    box_masks,
    person_boxes_from_keypoints,
    region_ssim_per_frame,
)
from benchmark.metrics.spec import BACKGROUND, METRICS, PERSON, REGION_PAIRS
from benchmark.metrics.testing import batches, synthetic_clip, synthetic_person_masks
from benchmark.protocol import Protocol
from benchmark.results import RunResults, csv_columns
from benchmark.splits.build import KEYPOINT_MIN_SCORE
from benchmark.splits.clip_files import save_person_masks, write_person_masks
from benchmark.splits.manifest import MANIFEST_NAME, PersonMasks, load_split, write_manifest
from benchmark.splits.synthetic.render import PERSON_COVERAGE, person_from_transmittance, render_clip
from benchmark.splits.synthetic.spec import SPLITS
from benchmark.weights import WeightsConfig
from leaderboards import submit, validate
from conftest import make_tiny_split

pytestmark = pytest.mark.usefixtures("single_thread")

CAP = 100.0
REGION_METRICS = [name for name, spec in METRICS.items() if spec.feed == REGION_PAIRS]
PROTOCOL = Protocol(width=48, height=32, fps=8)


def noisy_frames(seed: int, count: int = 3, height: int = 32, width: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(20, 236, size=(count, height, width, 3), dtype=np.uint8)
    noise = rng.integers(-15, 16, size=truth.shape)
    generated = np.clip(truth.astype(int) + noise, 0, 255).astype(np.uint8)
    return torch.from_numpy(generated), torch.from_numpy(truth)


def square_masks(count: int = 3, height: int = 32, width: int = 48) -> torch.Tensor:
    masks = torch.zeros(count, height, width, dtype=torch.bool)
    masks[:, 8:24, 12:30] = True
    return masks


def scores(metric, generated, truth, masks) -> list[float]:
    return metric.frame_scores(generated, truth, masks)


# ---- the metrics on hand-made frames --------------------------------------------------------------
def test_a_difference_outside_the_person_leaves_person_psnr_at_the_cap_and_the_reverse():
    noisy, truth = noisy_frames(0)
    person = square_masks()
    for changed in (PERSON, BACKGROUND):
        changed_mask = person if changed == PERSON else ~person
        generated = torch.where(changed_mask[..., None], noisy, truth)
        masks = {PERSON: person, BACKGROUND: ~person}
        kept = BACKGROUND if changed == PERSON else PERSON
        psnr, ssim = RegionPSNR(1, cap_db=CAP), RegionSSIM(1)
        assert scores(psnr, generated, truth, masks[kept]) == [CAP] * 3
        assert scores(ssim, generated, truth, masks[kept]) == pytest.approx([1.0] * 3, abs=1e-12)
        finite = scores(psnr, generated, truth, masks[changed])
        diff = generated.double() - truth.double()
        for frame, value in enumerate(finite):
            inside = changed_mask[frame]
            mse = float((diff[frame][inside] ** 2).mean())
            assert value == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12) and value < 45
        assert all(value < 0.999 for value in scores(ssim, generated, truth, masks[changed]))


def test_region_psnr_of_a_rectangle_is_the_psnr_of_the_crop():
    generated, truth = noisy_frames(1)
    masks = square_masks()
    crop = psnr_per_frame(generated[:, 8:24, 12:30], truth[:, 8:24, 12:30], CAP)
    assert scores(RegionPSNR(1, cap_db=CAP), generated, truth, masks) == crop


def test_region_ssim_of_the_whole_frame_is_the_frame_ssim():
    generated, truth = noisy_frames(2)
    x, y = (f.permute(0, 3, 1, 2).double() / 255 for f in (generated, truth))
    everything = torch.ones(3, 32, 48, dtype=torch.bool)
    np.testing.assert_allclose(region_ssim_per_frame(x, y, everything).numpy(), ssim_per_frame(x, y).numpy(), rtol=0, atol=1e-12)


def _direct_region_ssim(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """The definition, pixel by pixel: Gaussian weights times the mask, renormalised, within each
    11x11 window; mean over the mask's pixels at least 5 pixels from the border, then channels."""
    taps = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    taps /= taps.sum()
    kernel = np.outer(taps, taps)
    c1, c2 = 0.01**2, 0.03**2
    height, width = mask.shape
    per_channel = []
    for channel in range(x.shape[0]):
        values = []
        for i in range(5, height - 5):
            for j in range(5, width - 5):
                if not mask[i, j]:
                    continue
                w = kernel * mask[i - 5 : i + 6, j - 5 : j + 6]
                w = w / w.sum()
                a, b = x[channel, i - 5 : i + 6, j - 5 : j + 6], y[channel, i - 5 : i + 6, j - 5 : j + 6]
                mu_a, mu_b = (w * a).sum(), (w * b).sum()
                var_a, var_b = (w * a * a).sum() - mu_a**2, (w * b * b).sum() - mu_b**2
                cov = (w * a * b).sum() - mu_a * mu_b
                values.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


def test_region_ssim_restricts_the_window_statistics_to_the_region():
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 20, 18))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    masks = np.zeros((2, 20, 18), dtype=bool)
    masks[0, 3:15, 4:12] = True
    masks[1] = rng.random((20, 18)) < 0.4
    got = region_ssim_per_frame(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(masks)).numpy()
    expected = [_direct_region_ssim(x[k], y[k], masks[k]) for k in range(2)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Pixels outside the region do not enter: changing them leaves the score unchanged.
    y_changed = np.where(masks[:, None], y, rng.random(y.shape))
    again = region_ssim_per_frame(torch.from_numpy(x), torch.from_numpy(y_changed), torch.from_numpy(masks)).numpy()
    np.testing.assert_allclose(again, got, rtol=0, atol=1e-12)


def test_an_empty_region_is_skipped_and_counted():
    generated, truth = noisy_frames(4, count=4)
    masks = square_masks(count=4)
    masks[1] = False  # no pixel
    masks[2] = False
    masks[2, :4, :] = True  # only in the 5-pixel border: nothing for SSIM, something for PSNR
    psnr, ssim = RegionPSNR(2, cap_db=CAP), RegionSSIM(2)
    for metric in (psnr, ssim):
        metric.update(generated, truth, 1, masks)
    sums, counts, skipped = psnr.compute()
    assert counts == [0, 3] and skipped == [0, 1] and sums[0] == 0
    _, counts, skipped = ssim.compute()
    assert counts == [0, 2] and skipped == [0, 2]
    with pytest.raises(ValueError, match="do not match"):
        psnr.update(generated, truth, 0, masks[:, :-1])


# ---- where the regions come from ---------------------------------------------------------------------
def keypoints_at(points: list[tuple[float, float, float]], frames: int = 1) -> np.ndarray:
    keypoints = np.zeros((frames, 133, 3), np.float32)
    for index, point in enumerate(points):
        keypoints[:, index] = point
    return keypoints


def test_keypoint_boxes_follow_the_documented_rule():
    assert PERSON_KEYPOINT_MIN_SCORE == KEYPOINT_MIN_SCORE
    # Body keypoints spanning x 10..30, y 20..60 (longer side 40, margin 4); a hand point at x 34 widens
    # it; a low-score point far away is ignored.
    points = [(10, 20, 0.9), (30, 20, 0.9), (10, 60, 0.9), (30, 60, 0.9), (20, 40, 0.2)]
    keypoints = keypoints_at(points)
    keypoints[0, 100] = (34, 30, 0.8)
    keypoints[0, 50] = (60, 5, 0.1)
    box = person_boxes_from_keypoints(keypoints)[0]
    np.testing.assert_allclose(box, [10 - 4, 20 - 4, 34 + 4, 60 + 4])
    # Fewer than four confident body keypoints: the region is unknown.
    unknown = person_boxes_from_keypoints(keypoints_at(points[:3] + [(0, 0, 0.1)]))
    assert np.isnan(unknown).all()
    # Pixels: outward rounding and clipping to the frame, as the face box.
    masks = box_masks(np.array([[2.5, 3.2, 6.1, 7.0], [-5, -5, 3, 2], [np.nan] * 4]), width=10, height=9)
    expected = np.zeros((3, 9, 10), dtype=bool)
    expected[0, 3:7, 2:7] = True
    expected[1, 0:2, 0:3] = True
    np.testing.assert_array_equal(masks, expected)
    regions = PersonRegions.from_keypoints(np.concatenate([keypoints, keypoints_at(points[:2])]))
    person, known = regions.window(0, 2, 48, 80)
    assert regions.source == KEYPOINTS and known.tolist() == [True, False]
    assert person[0, 16:64, 6:38].all() and person[0].sum() == 48 * 32 and not person[1].any()
    with pytest.raises(ValueError, match="133"):
        person_boxes_from_keypoints(np.zeros((2, 17, 3)))


def test_person_mask_from_the_transmittance_of_the_character():
    clear = np.ones((1, 4, 6), np.float32)  # 2x3 pixels of 2x2 supersamples
    clear[0, 0:2, 0:2] = 0.0  # pixel (0, 0) fully covered
    clear[0, 0:2, 2:4] = [[0.0, 0.0], [1.0, 1.0]]  # pixel (0, 1): half covered, in
    clear[0, 0:2, 4:6] = [[0.0, 1.0], [1.0, 1.0]]  # pixel (0, 2): a quarter, out
    clear[0, 2:4, 0:2] = 0.5  # pixel (1, 0): every supersample half covered, in
    clear[0, 2:4, 2:4] = 0.51  # pixel (1, 1): just under half, out
    assert PERSON_COVERAGE == 0.5
    np.testing.assert_array_equal(person_from_transmittance(clear, 2)[0], [[True, True, False], [True, False, False]])


def test_synthetic_masks_agree_with_the_frames_and_the_keypoint_boxes():
    """Every mask pixel differs from the empty room; more than 2 px from the mask (and above the feet,
    clear of the floor shadow) the frame is the room exactly; the keypoint box holds every mask pixel."""
    spec = dataclasses.replace(SPLITS["synthetic"], num_frames=40)
    for index in range(spec.num_clips):
        clip = render_clip(spec, index)
        masks = clip.person_mask
        assert masks.dtype == bool and masks.shape == clip.rgb.shape[:3] and masks.any(axis=(1, 2)).all()
        differs = (clip.rgb != clip.background).any(axis=-1)
        assert differs[masks].all()
        rows = np.arange(spec.height)[:, None]
        for frame in range(len(masks)):
            far = ~binary_dilation(masks[frame], iterations=2) & (rows < clip.keypoints[frame, 15:23, 1].min() - 4)
            assert far.sum() > 1000 and not differs[frame][far].any()
        boxes = box_masks(person_boxes_from_keypoints(clip.keypoints), spec.width, spec.height)
        assert not (masks & ~boxes).any()


# ---- through the harness ------------------------------------------------------------------------------
def harness(**kwargs) -> EvaluationHarness:
    return EvaluationHarness(PROTOCOL, horizons_s=[1.0, 2.0], metrics=["psnr", *REGION_METRICS], weights=WeightsConfig(), **kwargs)


def test_window_sums_give_the_horizon_values_and_empty_frames_are_counted():
    generated, truth, _ = synthetic_clip("regions", 16, PROTOCOL.width, PROTOCOL.height)
    masks = synthetic_person_masks("regions", 16, PROTOCOL.width, PROTOCOL.height)
    masks[[3, 9, 10]] = False  # no person: skipped by the person metrics, the whole frame is background
    h = harness()
    ev = h.evaluate_clip("regions", batches(generated, 8), batches(truth, 8), person_regions=PersonRegions.from_masks(masks))
    assert ev.person_region == MASKS
    assert ev.frames_without_region["person_psnr"] == [1, 2] and ev.frames_without_region["background_psnr"] == [0, 0]
    assert ev.frame_metrics["person_psnr"].counts == [7, 6] and ev.frame_metrics["background_ssim"].counts == [8, 8]
    masks_t = torch.from_numpy(masks)
    direct = {
        "person_psnr": scores(RegionPSNR(1, cap_db=PROTOCOL.psnr_cap_db), generated, truth, masks_t),
        "background_psnr": scores(RegionPSNR(1, cap_db=PROTOCOL.psnr_cap_db), generated, truth, ~masks_t),
        "person_ssim": scores(RegionSSIM(1), generated, truth, masks_t),
        "background_ssim": scores(RegionSSIM(1), generated, truth, ~masks_t),
    }
    assert math.isnan(direct["person_psnr"][3]) and not math.isnan(direct["background_psnr"][3])
    for name, values in direct.items():
        for horizon, frames in ((1.0, 8), (2.0, 16)):
            kept = [v for v in values[:frames] if not math.isnan(v)]
            assert ev.clip_value(name, horizon) == pytest.approx(math.fsum(kept) / len(kept), rel=1e-12, abs=1e-12)
        series = ev.frame_metrics[name]
        assert math.fsum(series.sums) / sum(series.counts) == pytest.approx(ev.clip_value(name, 2.0), rel=1e-12, abs=1e-12)
    result = h.aggregate([ev])
    row = result.get("person_psnr", 2.0)
    assert row.extra["frames_without_region"] == 3 and row.extra["person_region"] == MASKS
    assert result.get("person_psnr", 1.0).extra["frames_without_region"] == 1
    assert {p.metric for p in result.drift} == {"psnr", *REGION_METRICS}


def test_unknown_or_missing_regions_skip_every_region_metric():
    generated, truth, _ = synthetic_clip("unknown", 16, PROTOCOL.width, PROTOCOL.height)
    h = harness()
    keypoints = np.zeros((16, 133, 3), np.float32)  # no confident keypoint: region unknown in every frame
    by_keypoints = h.evaluate_clip("a", batches(generated, 8), batches(truth, 8), person_regions=PersonRegions.from_keypoints(keypoints))
    without = h.evaluate_clip("b", batches(generated, 8), batches(truth, 8))
    for ev in (by_keypoints, without):
        assert all(ev.frames_without_region[name] == [8, 8] for name in REGION_METRICS)
        assert all(ev.clip_value(name, 2.0) is None for name in REGION_METRICS)
        assert ev.clip_value("psnr", 2.0) is not None
    result = h.aggregate([by_keypoints, without])
    row = result.get("background_ssim", 2.0)
    assert row.value is None and "no frame within the horizon has background pixels" in row.unavailable_reason
    assert row.extra["frames_without_region"] == 32 and row.extra["person_region"] == "keypoints, none"
    with pytest.raises(ClipError, match="cover 10 frames"):
        h.evaluate_clip("c", batches(generated, 8), batches(truth, 8), person_regions=PersonRegions.from_masks(np.ones((10, 32, 48), bool)))
    with pytest.raises(ClipError, match="person masks are 40x32"):
        h.evaluate_clip("c", batches(generated, 8), batches(truth, 8), person_regions=PersonRegions.from_masks(np.ones((16, 32, 40), bool)))


# ---- masks in a split, verified ---------------------------------------------------------------------------
def tiny_person_masks(split) -> dict:
    """The tiny fixture's exact person masks: its square, [cx - 5, cx + 5) x [cy - 5, cy + 5), at its keypoints."""
    masks = {}
    for clip in split.clips:
        keypoints, _ = split.load_keypoints(clip)
        mask = np.zeros((clip.num_frames, split.height, split.width), dtype=bool)
        for frame, (cx, cy) in enumerate(keypoints[:, 0, :2].astype(int)):
            mask[frame, max(cy - 5, 0) : cy + 5, max(cx - 5, 0) : cx + 5] = True
        masks[clip.id] = mask
    return masks


def add_person_masks(root) -> None:
    """Write the tiny split's masks beside its clips and record them in its manifest."""
    split = load_split(root, verify="none")
    entries = {clip.id: write_person_masks(root, clip.id, clip.id, mask) for clip, mask in zip(split.clips, tiny_person_masks(split).values())}
    write_manifest(
        root, split.name, split.version, split.fps, split.width, split.height, split.face_size, list(split.clips),
        description=split.description, person_masks=PersonMasks("the tiny fixture's square", entries),
    )  # fmt: skip


@pytest.fixture
def masked_split(tiny_split_copy):
    add_person_masks(tiny_split_copy)
    return tiny_split_copy


def test_masks_load_verified_and_leave_the_content_hash_alone(masked_split, tmp_path):
    split = load_split(masked_split, verify="full")
    plain = load_split(make_tiny_split(tmp_path / "plain"), verify="none")
    assert split.person_masks is not None and plain.person_masks is None
    assert split.content_hash == plain.content_hash and split.clips == plain.clips
    expected = tiny_person_masks(split)
    for clip in split.clips:
        np.testing.assert_array_equal(split.load_person_masks(clip), expected[clip.id])
    # A tampered mask file fails loudly, naming the clip and the file, even with its size and time kept.
    clip = split.clips[1]
    path = split.person_mask_path(clip)
    stat = path.stat()
    masks = expected[clip.id].copy()
    masks[0, 0, 0] = not masks[0, 0, 0]
    save_person_masks(path, masks)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ClipError, match=r"tiny01.*person_mask\.npz.*sha256 differs"):
        split.load_person_masks(clip)
    with pytest.raises(ClipError, match=r"tiny01.*person_mask\.npz.*sha256 differs"):
        load_split(masked_split, verify="full")
    path.unlink()
    with pytest.raises(ClipError, match=r"tiny01.*person_mask\.npz.*does not exist"):
        load_split(masked_split, verify="none")


def test_a_person_mask_record_must_list_every_clip(masked_split):
    manifest = masked_split / MANIFEST_NAME
    original = manifest.read_text()

    def edited(change) -> None:
        document = json.loads(original)
        change(document["person_masks"]["clips"])
        manifest.write_text(json.dumps(document))

    edited(lambda clips: clips.pop("tiny00"))
    with pytest.raises(ManifestError, match="exactly the split's clips"):
        load_split(masked_split, verify="none")
    edited(lambda clips: clips["tiny01"].update(sha256="bad"))
    with pytest.raises(ClipError, match="tiny01.*must be a sha256"):
        load_split(masked_split, verify="none")
    edited(lambda clips: clips["tiny01"].update(file="../escape.npz"))
    with pytest.raises(ClipError, match="tiny01.*outside the split folder"):
        load_split(masked_split, verify="none")
    edited(lambda clips: clips["tiny01"].update(extra=1))
    with pytest.raises(ClipError, match="tiny01.*'file' and 'sha256'"):
        load_split(masked_split, verify="none")
    manifest.write_text(original)
    assert load_split(masked_split, verify="full").person_masks is not None


# ---- the reports -----------------------------------------------------------------------------------------
FAST = ["--horizon", "2", "--horizon", "4", "--no-progress"]
METRICS_ARG = ["--metrics", "psnr," + ",".join(REGION_METRICS)]


def evaluate_run(videos, split, out, *extra) -> int:
    return evaluate_cli.main(["--videos", str(videos), "--split", str(split), "--out", str(out), "--method-name", "copy", *FAST, *METRICS_ARG, *extra])


@pytest.fixture
def copied_videos(masked_split, tmp_path):
    """Videos 'made elsewhere': the ground truth of the tiny split."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for clip in load_split(masked_split, verify="none").clips:
        (folder / f"{clip.id}.mkv").write_bytes((masked_split / clip.video).read_bytes())
    return folder


def test_evaluate_reports_region_metrics_everywhere(masked_split, copied_videos, tmp_path, capsys):
    assert evaluate_run(copied_videos, masked_split, tmp_path / "masks") == 0
    table = capsys.readouterr().out
    assert all(name in table for name in REGION_METRICS)
    results = RunResults.load(tmp_path / "masks" / "results.json")
    assert results.split["person_region"] == MASKS and len(results.split["person_masks_hash"]) == 16
    for name in REGION_METRICS:
        for horizon in (2.0, 4.0):
            row = results.record(name, horizon)
            # Ground truth against itself: PSNR at the cap, SSIM 1, every frame has both regions.
            assert row.value == pytest.approx(CAP if "psnr" in name else 1.0, abs=1e-12)
            assert row.extra["frames_without_region"] == 0 and row.extra["person_region"] == MASKS
    header, first = (tmp_path / "masks" / "summary.csv").read_text().splitlines()[:2]
    assert header.split(",") == list(csv_columns()) and all(name in header.split(",") for name in REGION_METRICS)
    windows = [json.loads(line) for line in (tmp_path / "masks" / "windows.jsonl").read_text().splitlines()]
    assert {row["metric"] for row in windows} == {"psnr", *REGION_METRICS}
    assert {p["metric"] for p in results.drift} == {"psnr", *REGION_METRICS}
    assert (tmp_path / "masks" / "drift.png").stat().st_size > 0

    # The leaderboard takes the region columns.
    board = tmp_path / "board.csv"
    assert submit.main([str(tmp_path / "masks"), "--out", str(board), "--known-split", str(masked_split), "--source", "reproduced", "--submitter", "ci"]) == 0
    assert validate.main([str(board), "--known-split", str(masked_split)]) == 0
    capsys.readouterr()

    # Keypoint boxes on request: recorded as such, and not compared with the mask run.
    assert evaluate_run(copied_videos, masked_split, tmp_path / "keypoints", "--person-region", "keypoints") == 0
    by_keypoints = RunResults.load(tmp_path / "keypoints" / "results.json")
    assert by_keypoints.split["person_region"] == KEYPOINTS and "person_masks_hash" not in by_keypoints.split
    capsys.readouterr()
    assert compare.main([str(tmp_path / "masks"), str(tmp_path / "keypoints")]) == 2
    assert "different person regions" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "masks"), "--markdown", "--metrics", ",".join(REGION_METRICS)]) == 0
    assert "| copy | 4 s | 100.00 ± 0.00 | 1.0000 ± 0.0000 | 100.00 ± 0.00 | 1.0000 ± 0.0000 |" in capsys.readouterr().out


def test_a_split_without_masks_uses_keypoints_and_refuses_masks(tiny_split_dir, tmp_path, capsys):
    split = load_split(tiny_split_dir, verify="none")
    videos = tmp_path / "videos"
    videos.mkdir()
    for clip in split.clips:
        (videos / f"{clip.id}.mkv").write_bytes((tiny_split_dir / clip.video).read_bytes())
    assert evaluate_run(videos, tiny_split_dir, tmp_path / "bad", "--person-region", "masks") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no person masks" in err[0]
    assert evaluate_run(videos, tiny_split_dir, tmp_path / "auto") == 0
    results = RunResults.load(tmp_path / "auto" / "results.json")
    assert results.split["person_region"] == KEYPOINTS
    # The fixture's keypoints all sit on one whole-pixel point: a box of no area, so no person pixel in any
    # of the 2 x 100 frames, and every pixel is background.
    person, background = results.record("person_psnr", 4.0), results.record("background_psnr", 4.0)
    assert person.value is None and person.extra["frames_without_region"] == 200 and "no frame" in person.unavailable_reason
    assert background.value == CAP and background.extra["frames_without_region"] == 0


def test_the_runner_scores_regions_from_the_split_masks(masked_split, tmp_path, capsys):
    from benchmark import run as run_cli

    common = ["--method", "reference-copy", "--split", str(masked_split), *FAST, *METRICS_ARG]
    assert run_cli.main([*common, "--out", str(tmp_path / "run")]) == 0
    results = RunResults.load(tmp_path / "run" / "results.json")
    assert results.split["person_region"] == MASKS
    background, person = results.record("background_psnr", 4.0), results.record("person_psnr", 4.0)
    # The reference frame copied: the static background is nearly right, the moving square is not.
    assert background.value > person.value + 5 and person.extra["frames_without_region"] == 0
    capsys.readouterr()
    plain = make_tiny_split(tmp_path / "plain")
    assert run_cli.main(["--method", "reference-copy", "--split", str(plain), *FAST, *METRICS_ARG, "--out", str(tmp_path / "r2"), "--person-region", "masks"]) == 2
    assert "has no person masks" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "videos").exists()
