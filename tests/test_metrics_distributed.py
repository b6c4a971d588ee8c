"""One process and two gloo processes must report identical numbers, FID, FVD and the region metrics included."""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmark import distributed
from benchmark.metrics import ClipEvaluation, EvaluationHarness
from benchmark.metrics.regions import PersonRegions
from benchmark.metrics.testing import batches, stand_in_networks, synthetic_clip, synthetic_person_masks
from benchmark.protocol import Protocol
from benchmark.weights import WeightsConfig


pytestmark = pytest.mark.usefixtures("single_thread")

PROTOCOL = Protocol(width=64, height=48, fps=8, vmae_window_frames=4)
HORIZONS = [1.0, 2.0]
CLIP_IDS = [f"clip-{i}" for i in range(5)]
BOUNDARIES = [6, 13]


def evaluate_and_aggregate() -> dict | None:
    """What a runner does on every process; returns the aggregate (JSON) on rank 0."""
    torch.set_num_threads(1)
    harness = EvaluationHarness(PROTOCOL, horizons_s=HORIZONS, weights=WeightsConfig(), networks=stand_in_networks(PROTOCOL.vmae_window_frames))
    mine = []
    for clip_id in distributed.shard(CLIP_IDS):
        generated, truth, boxes = synthetic_clip(clip_id, 16, PROTOCOL.width, PROTOCOL.height)
        masks = synthetic_person_masks(clip_id, 16, PROTOCOL.width, PROTOCOL.height)
        if clip_id == CLIP_IDS[1]:  # a clip with frames whose person region is empty
            masks[5:12] = False
        regions = PersonRegions.from_masks(masks)
        mine.append(
            harness.evaluate_clip(clip_id, batches(generated, 8), batches(truth, 8), face_boxes=boxes, chunk_boundaries=BOUNDARIES, person_regions=regions)
        )
    harness.sync()
    evaluations = distributed.gather_objects(mine, key=lambda ev: CLIP_IDS.index(ev.clip_id))
    assert [ev.clip_id for ev in evaluations] == CLIP_IDS
    if distributed.rank() != 0:
        return None
    result = harness.aggregate(evaluations)
    state = {name: metric.feature_sum.tolist() for name, metric in harness._pooled.items()}
    return {"result": result.to_json(), "pooled_sums": state, "clips": [ev.to_json() for ev in evaluations]}


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank))
    assert distributed.init_from_env("cpu")
    try:
        output = evaluate_and_aggregate()
        if output is not None:
            Path(out).write_text(json.dumps(output))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    single = evaluate_and_aggregate()
    out = tmp_path / "two.json"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    double = json.loads(out.read_text())
    single = json.loads(json.dumps(single))
    assert double["clips"] == single["clips"]
    assert double["pooled_sums"] == single["pooled_sums"]
    assert double["result"] == single["result"]
    fid_rows = [row for row in single["result"]["horizons"] if row["metric"] in ("fid", "fvd_videomae")]
    assert fid_rows and all(row["value"] is not None for row in fid_rows)
    region_rows = [row for row in single["result"]["horizons"] if row["metric"] in ("background_psnr", "background_ssim", "person_psnr", "person_ssim")]
    assert len(region_rows) == 8 and all(row["value"] is not None for row in region_rows)
    assert {row["extra"]["frames_without_region"] for row in region_rows if row["metric"].startswith("person")} == {3, 7}


def test_helpers_without_a_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.init_from_env("cpu")
    assert distributed.rank() == 0 and distributed.world_size() == 1 and not distributed.is_distributed()
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.gather_objects([3, 1, 2], key=lambda x: x) == [1, 2, 3]
    assert torch.equal(distributed.all_reduce_sum_(torch.arange(3)), torch.arange(3))


def test_records_survive_pickling_for_gathering():
    record = ClipEvaluation("x", fps=8.0, window_frames=8, num_frames=8, vmae_window_frames=4, vmae=[0.25, None])
    assert pickle.loads(pickle.dumps(record)) == record
