"""The one peak-memory measurement (``benchmark.memory``) sees what a block allocates, even briefly,
and only that block."""

from __future__ import annotations

import time

import torch

from benchmark import memory
from benchmark.memory import PeakMemory, peak_rss_bytes, resident_bytes

MB = 2**20
ALLOCATION = 256 * MB


def _allocate_and_free(hold_s: float = 0.0) -> None:
    block = torch.ones(ALLOCATION // 4)  # float32, every page written
    time.sleep(hold_s)
    del block


def test_a_freed_allocation_still_counts_in_the_peak():
    before = resident_bytes()
    with PeakMemory() as measured:
        _allocate_and_free()
    assert measured.peak - before > 0.9 * ALLOCATION
    assert resident_bytes() < measured.peak - 0.5 * ALLOCATION  # it was freed


def test_each_block_measures_from_its_own_start():
    with PeakMemory() as big:
        _allocate_and_free()
    with PeakMemory() as small:
        pass
    assert small.peak < big.peak - 0.5 * ALLOCATION
    assert peak_rss_bytes() >= resident_bytes()


def test_without_a_kernel_reset_the_resident_set_is_sampled(monkeypatch):
    monkeypatch.setattr(memory, "reset_peak_rss", lambda: False)
    before = resident_bytes()
    with PeakMemory(interval_s=0.002) as measured:
        _allocate_and_free(hold_s=0.2)
    assert measured.peak - before > 0.9 * ALLOCATION
    assert measured.peak_mb == measured.peak / MB
