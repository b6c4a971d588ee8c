"""Pixel metrics against reference implementations and closed forms: PSNR, SSIM, F-PSNR, seam."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import peak_signal_noise_ratio

from benchmark.metrics import as_uint8_frames, to_unit_float
from benchmark.metrics.frame import SSIM, FacePSNR, face_box_pixels, mean_psnr, psnr_per_frame, ssim_per_frame
from benchmark.metrics.records import ClipEvaluation
from benchmark.metrics.temporal import SeamScore
from benchmark.metrics.testing import synthetic_clip


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def clip():
    generated, truth, boxes = synthetic_clip("pixel-clip", 6, 96, 64)
    return generated, truth, boxes


def test_float_and_uint8_inputs_give_the_same_frames(clip):
    generated, _, _ = clip
    as_float = generated.float() / 255
    assert torch.equal(as_uint8_frames(as_float), generated)
    assert torch.equal(as_uint8_frames(as_float.double()), generated)
    assert torch.equal(to_unit_float(as_uint8_frames(as_float)), to_unit_float(generated))
    with pytest.raises(ValueError):
        as_uint8_frames(as_float * 2)
    with pytest.raises(ValueError):
        as_uint8_frames(torch.full_like(as_float, float("nan")))
    with pytest.raises(ValueError):
        as_uint8_frames(generated.permute(0, 3, 1, 2))


def test_psnr_matches_torchmetrics(clip):
    generated, truth, _ = clip
    ours = psnr_per_frame(generated, truth, cap_db=100.0)
    reference = peak_signal_noise_ratio(generated.double(), truth.double(), data_range=255.0, reduction="none", dim=(1, 2, 3))
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-6)  # torchmetrics returns float32


def test_psnr_of_identical_frames_is_the_cap_and_cap_bounds_near_identical(clip):
    _, truth, _ = clip
    assert psnr_per_frame(truth, truth, cap_db=100.0) == [100.0] * len(truth)
    # One value off by one in a 256x256 frame: 10 log10(255^2 * N) = 101.1 dB, above the cap.
    exact = torch.zeros(1, 256, 256, 3, dtype=torch.uint8)
    nearly = exact.clone()
    nearly[0, 0, 0, 0] = 1
    assert psnr_per_frame(nearly, exact, cap_db=100.0) == [100.0]
    assert psnr_per_frame(nearly, exact, cap_db=200.0)[0] == pytest.approx(10 * math.log10(255**2 * exact.numel()))


def test_one_psnr_serves_uint8_and_float_frames_and_the_methods(clip):
    from methods.vae_roundtrip import psnr_uint8
    from methods.wan.data import psnr as training_psnr

    generated, truth, _ = clip
    per_frame = psnr_per_frame(generated, truth)
    assert psnr_per_frame(generated.float() / 255, truth.double() / 255) == per_frame
    assert mean_psnr(generated, truth) == math.fsum(per_frame) / len(per_frame)
    assert psnr_uint8(generated, truth) == mean_psnr(generated, truth)
    as_video = lambda frames: (frames.double() / 127.5 - 1).permute(3, 0, 1, 2)[None]  # noqa: E731
    assert training_psnr(as_video(generated), as_video(truth)) == mean_psnr(generated, truth)


def _skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(
        a.numpy() / 255.0, b.numpy() / 255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=1
    )


def test_ssim_matches_scikit_image(clip):
    generated, truth, _ = clip
    photo = torch.from_numpy(data.astronaut()[100:228, 150:246].copy())
    noisy = torch.from_numpy(np.clip(photo.numpy().astype(int) + np.random.default_rng(0).integers(-30, 30, photo.shape), 0, 255).astype(np.uint8))
    pairs = [(generated[i], truth[i]) for i in range(len(truth))] + [(noisy, photo)]
    for a, b in pairs:
        ours = float(ssim_per_frame(to_unit_float(a[None]), to_unit_float(b[None]))[0])
        assert ours == pytest.approx(_skimage_ssim(a, b), abs=1e-4)
    batched = ssim_per_frame(to_unit_float(generated), to_unit_float(truth))
    assert batched.dtype == torch.float64 and batched.shape == (len(truth),)


# docs/metrics.md: SSIM agrees with scikit-image within 1e-12 (float64 statistics, as scikit-image).
SSIM_AGREEMENT = 1e-12


def _photo_480p(image: np.ndarray) -> np.ndarray:
    """A scikit-image photograph resized to cover 832x480 (antialiased) and centre-cropped to it."""
    from skimage.transform import resize

    scale = max(480 / image.shape[0], 832 / image.shape[1])
    height, width = math.ceil(image.shape[0] * scale), math.ceil(image.shape[1] * scale)
    resized = resize(image, (height, width), anti_aliasing=True)
    top, left = (height - 480) // 2, (width - 832) // 2
    return np.rint(resized[top : top + 480, left : left + 832] * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_pairs_480p():
    """(distorted, original) 832x480 pairs: noise, blur and a shift of three photographs."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(0)
    pairs = []
    for image in (data.astronaut(), data.coffee(), data.chelsea()):
        photo = _photo_480p(image)
        noisy = np.clip(np.rint(photo + rng.normal(0, 12, photo.shape)), 0, 255).astype(np.uint8)
        blurred = np.rint(gaussian(photo, sigma=2, channel_axis=-1) * 255).astype(np.uint8)
        shifted = np.roll(photo, (3, 5), axis=(0, 1))
        pairs += [(torch.from_numpy(d), torch.from_numpy(photo)) for d in (noisy, blurred, shifted)]
    return pairs


def test_ssim_matches_scikit_image_on_480p_photographs(photo_pairs_480p):
    expected = [_skimage_ssim(a, b) for a, b in photo_pairs_480p]
    for (a, b), reference in zip(photo_pairs_480p, expected):
        ours = float(ssim_per_frame(to_unit_float(a[None], torch.float64), to_unit_float(b[None], torch.float64))[0])
        assert abs(ours - reference) <= SSIM_AGREEMENT
    # The harness's metric (uint8 frames in, one window) gives the same per-frame values.
    metric = SSIM(num_windows=1)
    metric.update(torch.stack([a for a, _ in photo_pairs_480p]), torch.stack([b for _, b in photo_pairs_480p]), 0)
    sums, counts = metric.compute()
    assert counts == [len(expected)]
    assert abs(sums[0] / counts[0] - math.fsum(expected) / len(expected)) <= SSIM_AGREEMENT


def test_small_frames_filtered_in_one_block_per_axis_match_scikit_image(clip, monkeypatch):
    """Frames up to SSIM_WHOLE_AXIS_MAX + 10 pixels per side take the one-block filter; it gives what
    the 32-output blocks give, and scikit-image's SSIM within the same 1e-12."""
    import benchmark.metrics.frame as frame

    generated, truth, _ = clip
    photo = torch.from_numpy(data.astronaut()[100:228, 150:246].copy())
    noisy = torch.from_numpy(np.clip(photo.numpy().astype(int) + np.random.default_rng(1).integers(-30, 30, photo.shape), 0, 255).astype(np.uint8))
    assert frame.ssim_band(96, 64).shape[1] == 86 and frame.ssim_band(480, 832).shape[1] == frame.SSIM_FILTER_BLOCK
    for a, b in [(generated, truth), (noisy[None], photo[None])]:
        ours = ssim_per_frame(to_unit_float(a, torch.float64), to_unit_float(b, torch.float64))
        for i in range(len(a)):
            assert abs(float(ours[i]) - _skimage_ssim(a[i], b[i])) <= SSIM_AGREEMENT
        monkeypatch.setattr(frame, "SSIM_WHOLE_AXIS_MAX", 0)
        assert torch.equal(ssim_per_frame(to_unit_float(a, torch.float64), to_unit_float(b, torch.float64)), ours)
        monkeypatch.undo()


def test_ssim_of_identical_frames_is_one(clip):
    _, truth, _ = clip
    assert torch.allclose(ssim_per_frame(to_unit_float(truth), to_unit_float(truth)), torch.ones(len(truth), dtype=torch.float64), atol=1e-6)


def test_face_box_rounding_is_outward_and_clipped():
    assert face_box_pixels((10.2, 5.9, 20.1, 30.0), 96, 64) == (10, 5, 21, 30)
    assert face_box_pixels((-3.0, -1.5, 200.0, 70.2), 96, 64) == (0, 0, 96, 64)


def test_face_psnr_scores_the_box_and_counts_skipped_frames(clip):
    generated, truth, boxes = clip
    boxes = boxes.copy()
    boxes[1] = np.nan
    boxes[2] = (500, 500, 600, 600)  # entirely outside the frame: no face region
    metric = FacePSNR(num_windows=1)
    metric.update(generated, truth, 0, boxes)
    sums, counts, skipped = metric.compute()
    expected = []
    for i in (0, 3, 4, 5):
        if np.isnan(boxes[i]).any():
            continue
        x0, y0, x1, y1 = face_box_pixels(boxes[i], 96, 64)
        expected += psnr_per_frame(generated[i : i + 1, y0:y1, x0:x1], truth[i : i + 1, y0:y1, x0:x1])
    no_face = int(np.isnan(boxes).any(axis=1).sum()) + 1
    assert skipped == [no_face]
    assert counts == [len(truth) - no_face] == [len(expected)]
    assert sums[0] == pytest.approx(math.fsum(expected), rel=1e-12)


def _seam_score(generated: torch.Tensor, truth: torch.Tensor, boundaries: list[int], window: int = 4) -> float | None:
    num_windows = len(truth) // window
    metric = SeamScore(num_windows)
    for w in range(num_windows):
        part = slice(w * window, (w + 1) * window)
        metric.update(generated[part], truth[part], w, w * window, frozenset(boundaries))
    record = ClipEvaluation("c", fps=4.0, window_frames=window, num_frames=len(truth), vmae_window_frames=4, seam=metric.compute())
    return record.clip_value("seam", len(truth) / 4.0)


def test_seam_score_is_one_for_ground_truth_against_itself():
    _, truth, _ = synthetic_clip("seam", 16, 48, 32)
    assert _seam_score(truth, truth, [5, 11]) == 1.0


def test_seam_score_grows_when_a_jump_is_inserted_at_a_boundary():
    generated, truth, _ = synthetic_clip("seam", 16, 48, 32)
    jumped = generated.clone()
    jumped[11:] = (jumped[11:].int() + 60).clamp(0, 255).to(torch.uint8)  # new segment starts brighter
    baseline = _seam_score(generated, truth, [5, 11])
    assert _seam_score(jumped, truth, [5, 11]) > 1.5 * baseline
    # The same jump away from a declared boundary is inner flicker, not a seam.
    assert _seam_score(jumped, truth, [5]) < baseline


def test_seam_score_undefined_without_boundaries():
    _, truth, _ = synthetic_clip("seam", 8, 48, 32)
    assert _seam_score(truth, truth, []) is None
