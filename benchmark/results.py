"""Typed, versioned results: ``results.json``, the per-window ``windows.jsonl``, the leaderboard CSV
rows and the drift plot. Every file is written atomically (temporary name, then rename)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .files import atomic_write_text, temporary_sibling
from .metrics.records import HorizonMetric
from .metrics.spec import METRICS

SCHEMA_VERSION = "1.1"
# 1.1 added ``clip_videos``; 1.0 files load with it empty.
READABLE_SCHEMAS = ("1.0", SCHEMA_VERSION)

# Columns of the summary CSV, shared with the leaderboards: one row per (run, horizon).
CSV_ID_COLUMNS = (
    "method",
    "split",
    "split_version",
    "split_hash",
    "protocol_hash",
    "horizon_s",
    "num_clips",
    "failed_clips",
    "limited",
)


def csv_metric_columns() -> tuple[str, ...]:
    """The metric columns of the summary CSV: each registered metric's ``csv_column``, in registry order."""
    return tuple(spec.csv_column for spec in METRICS.values() if spec.csv_column)


def csv_columns() -> tuple[str, ...]:
    """The summary CSV's columns: what identifies a run and horizon, then the metric columns. Read
    from the registry on every call, so a registered metric gets its column."""
    return CSV_ID_COLUMNS + csv_metric_columns()


TRACKED_PACKAGES = (
    "everanimate-bench",
    "torch",
    "torchvision",
    "torchmetrics",
    "numpy",
    "av",
    "lpips",
    "pytorch-fid",
    "transformers",
    "diffusers",
    "peft",
)


# A metric at one horizon: the harness's row type is the row type of results.json.
MetricResult = HorizonMetric


@dataclass
class RunResults:
    protocol: dict
    protocol_hash: str
    split: dict
    method: dict
    limit: int | None
    metrics: list[MetricResult]
    clips_evaluated: list[str]
    clips_failed: dict[str, str]
    git: dict
    packages: dict
    environment: dict
    timing: dict = field(default_factory=dict)
    drift: list[dict] = field(default_factory=list)
    # Per evaluated clip, the video it was scored from: file name, codec, pixel format, lossless. Empty in
    # results written before it was recorded, which still load.
    clip_videos: dict[str, dict] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    created_utc: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def comparable(self) -> bool:
        """Only full, failure-free runs may be compared with other methods or submitted."""
        return self.limit is None and not self.clips_failed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["comparable"] = self.comparable
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunResults":
        d = dict(d)
        d.pop("comparable", None)
        if d.get("schema_version") not in READABLE_SCHEMAS:
            raise ValueError(f"results schema {d.get('schema_version')!r}, this code reads {', '.join(READABLE_SCHEMAS)}")
        d["metrics"] = [MetricResult(**m) for m in d["metrics"]]
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "RunResults":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def record(self, metric: str, horizon_s: float) -> MetricResult:
        for m in self.metrics:
            if m.metric == metric and abs(m.horizon_s - horizon_s) < 1e-9:
                return m
        raise KeyError(f"no {metric} at {horizon_s:g} s in these results")

    def value(self, metric: str, horizon_s: float) -> float | None:
        return self.record(metric, horizon_s).value

    @property
    def horizons(self) -> list[float]:
        return sorted({m.horizon_s for m in self.metrics})

    def csv_rows(self) -> list[dict]:
        rows = []
        for horizon in self.horizons:
            row: dict[str, Any] = {
                "method": self.method["name"],
                "split": self.split["name"],
                "split_version": self.split["version"],
                "split_hash": self.split["content_hash"],
                "protocol_hash": self.protocol_hash,
                "horizon_s": f"{horizon:g}",
                "num_clips": len(self.clips_evaluated),
                "failed_clips": len(self.clips_failed),
                "limited": "true" if self.limit is not None else "false",
            }
            for m in self.metrics:
                spec = METRICS.get(m.metric)
                if abs(m.horizon_s - horizon) < 1e-9 and spec is not None and spec.csv_column:
                    row[spec.csv_column] = "" if m.value is None else repr(float(m.value))
            rows.append(row)
        return rows


# ---- provenance ------------------------------------------------------------------------------
def git_info(root: str | Path | None = None) -> dict:
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"revision": None, "dirty": None}
    return {"revision": revision, "dirty": dirty}


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment_info(device: str, num_processes: int) -> dict:
    import torch

    info = {
        "device": device,
        "num_processes": num_processes,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---- writing ---------------------------------------------------------------------------------
def write_results_json(path: str | Path, results: RunResults) -> None:
    atomic_write_text(path, json.dumps(results.to_dict(), indent=1, allow_nan=False))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))


def csv_text(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    columns = csv_columns() if columns is None else columns
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buffer.getvalue()


def write_csv(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, csv_text(rows))


def format_table(results: RunResults) -> str:
    """Horizons as rows, registered metrics as columns, each at its spec's precision (``value ±
    standard error``); unavailable metrics show ``n/a`` with a footnote."""
    metrics = [name for name in METRICS if any(r.metric == name for r in results.metrics)]
    header = ["horizon", *metrics]
    lines = [header]
    notes: dict[str, str] = {}
    for horizon in results.horizons:
        row = [f"{horizon:g} s"]
        for name in metrics:
            try:
                record = results.record(name, horizon)
            except KeyError:
                row.append("-")
                continue
            if record.value is None:
                notes[name] = record.unavailable_reason or "unavailable"
            row.append(METRICS[name].format(record.value, record.stderr))
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in lines)
    title = (
        f"{results.method['name']} on {results.split['name']} (v{results.split['version']}, {len(results.clips_evaluated)} clips"
        f"{', ' + str(len(results.clips_failed)) + ' FAILED' if results.clips_failed else ''}"
        f"{', --limit ' + str(results.limit) + ': not comparable' if results.limit is not None else ''})"
    )
    footer = "".join(f"\n  n/a {name}: {reason}" for name, reason in notes.items())
    failed = "".join(f"\n  FAILED {clip}: {reason}" for clip, reason in results.clips_failed.items())
    return f"{title}\n{text}{footer}{failed}"


def plot_drift(path: str | Path, results: RunResults) -> None:
    """Each metric over time (1-second windows), mean over clips with a standard-error band."""
    names = sorted({p["metric"] for p in results.drift if p.get("value") is not None})
    if names:
        plot_drift_curves(path, {None: results}, names, f"{results.method['name']} on {results.split['name']}: drift per 1-s window")


def plot_drift_curves(path: str | Path, runs: dict[str | None, RunResults], metrics: list[str], title: str) -> None:
    """One panel per metric, one curve per run (mean over clips per 1-second window, with a
    standard-error band); curves are labelled by their keys unless the only key is None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for label, run in runs.items():
            points = sorted((p for p in run.drift if p["metric"] == metric and p.get("value") is not None), key=lambda p: p["t_start_s"])
            if not points:
                continue
            t = [p["t_start_s"] for p in points]
            v = [p["value"] for p in points]
            (line,) = ax.plot(t, v, lw=1.1, label=label)
            se = [p.get("stderr") for p in points]
            if all(s is not None for s in se):
                ax.fill_between(t, [a - b for a, b in zip(v, se)], [a + b for a, b in zip(v, se)], color=line.get_color(), alpha=0.2, lw=0)
        spec = METRICS.get(metric)
        ax.set_title(metric if spec is None else spec.label + (f" ({spec.unit})" if spec.unit else ""))
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if list(runs) != [None]:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with temporary_sibling(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
