"""Metrics over time: V-MAE feature distance per 16-frame window, and the chunk-seam score."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from .records import SEAM_BOUNDARY_PAIRS, SEAM_BOUNDARY_SUM, SEAM_COLUMNS, SEAM_INNER_PAIRS, SEAM_INNER_SUM

GENERATED, GROUND_TRUTH = 0, 1


class VideoMAEDistance(Metric):
    """``1 - cos(f_gen, f_gt)`` of VideoMAE features, one value per aligned 16-frame window.

    Window ``k`` covers frames ``[16k, 16k + 16)``; ``compute()`` returns the per-window distances
    (None for windows not evaluated).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, num_windows: int, **kwargs) -> None:
        super().__init__(sync_on_compute=False, **kwargs)
        self.add_state("window_distance", torch.zeros(num_windows, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("window_done", torch.zeros(num_windows, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, generated_features: torch.Tensor, ground_truth_features: torch.Tensor, window: int) -> None:
        gen, gt = generated_features.to(torch.float64).flatten(), ground_truth_features.to(torch.float64).flatten()
        cosine = torch.dot(gen, gt) / (gen.norm() * gt.norm())
        self.window_distance[window] += 1.0 - cosine
        self.window_done[window] += 1

    def compute(self) -> list[float | None]:
        return [d if done else None for d, done in zip(self.window_distance.tolist(), self.window_done.tolist())]


class SeamScore(Metric):
    """Frame-to-frame change at chunk boundaries relative to inside chunks, generated vs ground truth.

    For each frame ``t >= 1`` the pair ``(t-1, t)`` has change ``d(t) = mean |x_t - x_{t-1}|``; it
    is a boundary pair when ``t`` is the first frame of a new segment. Per 1-s window (of ``t``) and
    side the metric keeps exact integer totals of ``sum |x_t - x_{t-1}|`` and pair counts, for
    boundary and inner pairs, so every horizon's score follows from the window records exactly:
    ``seam = mean d(boundary) / mean d(inner)``, ``score = seam_generated / seam_ground_truth``.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, num_windows: int, **kwargs) -> None:
        super().__init__(sync_on_compute=False, **kwargs)
        self.add_state("window_totals", torch.zeros(num_windows, 2, SEAM_COLUMNS, dtype=torch.int64), dist_reduce_fx="sum")
        self._previous: list[torch.Tensor | None] = [None, None]

    def reset(self) -> None:
        super().reset()
        self._previous = [None, None]

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int, first_frame: int, boundaries: frozenset[int]) -> None:
        """Frames ``[first_frame, first_frame + B)`` of both videos, in order, starting at frame 0."""
        for side, frames in ((GENERATED, generated), (GROUND_TRUTH, ground_truth)):
            previous = self._previous[side]
            if previous is None:
                if first_frame != 0:
                    raise ValueError("seam score must see the frames from frame 0 on")
                sequence, first_t = frames, 1
            else:
                sequence, first_t = torch.cat([previous[None], frames]), first_frame
            changes = frame_changes(sequence)
            totals = self.window_totals[window, side]
            for t, change in zip(range(first_t, first_frame + len(frames)), changes):
                if t in boundaries:
                    totals[SEAM_BOUNDARY_SUM] += change
                    totals[SEAM_BOUNDARY_PAIRS] += 1
                else:
                    totals[SEAM_INNER_SUM] += change
                    totals[SEAM_INNER_PAIRS] += 1
            self._previous[side] = frames[-1].clone()

    def compute(self) -> list[list[int]]:
        """Per window: the 8 integers ``[generated totals..., ground-truth totals...]``."""
        return self.window_totals.reshape(self.window_totals.shape[0], 2 * SEAM_COLUMNS).tolist()


def frame_changes(frames: torch.Tensor, chunk: int = 5) -> list[int]:
    """``sum |x_t - x_{t-1}|`` over pixels and channels for ``t = 1 .. T-1`` of ``uint8 (T, H, W, C)``
    frames, as exact integers. ``max - min`` is the absolute difference without leaving uint8."""
    changes: list[int] = []
    for start in range(1, len(frames), chunk):
        later = frames[start : start + chunk]
        earlier = frames[start - 1 : start - 1 + len(later)]
        difference = torch.maximum(later, earlier).sub_(torch.minimum(later, earlier))
        changes += difference.flatten(1).sum(dim=1, dtype=torch.int64).tolist()
    return changes

