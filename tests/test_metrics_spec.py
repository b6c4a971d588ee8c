"""The metric registry drives everything: a metric added as one spec is computed by the harness, kept in
the clip records and drift curves, written to the CSV, printed in the tables and accepted by --metrics."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark import compare
from benchmark.evaluate import parse_metrics
from benchmark.metrics import ClipEvaluation, EvaluationHarness
from benchmark.metrics.frame import SSIM_RADIUS, WindowedFrameMetric
from benchmark.metrics.spec import CHUNK_SEAMS, FRAME_PAIRS, METRICS, MetricSpec, check_registry
from benchmark.metrics.testing import batches, synthetic_clip
from benchmark.protocol import Protocol
from benchmark.results import RunResults, csv_columns, csv_metric_columns, csv_text, format_table
from benchmark.weights import WeightsConfig

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = Protocol(width=48, height=32, fps=8)


class MeanAbsoluteError(WindowedFrameMetric):
    """A metric that is not part of the benchmark: mean |generated - ground truth| per frame, in levels."""

    higher_is_better = False

    def update(self, generated: torch.Tensor, ground_truth: torch.Tensor, window: int) -> None:
        errors = (generated.double() - ground_truth.double()).abs().flatten(1).mean(dim=1)
        self._add_scores(window, errors.tolist())


MAE = MetricSpec(
    name="mae",
    label="MAE",
    higher_is_better=False,
    feed=FRAME_PAIRS,
    build=lambda ctx: MeanAbsoluteError(ctx.num_windows),
    description="mean absolute error per frame in uint8 levels",
    drift=True,
    csv_column="mae",
    decimals=3,
)


@pytest.fixture(autouse=True)
def registry_order():
    """A metric removed and put back by ``monkeypatch`` returns at the end of the registry; restore
    the registry's own order (the CSV columns and every listing follow it) after each test."""
    saved = list(METRICS.items())
    yield
    METRICS.clear()
    METRICS.update(saved)


@pytest.fixture
def with_mae(monkeypatch):
    monkeypatch.setitem(METRICS, "mae", MAE)
    return MAE


def run_results(rows, drift=()) -> RunResults:
    return RunResults(
        protocol=PROTOCOL.to_dict(),
        protocol_hash=PROTOCOL.hash,
        split={"name": "toy", "version": "1", "content_hash": "0" * 16},
        method={"name": "toy-method", "arguments": {}},
        limit=None,
        metrics=list(rows),
        clips_evaluated=["a", "b"],
        clips_failed={},
        git={},
        packages={},
        environment={},
        drift=[dict(vars(point)) for point in drift],
    )


def test_the_registry_is_consistent_and_every_consumer_reads_it():
    check_registry()
    assert all(spec.name == name for name, spec in METRICS.items())
    assert csv_metric_columns() == tuple(spec.csv_column for spec in METRICS.values() if spec.csv_column)
    assert csv_columns()[-len(csv_metric_columns()) :] == csv_metric_columns()
    assert set(compare.default_metrics()) <= set(METRICS)
    assert parse_metrics(",".join(METRICS)) == list(METRICS)
    assert METRICS["ssim"].min_side == 2 * SSIM_RADIUS + 1
    assert [name for name, spec in METRICS.items() if spec.pooled] == ["fid", "fvd_videomae"]
    assert [name for name, spec in METRICS.items() if spec.needs_chunk_boundaries] == ["seam"]


def test_the_leaderboard_columns_are_unchanged():
    """A change here changes the leaderboard schema (``leaderboards.schema.SCHEMA_VERSION``)."""
    assert csv_metric_columns() == (
        "psnr", "ssim", "lpips", "fid", "vmae", "f_psnr", "fvd_videomae", "seam", "identity",
        "background_psnr", "background_ssim", "person_psnr", "person_ssim",
    )  # fmt: skip


def test_a_metric_added_as_one_spec_reaches_harness_records_csv_and_tables(with_mae):
    harness = EvaluationHarness(PROTOCOL, horizons_s=[1.0, 2.0], metrics=["psnr", "mae"], weights=WeightsConfig())
    evaluations = []
    expected = {}
    for clip_id in ("a", "b"):
        generated, truth, _ = synthetic_clip(clip_id, 16, PROTOCOL.width, PROTOCOL.height)
        evaluations.append(harness.evaluate_clip(clip_id, batches(generated, 8), batches(truth, 8)))
        expected[clip_id] = (generated.double() - truth.double()).abs().mean().item()
    result = harness.aggregate(evaluations)

    row = result.get("mae", 2.0)
    assert row.value == pytest.approx(math.fsum(expected.values()) / 2, rel=1e-12)
    assert row.higher_is_better is False and row.stderr is not None and row.num_clips == 2
    assert {p.metric for p in result.drift} == {"psnr", "mae"}
    reloaded = ClipEvaluation.from_json(evaluations[0].to_json())
    assert reloaded.clip_value("mae", 2.0) == pytest.approx(expected["a"], rel=1e-12)
    assert {r["metric"] for r in reloaded.window_rows()} == {"psnr", "mae"}

    results = run_results(result.horizons, result.drift)
    assert csv_columns()[-1] == "mae"
    header, *lines = csv_text(results.csv_rows()).splitlines()
    assert header.split(",")[-1] == "mae" and lines[1].split(",")[-1] == repr(row.value)
    table = format_table(results)
    assert table.splitlines()[1].split() == ["horizon", "psnr", "mae"]
    assert MAE.format(row.value, row.stderr) in table and f"{row.value:.3f}" in table
    assert MAE.format(row.value, row.stderr) in compare.comparison_table({"run": results})
    assert parse_metrics("psnr,mae") == ["psnr", "mae"]


def test_a_metric_is_removed_as_one_entry(monkeypatch):
    monkeypatch.delitem(METRICS, "identity")
    assert "identity" not in csv_columns()
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metrics("identity")
    harness = EvaluationHarness(PROTOCOL, horizons_s=[1.0], weights=WeightsConfig())
    assert "identity" not in harness.specs


def test_specs_that_the_records_cannot_hold_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="drift curve"):
        MetricSpec(name="x", label="x", higher_is_better=True, feed=CHUNK_SEAMS, build=lambda ctx: None, description="", drift=True)
    with pytest.raises(ValueError, match="unknown feed"):
        MetricSpec(name="x", label="x", higher_is_better=True, feed="pixels", build=lambda ctx: None, description="")
    monkeypatch.setitem(METRICS, "seam2", MetricSpec(name="seam2", label="seam2", higher_is_better=False, feed=CHUNK_SEAMS, build=METRICS["seam"].build, description=""))
    with pytest.raises(ValueError, match="one chunk_seams metric"):
        check_registry()
    monkeypatch.delitem(METRICS, "seam2")
    monkeypatch.setitem(METRICS, "psnr2", MetricSpec(name="psnr2", label="PSNR", higher_is_better=True, feed=FRAME_PAIRS, build=METRICS["psnr"].build, description="", csv_column="psnr"))
    with pytest.raises(ValueError, match="share a CSV column"):
        EvaluationHarness(PROTOCOL, horizons_s=[1.0], metrics=["psnr"], weights=WeightsConfig())


def test_values_print_at_the_spec_precision():
    assert METRICS["psnr"].format(33.4123, 0.1849) == "33.41 ± 0.18"
    assert METRICS["ssim"].format(0.93215, None) == "0.9322"
    assert METRICS["fid"].format(37.0) == "37.00"
    assert METRICS["seam"].format(1.3333, 0.05) == "1.33 ± 0.05"
    assert METRICS["lpips"].format(None) == "n/a"


def test_results_and_compare_read_the_registry_without_loading_torch():
    code = (
        "import sys, benchmark.results, benchmark.compare, benchmark.metrics.spec, benchmark.metrics.records;"
        "heavy = [m for m in ('torch', 'torchmetrics') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_metric_package_does_not_import_the_results_module():
    code = "import sys, benchmark.metrics.harness; assert 'benchmark.results' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
