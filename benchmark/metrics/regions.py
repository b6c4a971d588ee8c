"""Region-decomposed pixel metrics: PSNR and SSIM inside the ground truth's person region and outside it.

The person region of a ground-truth frame comes from one of two sources (:class:`PersonRegions`):

- ``masks``: an exact per-frame mask stored with the split (the synthetic renderer writes one from
  its layers, see ``benchmark.splits.synthetic.render``);
- ``keypoints``: the box of the frame's confident whole-body keypoints, dilated on every side by
  :data:`PERSON_BOX_MARGIN` of its longer side (:func:`person_boxes_from_keypoints`), for splits
  without masks. A frame with fewer than :data:`MIN_BODY_KEYPOINTS` confident body keypoints has no
  known region: both of its region metrics skip it.

The background is every pixel of the frame outside the person region. A frame whose region is empty
(no person pixel; or, for the background, a person covering the whole frame) or unknown is not
scored, and counted per window, as F-PSNR does for frames without a face.

Both metrics keep the frame metrics' conventions: ``uint8`` RGB, MAX 255, the protocol's PSNR cap,
exact integer squared errors, SSIM statistics in float64 with scikit-image's Gaussian window.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..pose import face_box_pixels
from ..splits.manifest import BODY, NUM_KEYPOINTS
from .frame import (
    PIXEL_CHUNK_FRAMES,
    SSIM_K1,
    SSIM_K2,
    SSIM_RADIUS,
    WindowedFrameMetric,
    filter_valid,
    padded_maps,
    psnr_from_sse,
    ssim_band,
)
from .pixels import to_unit_float
from .spec import BACKGROUND, PERSON

MASKS = "masks"
KEYPOINTS = "keypoints"
REGION_SOURCES = (MASKS, KEYPOINTS)

#: The keypoint box is dilated by this fraction of its longer side on every side: the keypoints mark
#: joints, and the body (the top of the head, hair, the limbs' width, clothes) extends past them.
PERSON_BOX_MARGIN = 0.1
#: A keypoint counts when its score reaches this (the split builder's ``KEYPOINT_MIN_SCORE``).
PERSON_KEYPOINT_MIN_SCORE = 0.3
#: Fewer confident body keypoints (of the 17 COCO ones) than this and the frame's region is unknown.
MIN_BODY_KEYPOINTS = 4

KEYPOINT_RULE = (
    f"box of the keypoints with score >= {PERSON_KEYPOINT_MIN_SCORE:g} (all 133), dilated by {PERSON_BOX_MARGIN:g} of its "
    f"longer side on every side, outward-rounded to pixels; unknown with fewer than {MIN_BODY_KEYPOINTS} confident body keypoints"
)


def person_boxes_from_keypoints(
    keypoints: np.ndarray,
    margin: float = PERSON_BOX_MARGIN,
    min_score: float = PERSON_KEYPOINT_MIN_SCORE,
    min_body_points: int = MIN_BODY_KEYPOINTS,
) -> np.ndarray:
    """Person boxes ``float64 (T, 4)`` as ``x0, y0, x1, y1`` in pixels from ``keypoints (T, 133, 3)``.

    The box of the keypoints scoring at least ``min_score`` is grown by ``margin * max(w, h)`` on each
    side. A row is NaN (region unknown) when fewer than ``min_body_points`` of the 17 body keypoints
    reach ``min_score``.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (T, {NUM_KEYPOINTS}, 3), got {keypoints.shape}")
    confident = (keypoints[..., 2] >= min_score) & np.isfinite(keypoints[..., :2]).all(axis=-1)
    boxes = np.full((len(keypoints), 4), np.nan)
    known = confident[:, BODY].sum(axis=1) >= min_body_points
    if not known.any():
        return boxes
    xs = np.where(confident[known], keypoints[known, :, 0], np.nan)
    ys = np.where(confident[known], keypoints[known, :, 1], np.nan)
    x0, x1 = np.nanmin(xs, axis=1), np.nanmax(xs, axis=1)
    y0, y1 = np.nanmin(ys, axis=1), np.nanmax(ys, axis=1)
    pad = margin * np.maximum(x1 - x0, y1 - y0)
    boxes[known] = np.stack([x0 - pad, y0 - pad, x1 + pad, y1 + pad], axis=1)
    return boxes


def box_masks(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``bool (T, height, width)`` masks of the pixel regions of ``boxes (T, 4)``
    (:func:`benchmark.pose.face_box_pixels`: outward rounding, clipped); a NaN row gives an empty mask."""
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for mask, box in zip(masks, boxes):
        if np.all(np.isfinite(box)):
            x0, y0, x1, y1 = face_box_pixels(box, width, height)
            mask[y0:y1, x0:x1] = True
    return masks


class PersonRegions:
    """The person region of every ground-truth frame of one clip, from exact masks or keypoint boxes.

    Build with :meth:`from_masks` (``bool (T, H, W)``) or :meth:`from_keypoints`. :meth:`window` gives
    the regions of a run of frames; ``source`` (:data:`MASKS` or :data:`KEYPOINTS`) is recorded with
    the clip's evaluation.
    """

    def __init__(self, source: str, num_frames: int, masks: np.ndarray | None = None, boxes: np.ndarray | None = None) -> None:
        if source not in REGION_SOURCES:
            raise ValueError(f"person region source must be one of {REGION_SOURCES}, got {source!r}")
        self.source = source
        self.num_frames = num_frames
        self._masks = masks
        self._boxes = boxes

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> "PersonRegions":
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.dtype != bool:
            raise ValueError(f"person masks must be bool (T, H, W), got {masks.dtype} {masks.shape}")
        return cls(MASKS, len(masks), masks=masks)

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray) -> "PersonRegions":
        boxes = person_boxes_from_keypoints(keypoints)
        return cls(KEYPOINTS, len(boxes), boxes=boxes)

    def check(self, num_frames: int, width: int, height: int) -> None:
        """Raise ``ValueError`` unless these regions cover ``num_frames`` frames of ``width x height``."""
        if self.num_frames < num_frames:
            raise ValueError(f"person regions cover {self.num_frames} frames, {num_frames} are needed")
        if self._masks is not None and self._masks.shape[1:] != (height, width):
            raise ValueError(f"person masks are {self._masks.shape[2]}x{self._masks.shape[1]}, the frames {width}x{height}")

    def window(self, start: int, stop: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """``person bool (B, height, width)`` and ``known bool (B,)`` for frames ``[start, stop)``
        (checked by :meth:`check` first)."""
        if self._masks is not None:
            masks = self._masks[start:stop]
            return masks, np.ones(len(masks), dtype=bool)
        boxes = self._boxes[start:stop]  # type: ignore[index]
        return box_masks(boxes, width, height), np.isfinite(boxes).all(axis=1)


def region_masks(regions: PersonRegions | None, start: int, stop: int, width: int, height: int) -> dict[str, np.ndarray]:
    """The person and background masks ``bool (B, H, W)`` of frames ``[start, stop)``; both empty in
    frames whose region is unknown (and in every frame when ``regions`` is None)."""
    if regions is None:
        empty = np.zeros((stop - start, height, width), dtype=bool)
        return {PERSON: empty, BACKGROUND: empty}
    person, known = regions.window(start, stop, width, height)
    known = known[:, None, None]
    return {PERSON: person & known, BACKGROUND: ~person & known}


class RegionFrameMetric(WindowedFrameMetric):
    """A per-frame score over a masked region; frames with an empty mask are not scored and their
    number per window is kept in ``window_skipped``. ``compute()`` returns ``(sums, counts, skipped)``."""

    def __init__(self, num_windows: int, **kwargs) -> None:
        super().__init__(num_windows, **kwargs)
        self.add_state("window_skipped", torch.zeros(num_windows, dtype=torch.int64), dist_reduce_fx="sum")

    def frame_scores(self, generated: torch.Tensor, ground_truth: torch.Tensor, masks: torch.Tensor) -> list[float]:
        raise NotImplementedError

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int, masks: torch.Tensor) -> None:
        """``uint8 (B, H, W, 3)`` frame pairs and their region ``bool (B, H, W)``."""
        if masks.shape != generated.shape[:3]:
            raise ValueError(f"region masks {tuple(masks.shape)} do not match the frames {tuple(generated.shape[:3])}")
        scores = self.frame_scores(generated, ground_truth, masks)
        self.window_skipped[window] += sum(math.isnan(s) for s in scores)
        self._add_scores(window, scores)

    def compute(self) -> tuple[list[float], list[int], list[int]]:  # type: ignore[override]
        return self.window_sum.tolist(), self.window_count.tolist(), self.window_skipped.tolist()


def region_squared_errors(generated: torch.Tensor, ground_truth: torch.Tensor, masks: torch.Tensor) -> tuple[list[int], list[int]]:
    """Exact integer sum of squared differences over each frame's masked pixels (all channels) and
    the number of values summed, for ``uint8 (B, H, W, C)`` frames and ``bool (B, H, W)`` masks.

    Per-pixel channel sums of squares are at most ``3 * 255^2 < 2^24``, exact in float32, and their
    float64 sums are exact, as in :func:`~.frame.frame_squared_errors`."""
    totals: list[int] = []
    for start in range(0, len(generated), PIXEL_CHUNK_FRAMES):
        chunk = slice(start, start + PIXEL_CHUNK_FRAMES)
        diff = generated[chunk].to(torch.float32) - ground_truth[chunk].to(torch.float32)
        squares = (diff * diff).sum(dim=-1) * masks[chunk]
        totals += torch.sum(squares.flatten(1), dim=1, dtype=torch.float64).long().tolist()
    values = (masks.flatten(1).sum(dim=1) * generated.shape[-1]).tolist()
    return totals, values


class RegionPSNR(RegionFrameMetric):
    """PSNR over the masked pixels of each frame pair (RGB, MAX 255, capped)."""

    def __init__(self, num_windows: int, cap_db: float = 100.0, **kwargs) -> None:
        super().__init__(num_windows, **kwargs)
        self.cap_db = cap_db

    def frame_scores(self, generated: torch.Tensor, ground_truth: torch.Tensor, masks: torch.Tensor) -> list[float]:
        if not bool(masks.any()):
            return [math.nan] * len(generated)
        totals, values = region_squared_errors(generated, ground_truth, masks)
        return [psnr_from_sse(sse, count, self.cap_db) if count else math.nan for sse, count in zip(totals, values)]


def region_ssim_per_frame(x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over a region of each frame pair: ``(B, C, H, W)`` float and ``bool (B, H, W)`` ->
    ``(B,)`` float64, NaN where no region pixel lies at least ``SSIM_RADIUS`` pixels inside the frame.

    The window statistics are restricted to the region: with Gaussian taps ``g`` and mask ``m``, at
    each pixel ``mu_x = (g * m x) / (g * m)``, ``E[x^2] = (g * m x^2) / (g * m)``, ``E[x y]`` likewise,
    so no pixel outside the region enters the score of a pixel inside it. The SSIM map built from
    them (K1 0.01, K2 0.03, population covariances, as :func:`~.frame.ssim_per_frame`) is averaged
    over the region's pixels where the 11-tap window fits in the frame (the 5-pixel border is left
    out, as for the frame SSIM), then over channels. With a mask of the whole frame this is the
    frame SSIM. Every statistic is float64.
    """
    frames, channels, height, width = x.shape
    if min(height, width) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs frames of at least {2 * SSIM_RADIUS + 1} pixels per side, got {(height, width)}")
    if frames == 0:
        return torch.zeros(0, dtype=torch.float64, device=x.device)
    band = ssim_band(height, width, x.device)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    weight = masks.to(torch.float64)
    weights = padded_maps(frames, 1, height, width, band)
    weights[:, 0, :height, :width] = weight
    weight_sum = filter_valid(weights, band, height, width)[:, 0]
    # Per channel pair: m x, m y, m (x^2 + y^2), m x y (only the sum of the variances enters SSIM).
    xs, ys = x.reshape(-1, height, width).to(torch.float64), y.reshape(-1, height, width).to(torch.float64)
    channel_weight = weight.repeat_interleave(channels, dim=0)
    maps = padded_maps(frames * channels, 4, height, width, band)
    a, b = maps[:, 0, :height, :width], maps[:, 1, :height, :width]
    torch.mul(xs, channel_weight, out=a)
    torch.mul(ys, channel_weight, out=b)
    torch.mul(a, xs, out=maps[:, 2, :height, :width]).addcmul_(b, ys)
    torch.mul(a, ys, out=maps[:, 3, :height, :width])
    moments = filter_valid(maps, band, height, width).reshape(frames, channels, 4, height - 2 * SSIM_RADIUS, width - 2 * SSIM_RADIUS)
    inside = masks[:, SSIM_RADIUS : height - SSIM_RADIUS, SSIM_RADIUS : width - SSIM_RADIUS]
    # Where the region's pixels are, the window holds at least the centre tap (g0^2 > 0.07).
    norm = torch.where(inside, weight_sum, torch.ones_like(weight_sum)).unsqueeze(1)
    mu_x, mu_y, second_moments, mu_xy_raw = (moments[:, :, k] / norm for k in range(4))
    mu_x_mu_y = mu_x * mu_y
    mu_sq = torch.addcmul(mu_x.square(), mu_y, mu_y)
    numerator = (mu_x_mu_y * 2 + c1).mul_((mu_xy_raw - mu_x_mu_y).mul_(2).add_(c2))
    denominator = (mu_sq + c1).mul_(second_moments.sub(mu_sq).add_(c2))
    ssim_map = numerator.div_(denominator).mean(dim=1)
    counts = inside.flatten(1).sum(dim=1)
    sums = torch.where(inside, ssim_map, torch.zeros_like(ssim_map)).flatten(1).sum(dim=1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, math.nan))


class RegionSSIM(RegionFrameMetric):
    """SSIM over the masked pixels of each frame pair, window statistics restricted to the region
    (:func:`region_ssim_per_frame`), on RGB in ``[0, 1]``."""

    def frame_scores(self, generated: torch.Tensor, ground_truth: torch.Tensor, masks: torch.Tensor) -> list[float]:
        # Frames with no region pixel where the window fits score NaN without being filtered: on a
        # split without regions, or for a frame the person leaves, they cost nothing.
        inside = masks[:, SSIM_RADIUS : masks.shape[1] - SSIM_RADIUS, SSIM_RADIUS : masks.shape[2] - SSIM_RADIUS]
        scored = torch.nonzero(inside.flatten(1).any(dim=1)).flatten().tolist()
        scores = [math.nan] * len(generated)
        for start in range(0, len(scored), PIXEL_CHUNK_FRAMES):
            rows = scored[start : start + PIXEL_CHUNK_FRAMES]
            gen, gt = to_unit_float(generated[rows], torch.float64), to_unit_float(ground_truth[rows], torch.float64)
            for row, score in zip(rows, region_ssim_per_frame(gen, gt, masks[rows]).tolist()):
                scores[row] = score
        return scores
