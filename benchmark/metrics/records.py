"""Typed records: one clip's per-window evaluation, and the aggregate result of a split.

A :class:`ClipEvaluation` holds everything needed to derive the clip's value of every per-clip
metric at every horizon it covers, and its drift curve: per 1-second window, the sum and count of
each per-frame metric, V-MAE distances per 16-frame window, and exact integer seam totals. It is
JSON-serialisable without loss (floats round-trip through ``repr``). Pooled FID/FVD statistics are
not in it: they live in the harness that evaluated the clip (see ``EvaluationHarness.sync``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .spec import CHUNK_SEAMS, METRICS, VIDEOMAE_WINDOWS, MetricSpec

RECORD_VERSION = 1

# Columns of a seam record, per side: |x_t - x_{t-1}| totals and pair counts, at boundaries and inside
# chunks. A record row holds the generated side's four columns, then the ground truth's.
SEAM_BOUNDARY_SUM, SEAM_BOUNDARY_PAIRS, SEAM_INNER_SUM, SEAM_INNER_PAIRS = range(4)
SEAM_COLUMNS = 4


def seam_ratio(boundary_sum: int, boundary_pairs: int, inner_sum: int, inner_pairs: int) -> float | None:
    """``mean d(boundary) / mean d(inner)``; None when undefined (no pairs, or no inner change)."""
    if boundary_pairs == 0 or inner_pairs == 0 or inner_sum == 0:
        return None
    return (boundary_sum / boundary_pairs) / (inner_sum / inner_pairs)


@dataclass
class HorizonMetric:
    """One metric at one horizon over the split: the row type of the harness and of ``results.json``."""

    horizon_s: float
    metric: str
    value: float | None
    stderr: float | None
    num_clips: int
    higher_is_better: bool
    unavailable_reason: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class WindowSeries:
    """Per-window sums and counts of one per-frame metric (``sum / count`` is the window mean)."""

    sums: list[float]
    counts: list[int]


@dataclass
class ClipEvaluation:
    """One clip's per-window records for every requested per-clip metric."""

    clip_id: str
    fps: float
    window_frames: int
    num_frames: int
    vmae_window_frames: int
    frame_metrics: dict[str, WindowSeries] = field(default_factory=dict)
    frames_without_face: list[int] | None = None
    # Per region metric, frames per window not scored because their region was empty or unknown.
    frames_without_region: dict[str, list[int]] = field(default_factory=dict)
    # Where the clip's person region came from ("masks" or "keypoints"); None: no region was given.
    person_region: str | None = None
    vmae: list[float | None] | None = None
    seam: list[list[int]] | None = None
    # Samples per side that each horizon's pooled FID / FVD statistics received from this clip.
    feature_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # The file the clip was scored from (name, codec, pixel format, lossless), set by the evaluator.
    video: dict | None = None
    version: int = RECORD_VERSION

    # ---- horizons ---------------------------------------------------------------------------
    def horizon_frames(self, horizon_s: float) -> int:
        return int(round(horizon_s * self.fps))

    def num_windows(self, horizon_s: float) -> int:
        frames = self.horizon_frames(horizon_s)
        if frames > self.num_frames:
            raise ValueError(f"clip {self.clip_id!r} was evaluated on {self.num_frames} frames, horizon {horizon_s:g} s needs {frames}")
        return frames // self.window_frames

    def clip_value(self, metric: str, horizon_s: float) -> float | None:
        """The clip's value at a horizon, from the window records; None when undefined (e.g. no
        frame with a face, no V-MAE window inside the horizon, no seam pair)."""
        windows = self.num_windows(horizon_s)
        if metric in self.frame_metrics:
            series = self.frame_metrics[metric]
            count = sum(series.counts[:windows])
            return math.fsum(series.sums[:windows]) / count if count else None
        feed = _feed(metric)
        if feed == VIDEOMAE_WINDOWS and self.vmae is not None:
            inside = self.horizon_frames(horizon_s) // self.vmae_window_frames
            values = [v for v in self.vmae[:inside] if v is not None]
            return math.fsum(values) / len(values) if values else None
        if feed == CHUNK_SEAMS and self.seam is not None:
            totals = [sum(row[i] for row in self.seam[:windows]) for i in range(2 * SEAM_COLUMNS)]
            generated = seam_ratio(*totals[:SEAM_COLUMNS])
            truth = seam_ratio(*totals[SEAM_COLUMNS:])
            return generated / truth if generated is not None and truth else None
        raise KeyError(f"clip {self.clip_id!r} has no {metric} records")

    def frames_without_face_in(self, horizon_s: float) -> int:
        return sum((self.frames_without_face or [])[: self.num_windows(horizon_s)])

    def frames_without_region_in(self, metric: str, horizon_s: float) -> int:
        return sum(self.frames_without_region.get(metric, [])[: self.num_windows(horizon_s)])

    # ---- windows ----------------------------------------------------------------------------
    def window_value(self, metric: str, window: int) -> tuple[float | None, int]:
        """Mean and count of ``metric`` in 1-s window ``window``. V-MAE windows count in the 1-s
        window that holds their first frame."""
        if metric in self.frame_metrics:
            series = self.frame_metrics[metric]
            count = series.counts[window]
            return (series.sums[window] / count if count else None), count
        if _feed(metric) == VIDEOMAE_WINDOWS and self.vmae is not None:
            values = [v for k, v in enumerate(self.vmae) if v is not None and (k * self.vmae_window_frames) // self.window_frames == window]
            return (math.fsum(values) / len(values) if values else None), len(values)
        raise KeyError(f"clip {self.clip_id!r} has no per-window {metric} records")

    def drift_metrics(self) -> list[str]:
        """The registered metrics with a drift curve that this clip has window records of, in registry order."""
        return [name for name, spec in METRICS.items() if spec.drift and self._has_window_records(name)]

    def _has_window_records(self, metric: str) -> bool:
        return metric in self.frame_metrics or (_feed(metric) == VIDEOMAE_WINDOWS and self.vmae is not None)

    def window_rows(self) -> list[dict]:
        """Rows ``{clip_id, metric, window, t_start_s, t_end_s, value, count}`` for ``windows.jsonl``."""
        rows = []
        window_s = self.window_frames / self.fps
        for metric in self.drift_metrics():
            for window in range(self.num_frames // self.window_frames):
                value, count = self.window_value(metric, window)
                rows.append(
                    {
                        "clip_id": self.clip_id,
                        "metric": metric,
                        "window": window,
                        "t_start_s": round(window * window_s, 9),
                        "t_end_s": round((window + 1) * window_s, 9),
                        "value": value,
                        "count": count,
                    }
                )
        return rows

    # ---- serialisation ----------------------------------------------------------------------
    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ClipEvaluation":
        data = dict(data)
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"clip evaluation record version {data.get('version')!r}, this code reads {RECORD_VERSION}")
        data["frame_metrics"] = {name: WindowSeries(**series) for name, series in data.get("frame_metrics", {}).items()}
        return cls(**data)


@dataclass
class DriftPoint:
    metric: str
    window: int
    t_start_s: float
    t_end_s: float
    value: float | None
    stderr: float | None
    num_clips: int


@dataclass
class AggregateResult:
    horizons: list[HorizonMetric]
    drift: list[DriftPoint]
    num_clips: int
    failed_clips: dict[str, str]
    specs: dict[str, MetricSpec]

    def get(self, metric: str, horizon_s: float) -> HorizonMetric:
        for row in self.horizons:
            if row.metric == metric and abs(row.horizon_s - horizon_s) < 1e-9:
                return row
        raise KeyError(f"no {metric} at {horizon_s:g} s")

    def to_json(self) -> dict:
        return {
            "horizons": [asdict(row) for row in self.horizons],
            "drift": [asdict(point) for point in self.drift],
            "num_clips": self.num_clips,
            "failed_clips": dict(self.failed_clips),
            "specs": {name: spec.describe() for name, spec in self.specs.items()},
        }


def _feed(metric: str) -> str | None:
    spec = METRICS.get(metric)
    return spec.feed if spec is not None else None


def mean_and_stderr(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error (sample std / sqrt(n)); both order-independent (``math.fsum``)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)
