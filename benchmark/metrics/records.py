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

from .temporal import SEAM_BOUNDARY_PAIRS, SEAM_BOUNDARY_SUM, SEAM_INNER_PAIRS, SEAM_INNER_SUM, seam_ratio

from ..results import MetricResult as HorizonMetric  # one row type for the harness and results.json

RECORD_VERSION = 1
FRECHET_METRICS = ("fid", "fvd_videomae")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    unit: str
    description: str
    per_frame: bool


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
        if metric == "vmae" and self.vmae is not None:
            inside = self.horizon_frames(horizon_s) // self.vmae_window_frames
            values = [v for v in self.vmae[:inside] if v is not None]
            return math.fsum(values) / len(values) if values else None
        if metric == "seam" and self.seam is not None:
            totals = [sum(row[i] for row in self.seam[:windows]) for i in range(8)]
            generated = seam_ratio(*(totals[i] for i in (SEAM_BOUNDARY_SUM, SEAM_BOUNDARY_PAIRS, SEAM_INNER_SUM, SEAM_INNER_PAIRS)))
            truth = seam_ratio(*(totals[4 + i] for i in (SEAM_BOUNDARY_SUM, SEAM_BOUNDARY_PAIRS, SEAM_INNER_SUM, SEAM_INNER_PAIRS)))
            return generated / truth if generated is not None and truth else None
        raise KeyError(f"clip {self.clip_id!r} has no {metric} records")

    def frames_without_face_in(self, horizon_s: float) -> int:
        return sum((self.frames_without_face or [])[: self.num_windows(horizon_s)])

    # ---- windows ----------------------------------------------------------------------------
    def window_value(self, metric: str, window: int) -> tuple[float | None, int]:
        """Mean and count of ``metric`` in 1-s window ``window``. V-MAE windows count in the 1-s
        window that holds their first frame."""
        if metric in self.frame_metrics:
            series = self.frame_metrics[metric]
            count = series.counts[window]
            return (series.sums[window] / count if count else None), count
        if metric == "vmae" and self.vmae is not None:
            values = [v for k, v in enumerate(self.vmae) if v is not None and (k * self.vmae_window_frames) // self.window_frames == window]
            return (math.fsum(values) / len(values) if values else None), len(values)
        raise KeyError(f"clip {self.clip_id!r} has no per-window {metric} records")

    def drift_metrics(self) -> list[str]:
        return list(self.frame_metrics) + (["vmae"] if self.vmae is not None else [])

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
    metric_info: dict[str, MetricInfo]

    def get(self, metric: str, horizon_s: float) -> HorizonMetric:
        for row in self.horizons:
            if row.metric == metric and abs(row.horizon_s - horizon_s) < 1e-9:
                return row
        raise KeyError(f"no {metric} at {horizon_s:g} s")

    def to_json(self) -> dict:
        return asdict(self)


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
