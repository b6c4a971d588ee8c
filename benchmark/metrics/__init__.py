"""Metric harness: every metric of the benchmark, defined exactly, in one streaming pass per clip.

See ``docs/metrics.md`` for the definitions. The runner uses :class:`EvaluationHarness`::

    harness = EvaluationHarness(protocol, horizons_s=[10, 90], weights=WeightsConfig.from_env())
    ev = harness.evaluate_clip(clip_id, generated=batches, ground_truth=batches, face_boxes=boxes, chunk_boundaries=[77])
    harness.sync()
    result = harness.aggregate(evaluations, failed_clips={})
"""

from .harness import ALL_METRICS, METRIC_INFO, EvaluationHarness
from .pixels import as_uint8_frames, to_signed_float, to_unit_float
from .records import AggregateResult, ClipEvaluation, DriftPoint, HorizonMetric, MetricInfo, WindowSeries

__all__ = [
    "ALL_METRICS",
    "METRIC_INFO",
    "AggregateResult",
    "ClipEvaluation",
    "DriftPoint",
    "EvaluationHarness",
    "HorizonMetric",
    "MetricInfo",
    "WindowSeries",
    "as_uint8_frames",
    "to_signed_float",
    "to_unit_float",
]
