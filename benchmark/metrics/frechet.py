"""Fréchet distance between feature distributions (FID, FVD-VideoMAE) with shard-exact statistics.

Activations -> per-clip moments -> pooled statistics -> distance, as in pytorch-fid, except that the
pooled statistics are sums that can be split over processes:

- Within a clip, features are accumulated in float64 in a fixed order (window by window), giving the
  clip's feature sum ``sum x`` and outer-product sum ``sum x x^T`` (upper triangle) per horizon.
- Each clip's contribution is converted to fixed point, ``round(v * 2**FIXED_POINT_BITS)`` as int64,
  before it is added to the pooled state. Integer addition is associative, so the pooled sums are
  bit-identical however clips are split across processes or ordered.

Resolution: ``2**-32`` (about 2.3e-10) per clip and entry. Range: every pooled entry must stay below
``2**62 / 2**32 = 2**30`` (about 1.07e9) in magnitude; pool3 features are O(1), so a 90 s clip
contributes at most ~1e4 per entry and a split of tens of thousands of clips fits. Exceeding the
range raises ``OverflowError`` (use ``fid_frame_stride`` > 1 to reduce the totals), never wraps.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from scipy import linalg
from torchmetrics import Metric

from .. import distributed

FIXED_POINT_BITS = 32
_SCALE = float(2**FIXED_POINT_BITS)
_STATE_LIMIT = 2**62
GENERATED, GROUND_TRUTH = 0, 1


def to_fixed_point(values: torch.Tensor) -> torch.Tensor:
    """float64 -> int64 ``round(values * 2**FIXED_POINT_BITS)``; ``OverflowError`` when out of range."""
    scaled = values.to(torch.float64) * _SCALE
    if scaled.numel() and not bool(torch.isfinite(scaled).all()):
        raise OverflowError("feature statistics are not finite")
    if scaled.numel() and float(scaled.abs().max()) >= _STATE_LIMIT:
        raise OverflowError(f"a feature statistic exceeds the fixed-point range 2**{62 - FIXED_POINT_BITS}")
    return torch.round(scaled).to(torch.int64)


def from_fixed_point(values: torch.Tensor) -> np.ndarray:
    return values.cpu().numpy().astype(np.float64) / _SCALE


@functools.lru_cache(maxsize=4)
def upper_triangle_mask(dim: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(dim, dim)`` mask of the upper triangle; row-major order matches ``np.triu_indices``."""
    return torch.ones(dim, dim, dtype=torch.bool, device=device).triu_()


class ClipMoments:
    """One clip's running float64 feature moments, generated (side 0) and ground truth (side 1).

    ``snapshot()`` at each horizon's last frame gives the fixed-point prefix statistics for that
    horizon; nothing is added to the pooled state until the clip has been read completely.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        self.dim = dim
        self.feature_sum = torch.zeros(2, dim, dtype=torch.float64, device=device)
        self.outer_sum = torch.zeros(2, dim, dim, dtype=torch.float64, device=device)
        self.count = [0, 0]

    def add(self, side: int, features: torch.Tensor) -> None:
        """Add ``(n, dim)`` features of one side."""
        if features.numel() == 0:
            return
        values = features.to(torch.float64)
        self.feature_sum[side] += values.sum(dim=0)
        self.outer_sum[side].addmm_(values.T, values)
        self.count[side] += values.shape[0]

    def snapshot(self) -> "FixedPointMoments":
        return FixedPointMoments(
            feature_sum=to_fixed_point(self.feature_sum),
            outer_sum=to_fixed_point(self.outer_sum[:, upper_triangle_mask(self.dim, self.outer_sum.device)]),
            count=torch.tensor(self.count, dtype=torch.int64, device=self.feature_sum.device),
        )


class FixedPointMoments:
    """Fixed-point ``sum x`` ``(2, D)``, upper-triangular ``sum x x^T`` ``(2, D(D+1)/2)`` and counts ``(2,)``."""

    def __init__(self, feature_sum: torch.Tensor, outer_sum: torch.Tensor, count: torch.Tensor) -> None:
        self.feature_sum = feature_sum
        self.outer_sum = outer_sum
        self.count = count


class FrechetDistance(Metric):
    """Pooled fixed-point feature statistics of generated and ground-truth frames, one set per
    horizon, and the Fréchet distance between the two Gaussians they define.

    ``update(horizon_index, moments)`` adds one clip's prefix statistics for one horizon.
    ``compute()`` returns one distance per horizon, None where a side has fewer than two samples.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, num_horizons: int, dim: int, **kwargs) -> None:
        super().__init__(sync_on_compute=False, **kwargs)
        self.dim = dim
        triangle = dim * (dim + 1) // 2
        self.add_state("feature_sum", torch.zeros(num_horizons, 2, dim, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("outer_sum", torch.zeros(num_horizons, 2, triangle, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_horizons, 2, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_clips", torch.zeros(num_horizons, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, horizon_index: int, moments: FixedPointMoments) -> None:
        self.feature_sum[horizon_index] += moments.feature_sum
        self.outer_sum[horizon_index] += moments.outer_sum
        self.count[horizon_index] += moments.count
        self.num_clips[horizon_index] += 1
        for state in (self.feature_sum[horizon_index], self.outer_sum[horizon_index]):
            if float(state.abs().max()) >= _STATE_LIMIT:
                raise OverflowError(f"pooled feature statistics exceed the fixed-point range 2**{62 - FIXED_POINT_BITS}")

    def all_reduce(self) -> None:
        """Sum the states over all processes, exactly (int64). Checks first that the sum cannot wrap."""
        if not distributed.is_distributed():
            return
        largest = torch.stack([self.feature_sum.abs().max(), self.outer_sum.abs().max()]).max().reshape(1)
        torch.distributed.all_reduce(largest, op=torch.distributed.ReduceOp.MAX)
        if int(largest) >= 2**63 // distributed.world_size():
            raise OverflowError("pooled feature statistics would overflow int64 when summed over processes")
        for state in (self.feature_sum, self.outer_sum, self.count, self.num_clips):
            distributed.all_reduce_sum_(state)

    def statistics(self, horizon_index: int, side: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean ``(D,)``, unbiased covariance ``(D, D)`` (as ``np.cov``) and sample count of one side."""
        n = int(self.count[horizon_index, side])
        total = from_fixed_point(self.feature_sum[horizon_index, side])
        triangle = from_fixed_point(self.outer_sum[horizon_index, side])
        second = np.zeros((self.dim, self.dim))
        second[np.triu_indices(self.dim)] = triangle
        second = second + np.triu(second, 1).T
        mean = total / n
        covariance = (second - n * np.outer(mean, mean)) / (n - 1)
        return mean, covariance, n

    def compute(self) -> list[float | None]:
        distances: list[float | None] = []
        for h in range(self.count.shape[0]):
            if int(self.count[h].min()) < 2:
                distances.append(None)
                continue
            mu_gen, sigma_gen, _ = self.statistics(h, GENERATED)
            mu_gt, sigma_gt, _ = self.statistics(h, GROUND_TRUTH)
            distances.append(frechet_distance(mu_gen, sigma_gen, mu_gt, sigma_gt))
        return distances


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, computed like pytorch-fid's
    ``calculate_frechet_distance``: ``eps`` is added to both diagonals only when the matrix square
    root is not finite, and a negligible imaginary part is dropped."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # pytorch-fid calls sqrtm(disp=False), which reports a singular product silently.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"Fréchet distance: singular product of covariances, adding {eps} to the diagonals", RuntimeWarning, stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
