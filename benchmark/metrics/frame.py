"""Per-frame metrics: PSNR, SSIM, LPIPS and face-region PSNR, summed per 1-second window.

Each metric scores every frame and keeps, per window, the sum of its frame scores (``math.fsum``,
so the sum is the correctly rounded sum whatever the order) and their count. A horizon's per-clip
value is a ratio of window sums, so one pass serves every horizon, and no value depends on which
horizons were requested or how frames were batched. The harness calls ``update`` once per window
with all of that window's frames.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from .pixels import as_uint8_frames, to_signed_float, to_unit_float

try:
    from ..pose import face_box_pixels
except ImportError:  # pragma: no cover - pose.py is part of the package; kept for partial checkouts

    def face_box_pixels(box, width: int, height: int) -> tuple[int, int, int, int]:
        """Outward-rounded pixel region ``[x0, x1) x [y0, y1)`` of a box, clipped to the frame."""
        x0, y0, x1, y1 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise ValueError(f"face box {box!r} is not finite (no face in this frame)")
        clip = lambda v, hi: min(max(v, 0), hi)  # noqa: E731
        return clip(math.floor(x0), width), clip(math.floor(y0), height), clip(math.ceil(x1), width), clip(math.ceil(y1), height)


MAX_PIXEL = 255
# Frames per vectorised step of the pixel metrics: bounds temporaries (float copies of the frames) and,
# being fixed, keeps each frame's arithmetic independent of the window and batch sizes.
PIXEL_CHUNK_FRAMES = 5

# SSIM constants (Wang et al. 2004), with scikit-image's Gaussian window: sigma 1.5, truncate 3.5.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): an 11-tap window
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class WindowedFrameMetric(Metric):
    """Base class: per-frame scores accumulated into per-window sums and counts.

    A NaN score means "frame not scored" (e.g. no face box) and is left out of sum and count.
    ``compute()`` returns ``(sums, counts)`` as Python lists, one entry per window.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool = True

    def __init__(self, num_windows: int, **kwargs) -> None:
        super().__init__(sync_on_compute=False, **kwargs)
        self.add_state("window_sum", torch.zeros(num_windows, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("window_count", torch.zeros(num_windows, dtype=torch.int64), dist_reduce_fx="sum")

    def _add_scores(self, window: int, scores: Sequence[float]) -> None:
        valid = [s for s in scores if not math.isnan(s)]
        self.window_sum[window] += math.fsum(valid)
        self.window_count[window] += len(valid)

    def compute(self) -> tuple[list[float], list[int]]:
        return self.window_sum.tolist(), self.window_count.tolist()


def frame_squared_errors(generated: torch.Tensor, ground_truth: torch.Tensor) -> list[int]:
    """Exact integer sum of squared differences per frame of ``uint8 (B, H, W, C)`` frames.

    Differences and squares are exact in float32 (squares <= 255^2 < 2^24) and their float64 sum
    is exact (totals < 2^53), so the result is the integer SSE whatever the summation order.
    Frames go a few at a time to keep the temporaries small at 480p.
    """
    totals: list[int] = []
    for start in range(0, len(generated), PIXEL_CHUNK_FRAMES):
        diff = generated[start : start + PIXEL_CHUNK_FRAMES].to(torch.float32) - ground_truth[start : start + PIXEL_CHUNK_FRAMES].to(torch.float32)
        totals += torch.sum((diff * diff).flatten(1), dim=1, dtype=torch.float64).long().tolist()
    return totals


def psnr_from_sse(sse: int, num_values: int, cap_db: float) -> float:
    """PSNR in dB with MAX 255 from an integer sum of squared errors over ``num_values`` values,
    capped at ``cap_db`` (which is also the value for identical frames, MSE = 0).

    The project's one PSNR formula: the harness's PSNR and F-PSNR and the methods' own PSNR
    reports (VAE round trips, training logs) all come through here, so they cannot disagree."""
    if sse == 0:
        return float(cap_db)
    return min(float(cap_db), 10.0 * math.log10(MAX_PIXEL**2 * num_values / sse))


def psnr_per_frame(generated: torch.Tensor, ground_truth: torch.Tensor, cap_db: float = 100.0) -> list[float]:
    """PSNR of each ``(B, H, W, 3)`` frame pair over all pixels and channels, for ``uint8`` frames
    or float frames in ``[0, 1]`` (quantised to the nearest ``uint8`` level first, see
    :func:`~benchmark.metrics.pixels.as_uint8_frames`); MAX 255, capped at ``cap_db``."""
    generated, ground_truth = as_uint8_frames(generated), as_uint8_frames(ground_truth)
    num_values = generated[0].numel()
    return [psnr_from_sse(sse, num_values, cap_db) for sse in frame_squared_errors(generated, ground_truth)]


def mean_psnr(generated: torch.Tensor, ground_truth: torch.Tensor, cap_db: float = 100.0) -> float:
    """Mean over frames of :func:`psnr_per_frame` (``math.fsum``, order-independent)."""
    scores = psnr_per_frame(generated, ground_truth, cap_db)
    return math.fsum(scores) / len(scores)


class PSNR(WindowedFrameMetric):
    """Peak signal-to-noise ratio per frame (RGB, MAX 255, capped), mean over frames."""

    def __init__(self, num_windows: int, cap_db: float = 100.0, **kwargs) -> None:
        super().__init__(num_windows, **kwargs)
        self.cap_db = cap_db

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int) -> None:
        self._add_scores(window, psnr_per_frame(generated, ground_truth, self.cap_db))


def gaussian_window(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``exp(-x^2 / 2 sigma^2)`` for ``x`` in ``[-radius, radius]``
    (scipy's ``gaussian_filter`` kernel)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(dtype)


# Outputs per block of the banded matrix that applies the Gaussian filter (see _blurred_moments).
# Frames whose 'valid' outputs fit in SSIM_WHOLE_AXIS_MAX per axis are filtered in one block per axis:
# one matrix product instead of many tiny ones (11x faster at 64x96, the same sums in the same order).
SSIM_FILTER_BLOCK = 32
SSIM_WHOLE_AXIS_MAX = 128


def _band_matrix(taps: torch.Tensor, block: int) -> torch.Tensor:
    """``(block + size - 1, block)`` matrix whose column ``j`` holds the taps in rows ``j .. j + size - 1``:
    a run of ``block + size - 1`` inputs times it is the 'valid' filter of that run."""
    size = taps.numel()
    band = torch.zeros(block + size - 1, block, dtype=taps.dtype, device=taps.device)
    columns = torch.arange(block, device=taps.device)
    for k in range(size):
        band[columns + k, columns] = taps[k]
    return band


def ssim_band(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The banded filter matrix (float64 Gaussian taps) :func:`filter_valid` uses for frames of
    ``height x width``: blocks of :data:`SSIM_FILTER_BLOCK` outputs, or one block per axis for small frames."""
    outputs = max(height, width) - 2 * SSIM_RADIUS
    block = outputs if outputs <= SSIM_WHOLE_AXIS_MAX else SSIM_FILTER_BLOCK
    return _band_matrix(gaussian_window(dtype=torch.float64).to(device), block)


def _blurred_moments(x: torch.Tensor, y: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """Gaussian-filtered ``x, y, x^2 + y^2, x y`` of ``(N, H, W)`` channel pairs, float64, 'valid'
    region only: ``(N, 4, H - 2r, W - 2r)``.

    Each 1-D pass is one matrix product of overlapping input runs (a strided view) with the banded
    matrix: in float64 this runs at matmul speed, where float64 convolutions on CPU are ~14x slower
    than float32 ones. The maps are written into a buffer already zero-padded to whole blocks, so no
    pass copies its input; the padding only produces outputs that are cut off.
    """
    count, height, width = x.shape
    maps = padded_maps(count, 4, height, width, band)
    a, b = maps[:, 0, :height, :width], maps[:, 1, :height, :width]
    a.copy_(x)
    b.copy_(y)
    # Only the sum of the two variances enters SSIM, so a^2 + b^2 is filtered as one map.
    torch.mul(a, a, out=maps[:, 2, :height, :width]).addcmul_(b, b)
    torch.mul(a, b, out=maps[:, 3, :height, :width])
    return filter_valid(maps, band, height, width)


def padded_maps(count: int, num_maps: int, height: int, width: int, band: torch.Tensor) -> torch.Tensor:
    """A zeroed float64 ``(count, num_maps, H', W')`` buffer whose top-left ``height x width`` corner
    takes the maps to filter with :func:`filter_valid`; ``H', W'`` pad the 'valid' outputs to whole
    blocks of the banded matrix ``band``."""
    span, block = band.shape
    out_h, out_w = height - span + block, width - span + block
    padded_h, padded_w = -(-out_h // block) * block + span - block, -(-out_w // block) * block + span - block
    return torch.zeros(count, num_maps, padded_h, padded_w, dtype=torch.float64, device=band.device)


def filter_valid(maps: torch.Tensor, band: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The separable Gaussian filter of the ``height x width`` maps held in a :func:`padded_maps`
    buffer, 'valid' region only: ``(..., height - 2r, width - 2r)``, one banded matrix product per axis."""
    span, block = band.shape
    out_h, out_w = height - span + block, width - span + block
    rows = (maps.unfold(-1, span, block) @ band).flatten(-2)
    columns = (band.T @ rows.unfold(-2, span, block).transpose(-1, -2)).flatten(-3, -2)
    return columns[..., :out_h, :out_w]


#: float64 values of the filtered maps held at once; small frames are filtered many channels at a
#: time (per-call overhead dominates them), large ones a channel at a time (the maps stay in cache).
SSIM_BATCH_VALUES = 1 << 21


def ssim_per_frame(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each frame pair, ``(B, C, H, W)`` float -> ``(B,)`` float64.

    Gaussian window (sigma 1.5, 11 taps), K1 0.01, K2 0.03, population covariances, averaged over
    channels and over the region where the window fits inside the frame. This is exactly what
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=-1)`` computes: it filters with reflection but crops
    the 5-pixel border before averaging, which equals a 'valid' filter.

    Every statistic is computed in float64, as scikit-image does: the variances are differences of
    nearly equal second moments (``E[x^2] - mu^2``), which float32 leaves wrong by up to ~2e-6 in
    SSIM at 480p. Inputs are converted to float64 as they are, so pass ``uint8 / 255`` computed in
    float64 (``to_unit_float(frames, torch.float64)``) for scikit-image's exact input.
    """
    if min(x.shape[-2:]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs frames of at least {2 * SSIM_RADIUS + 1} pixels per side, got {tuple(x.shape[-2:])}")
    frames, channels, height, width = x.shape
    if frames == 0:
        return torch.zeros(0, dtype=torch.float64, device=x.device)
    band = ssim_band(height, width, x.device)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    pairs_x, pairs_y = x.reshape(-1, height, width), y.reshape(-1, height, width)
    group = max(1, SSIM_BATCH_VALUES // (4 * height * width))
    means = []
    for first in range(0, pairs_x.shape[0], group):
        moments = _blurred_moments(pairs_x[first : first + group], pairs_y[first : first + group], band)
        mu_x, mu_y, second_moments, mu_xy_raw = moments.unbind(1)
        mu_x_mu_y = mu_x * mu_y
        mu_sq = torch.addcmul(mu_x.square(), mu_y, mu_y)
        numerator = (mu_x_mu_y * 2 + c1).mul_((mu_xy_raw - mu_x_mu_y).mul_(2).add_(c2))
        denominator = (mu_sq + c1).mul_(second_moments.sub(mu_sq).add_(c2))
        means.append(numerator.div_(denominator).mean(dim=(-2, -1)))
    return torch.cat(means).reshape(frames, channels).mean(dim=1)


class SSIM(WindowedFrameMetric):
    """Structural similarity per frame on RGB in ``[0, 1]`` (scikit-image's Gaussian convention)."""

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int) -> None:
        scores: list[float] = []
        for start in range(0, len(generated), PIXEL_CHUNK_FRAMES):
            chunk = slice(start, start + PIXEL_CHUNK_FRAMES)
            scores += ssim_per_frame(to_unit_float(generated[chunk], torch.float64), to_unit_float(ground_truth[chunk], torch.float64)).tolist()
        self._add_scores(window, scores)


class LPIPS(WindowedFrameMetric):
    """LPIPS v0.1 distance per frame at native resolution, inputs scaled to ``[-1, 1]``.

    ``network`` is an ``lpips.LPIPS`` module (AlexNet by default); see ``networks.build_lpips``.
    """

    higher_is_better = False

    def __init__(self, num_windows: int, network: torch.nn.Module, **kwargs) -> None:
        super().__init__(num_windows, **kwargs)
        self.network = network.eval()

    @torch.inference_mode()
    def frame_distances(self, generated: torch.Tensor, ground_truth: torch.Tensor) -> list[float]:
        distances = self.network(to_signed_float(generated), to_signed_float(ground_truth))
        return distances.reshape(-1).double().tolist()

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int) -> None:
        self._add_scores(window, self.frame_distances(generated, ground_truth))


def face_regions(face_boxes: np.ndarray | None, count: int, width: int, height: int) -> list[tuple[int, int, int, int] | None]:
    """Pixel region of each frame's face box, or None where the frame has no (visible) face."""
    regions: list[tuple[int, int, int, int] | None] = []
    for index in range(count):
        box = None if face_boxes is None else face_boxes[index]
        if box is None or not np.all(np.isfinite(box)):
            regions.append(None)
            continue
        x0, y0, x1, y1 = face_box_pixels(box, width, height)
        regions.append((x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None)
    return regions


class FacePSNR(WindowedFrameMetric):
    """PSNR over the ground-truth face box, cut at the same pixels from both frames.

    Frames without a face box (NaN row, or a box entirely outside the frame) are not scored; their
    number per window is kept in ``window_skipped``.
    """

    def __init__(self, num_windows: int, cap_db: float = 100.0, **kwargs) -> None:
        super().__init__(num_windows, **kwargs)
        self.cap_db = cap_db
        self.add_state("window_skipped", torch.zeros(num_windows, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int, face_boxes: np.ndarray | None) -> None:
        height, width = generated.shape[1:3]
        scores = []
        for gen, gt, region in zip(generated, ground_truth, face_regions(face_boxes, len(generated), width, height)):
            if region is None:
                scores.append(math.nan)
                continue
            x0, y0, x1, y1 = region
            # Crops are small: numpy on the host avoids per-op thread-pool overhead.
            diff = gen[y0:y1, x0:x1].cpu().numpy().astype(np.int32) - gt[y0:y1, x0:x1].cpu().numpy().astype(np.int32)
            scores.append(psnr_from_sse(int(np.einsum("ijk,ijk->", diff, diff, dtype=np.int64)), diff.size, self.cap_db))
        self.window_skipped[window] += sum(math.isnan(s) for s in scores)
        self._add_scores(window, scores)

    def compute(self) -> tuple[list[float], list[int], list[int]]:  # type: ignore[override]
        return self.window_sum.tolist(), self.window_count.tolist(), self.window_skipped.tolist()
