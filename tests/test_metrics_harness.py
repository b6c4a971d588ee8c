"""The evaluation harness: one pass for all horizons, exactness under re-batching, failures, records."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from benchmark.errors import ClipError
from benchmark.metrics import METRICS, ClipEvaluation, EvaluationHarness
from benchmark.metrics.testing import batches, stand_in_networks, synthetic_clip, synthetic_person_regions
from benchmark.protocol import Protocol
from benchmark.weights import WeightsConfig


pytestmark = pytest.mark.usefixtures("single_thread")

PROTOCOL = Protocol(width=96, height=64, fps=8, vmae_window_frames=4)
HORIZONS = [1.0, 2.0, 3.0]
NUM_FRAMES = 24
BOUNDARIES = [7, 14, 21]
CLIP_IDS = ["clip-a", "clip-b", "clip-c"]


@pytest.fixture(scope="module")
def networks():
    return stand_in_networks(PROTOCOL.vmae_window_frames)


@pytest.fixture(scope="module")
def clips():
    return {clip_id: synthetic_clip(clip_id, NUM_FRAMES, PROTOCOL.width, PROTOCOL.height) for clip_id in CLIP_IDS}


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    return WeightsConfig()


def make_harness(networks, horizons=HORIZONS, **kwargs) -> EvaluationHarness:
    return EvaluationHarness(PROTOCOL, horizons_s=horizons, weights=WeightsConfig(), networks=networks, **kwargs)


def run(harness: EvaluationHarness, clips: dict, chunk: int = 8, ids=CLIP_IDS) -> list[ClipEvaluation]:
    evaluations = []
    for clip_id in ids:
        generated, truth, boxes = clips[clip_id]
        regions = synthetic_person_regions(clip_id, NUM_FRAMES, PROTOCOL.width, PROTOCOL.height)
        evaluations.append(
            harness.evaluate_clip(clip_id, batches(generated, chunk), batches(truth, chunk), face_boxes=boxes, chunk_boundaries=BOUNDARIES, person_regions=regions)
        )
    return evaluations


def rows_by_key(result) -> dict:
    return {(row.metric, row.horizon_s): dataclasses.asdict(row) for row in result.horizons}


def test_every_metric_is_computed_with_stand_in_networks(networks, clips):
    harness = make_harness(networks)
    result = harness.aggregate(run(harness, clips))
    assert harness.unavailable == {}
    assert {row.metric for row in result.horizons} == set(METRICS)
    for row in result.horizons:
        assert row.value is not None and math.isfinite(row.value), row
        assert row.num_clips == len(CLIP_IDS)
        if row.metric in ("lpips", "fid", "vmae", "fvd_videomae", "identity"):
            assert "not comparable" in row.extra["network"]
    fid = result.get("fid", 3.0)
    assert fid.stderr is None and fid.extra["samples_per_side"] == len(CLIP_IDS) * NUM_FRAMES
    assert result.get("fvd_videomae", 3.0).extra["samples_per_side"] == len(CLIP_IDS) * NUM_FRAMES // PROTOCOL.vmae_window_frames
    assert result.get("f_psnr", 3.0).extra["frames_without_face"] == len(CLIP_IDS) * sum(1 for i in range(NUM_FRAMES) if i % 7 == 6)
    # The synthetic "generated" video drifts: later windows are worse.
    psnr = [p.value for p in result.drift if p.metric == "psnr"]
    assert len(psnr) == NUM_FRAMES // PROTOCOL.window_frames and psnr[0] > psnr[-1]


def test_identical_videos_score_perfectly(networks, clips):
    harness = make_harness(networks, horizons=[3.0])
    _, truth, boxes = clips["clip-a"]
    _, other_truth, _ = clips["clip-b"]
    evaluations = [
        harness.evaluate_clip(cid, batches(video, 8), batches(video, 8), face_boxes=boxes, chunk_boundaries=BOUNDARIES)
        for cid, video in (("a", truth), ("b", other_truth))
    ]
    result = harness.aggregate(evaluations)
    expected = {"psnr": 100.0, "f_psnr": 100.0, "seam": 1.0, "lpips": 0.0}
    for metric, value in expected.items():
        assert result.get(metric, 3.0).value == value
    for metric in ("ssim", "identity"):
        assert result.get(metric, 3.0).value == pytest.approx(1.0, abs=1e-6)
    assert abs(result.get("vmae", 3.0).value) < 1e-9
    assert abs(result.get("fid", 3.0).value) < 1e-6
    assert abs(result.get("fvd_videomae", 3.0).value) < 1e-6


def test_one_pass_for_all_horizons_equals_separate_runs(networks, clips):
    combined = make_harness(networks)
    combined_rows = rows_by_key(combined.aggregate(run(combined, clips)))
    for horizon in HORIZONS:
        alone = make_harness(networks, horizons=[horizon])
        alone_rows = rows_by_key(alone.aggregate(run(alone, clips)))
        for metric in METRICS:
            assert combined_rows[(metric, horizon)] == alone_rows[(metric, horizon)], metric


def test_batching_and_input_chunking_never_change_a_number(networks, clips):
    one_window = make_harness(networks, batch_frames=8)
    three_windows = make_harness(networks, batch_frames=24)
    first = run(one_window, clips, chunk=5)
    second = run(three_windows, clips, chunk=24)
    assert [ev.to_json() for ev in first] == [ev.to_json() for ev in second]
    assert one_window.aggregate(first) == three_windows.aggregate(second)


def test_float_frames_score_like_uint8_frames(networks, clips):
    generated, truth, boxes = clips["clip-a"]
    harness = make_harness(networks, horizons=[2.0], metrics=["psnr", "ssim", "lpips", "f_psnr"])
    as_uint8 = harness.evaluate_clip("a", batches(generated, 8), batches(truth, 8), face_boxes=boxes)
    as_float = harness.evaluate_clip("a", batches(generated.float() / 255, 8), batches(truth.double() / 255, 8), face_boxes=boxes)
    assert as_uint8.to_json() == as_float.to_json()


def test_unavailable_weights_are_reported_not_zero(no_weights, clips):
    harness = EvaluationHarness(PROTOCOL, horizons_s=[1.0, 3.0], weights=no_weights)
    for metric in ("lpips", "fid", "vmae", "fvd_videomae", "identity"):
        assert metric in harness.unavailable
    assert "python -m benchmark.weights fetch inception" in harness.unavailable["fid"]
    assert "EVERANIMATE_BENCH_INCEPTION" in harness.unavailable["fid"]
    result = harness.aggregate(run(harness, clips))
    for row in result.horizons:
        if row.metric in harness.unavailable:
            assert row.value is None and row.stderr is None and row.num_clips == 0
            assert row.unavailable_reason == harness.unavailable[row.metric]
        else:
            assert row.unavailable_reason is None and math.isfinite(row.value)
    json.dumps(result.to_json(), allow_nan=False)


def test_local_weights_file_makes_fid_available(no_weights, tmp_path):
    from benchmark.metrics.networks import random_inception_state_dict
    from benchmark.weights import NETWORKS

    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(random_inception_state_dict(), folder / NETWORKS["inception"].filename)
    harness = EvaluationHarness(PROTOCOL, horizons_s=[1.0], metrics=["fid"], weights=WeightsConfig(weights_dir=str(folder)))
    assert harness.unavailable == {}
    assert str(folder) in harness.network_sources["fid"]


def test_short_or_mismatched_videos_raise_clip_error(networks, clips):
    generated, truth, boxes = clips["clip-a"]
    harness = make_harness(networks, metrics=["psnr", "fid"])
    with pytest.raises(ClipError, match="generated video ended after 20 frames; 24 are needed"):
        harness.evaluate_clip("a", batches(generated[:20], 8), batches(truth, 8))
    with pytest.raises(ClipError, match="ground-truth frames are 48x64"):
        harness.evaluate_clip("a", batches(generated, 8), batches(truth[:, :, :48], 8))
    with pytest.raises(ClipError, match="face boxes"):
        harness.evaluate_clip("a", batches(generated, 8), batches(truth, 8), face_boxes=boxes[:10])
    with pytest.raises(ClipError, match="float frames"):
        harness.evaluate_clip("a", batches(generated.float(), 8), batches(truth, 8))


def test_reads_exactly_the_frames_of_the_longest_horizon(networks, clips):
    generated, truth, _ = clips["clip-a"]
    pulled = []

    def counting(frames):
        for batch in batches(frames, 5):
            pulled.append(len(batch))
            yield batch

    harness = make_harness(networks, horizons=[2.0], metrics=["psnr"])
    longer = torch.cat([generated, generated])
    harness.evaluate_clip("a", counting(longer), batches(truth, 16))
    assert sum(pulled) == 20  # four batches of 5 cover the 16 frames needed; nothing more is read


def test_failed_clip_is_excluded_everywhere(networks, clips):
    reference = make_harness(networks)
    expected = reference.aggregate(run(reference, clips, ids=CLIP_IDS[:2]))
    harness = make_harness(networks)
    evaluations = run(harness, clips, ids=CLIP_IDS[:2])
    generated, truth, boxes = clips[CLIP_IDS[2]]
    with pytest.raises(ClipError):
        harness.evaluate_clip(CLIP_IDS[2], batches(generated[:17], 8), batches(truth, 8), face_boxes=boxes)
    result = harness.aggregate(evaluations, failed_clips={CLIP_IDS[2]: "truncated"})
    assert result.horizons == expected.horizons and result.drift == expected.drift
    assert result.num_clips == 2 and result.failed_clips == {CLIP_IDS[2]: "truncated"}


def test_records_round_trip_through_json(networks, clips):
    harness = make_harness(networks)
    evaluations = run(harness, clips)
    reloaded = [ClipEvaluation.from_json(json.loads(json.dumps(ev.to_json()))) for ev in evaluations]
    direct, from_json = harness.aggregate(evaluations), harness.aggregate(reloaded)
    assert direct == from_json
    rows = evaluations[0].window_rows()
    assert {"clip_id", "metric", "window", "t_start_s", "t_end_s", "value", "count"} == set(rows[0])
    psnr_rows = [r for r in rows if r["metric"] == "psnr"]
    assert [r["t_start_s"] for r in psnr_rows] == [0.0, 1.0, 2.0] and all(r["count"] == 8 for r in psnr_rows)
    vmae_rows = [r for r in rows if r["metric"] == "vmae"]
    assert [r["count"] for r in vmae_rows] == [2, 2, 2]  # V-MAE windows start at 0, 4 | 8, 12 | 16, 20


def test_pooled_metrics_need_the_evaluating_harness(networks, clips):
    evaluations = run(make_harness(networks), clips)
    other = make_harness(networks)
    result = other.aggregate(evaluations)
    assert result.get("fid", 1.0).value is None and "pooled fid statistics" in result.get("fid", 1.0).unavailable_reason
    assert result.get("psnr", 1.0).value is not None


def test_undefined_values_are_none_with_a_reason(networks, clips):
    generated, truth, _ = clips["clip-a"]
    harness = make_harness(networks, horizons=[1.0], metrics=["f_psnr", "seam", "vmae"])
    no_faces = np.full((NUM_FRAMES, 4), np.nan)
    ev = harness.evaluate_clip("a", batches(generated, 8), batches(truth, 8), face_boxes=no_faces, chunk_boundaries=[])
    result = harness.aggregate([ev])
    for metric in ("f_psnr", "seam"):
        row = result.get(metric, 1.0)
        assert row.value is None and row.unavailable_reason and row.num_clips == 0
    assert result.get("f_psnr", 1.0).extra["frames_without_face"] == 8
    assert result.get("vmae", 1.0).value is not None


def test_invalid_configuration_is_rejected(networks):
    with pytest.raises(ValueError, match="unknown metric"):
        make_harness(networks, metrics=["psnr", "fvd"])
    with pytest.raises(ValueError, match="whole number"):
        make_harness(networks, horizons=[1.5])
    with pytest.raises(ValueError, match="multiple of the window"):
        make_harness(networks, batch_frames=12)
