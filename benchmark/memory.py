"""Peak memory, measured one way for every figure the project reports: the runner's ``peak_rss_mb``,
the harness's P2 goal (``python -m benchmark.perf``) and the baselines' per-chunk peaks
(``python -m methods.perf``).

On the CPU the figure is the process's peak resident set. Linux keeps it as the high-water mark
``VmHWM``, exact however short an allocation lived, and lets a process reset it
(``/proc/self/clear_refs``), so the peak of one block of code is the mark read after the block.
Where that is missing the resident set is sampled every few milliseconds instead, which can miss
spikes shorter than the interval. On CUDA the figure is ``torch.cuda.max_memory_allocated``.
Sizes are bytes here; reports divide by ``2**20`` for MB.
"""

from __future__ import annotations

import os
import resource
import sys
import threading

import torch

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """The resident set of this process now."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """The peak resident set of this process since it started, or since :func:`reset_peak_rss`."""
    high_water = _status_kib("VmHWM")
    if high_water is not None:
        return high_water * 1024
    # getrusage's ru_maxrss is in KiB on Linux and in bytes on macOS.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-resident-set mark to the current resident set (Linux); False where the
    kernel offers no reset, and the mark then still counts from the process start."""
    if _status_kib("VmHWM") is None:
        return False
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory while the ``with`` block runs, in bytes (``.peak``): the CUDA allocator's peak on a
    CUDA device, otherwise the process's peak resident set.

    On the CPU this resets the process's peak-RSS mark on entry, so a figure read from
    :func:`peak_rss_bytes` afterwards means "since this block began"."""

    def __init__(self, device: str | torch.device = "cpu", interval_s: float = 0.002):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not reset_peak_rss():
            self.peak = resident_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, resident_bytes())
        else:
            self.peak = peak_rss_bytes()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20
