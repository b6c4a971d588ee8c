"""Metric harness: every metric of the benchmark, defined exactly, in one streaming pass per clip.

See ``docs/metrics.md`` for the definitions, and :mod:`benchmark.metrics.spec` for the registry
:data:`METRICS` of what each metric is. The runner uses :class:`EvaluationHarness`::

    harness = EvaluationHarness(protocol, horizons_s=[10, 90], weights=WeightsConfig.from_env())
    ev = harness.evaluate_clip(clip_id, generated=batches, ground_truth=batches, face_boxes=boxes, chunk_boundaries=[77], person_regions=regions)
    harness.sync()
    result = harness.aggregate(evaluations, failed_clips={})

Names are imported on first use: the registry and the records are light, so ``benchmark.results``
and ``benchmark.compare`` read them without loading torch, torchmetrics or the metric networks.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "EvaluationHarness": "harness",
    "AggregateResult": "records",
    "ClipEvaluation": "records",
    "DriftPoint": "records",
    "HorizonMetric": "records",
    "WindowSeries": "records",
    "PersonRegions": "regions",
    "METRICS": "spec",
    "MetricSpec": "spec",
    "as_uint8_frames": "pixels",
    "to_signed_float": "pixels",
    "to_unit_float": "pixels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
