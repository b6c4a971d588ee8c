"""Compare finished runs: ``python -m benchmark.compare RUN_DIR [RUN_DIR ...]``.

Reads each run's ``results.json``, refuses runs that are not comparable (a ``--limit`` run, failed clips,
another protocol or another split), and prints one table with a row per method and horizon, as text or
Markdown. ``--plot FILE`` overlays the methods' drift curves (1-second windows, mean over clips with a
standard-error band), one panel per metric.

``--baseline RUN`` adds paired differences: per clip, each metric of a run minus the same clip's value
in the baseline run, at every horizon and in every 1-second window, summarised as the mean over clips,
its standard error and the number of clips whose difference has the mean's sign. A difference smaller
than the clip-to-clip spread of either run can still be consistent on every clip; this shows it.
Per-clip values come from each run's ``windows.jsonl``, so pooled metrics (FID, FVD) and the seam
score, which keep no per-clip records there, are not paired.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .metrics.records import mean_and_stderr
from .metrics.spec import METRICS, VIDEOMAE_WINDOWS, unknown_metrics
from .results import RunResults, plot_drift_curves


def default_metrics() -> tuple[str, ...]:
    """The registered metrics a comparison shows unless ``--metrics`` says otherwise."""
    return tuple(name for name, spec in METRICS.items() if spec.compare_by_default)


class IncomparableRuns(ValueError):
    pass


def run_folder(path: str | Path) -> Path:
    """The run folder of a run folder or of its ``results.json``."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def load_run(path: str | Path) -> RunResults:
    """A run folder or a ``results.json`` file."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"{file}: no results.json (did the run finish its evaluation?)")
    try:
        return RunResults.load(file)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{file}: not a results file this code reads: {exc}") from exc


# Fields runs may differ in: each horizon's numbers do not depend on which others a run asked for, and
# the chunk structure (carry-over, and the chunk length of videos scored by benchmark.evaluate) is the
# method's own choice, set by its arguments and shown in its label.
PER_RUN_FIELDS = frozenset({"horizons_s", "carry_over", "chunk_frames"})
CHUNK_FIELDS = ("chunk_frames", "carry_over")


def protocol_differences(a: RunResults, b: RunResults) -> list[str]:
    """Shared protocol fields that differ."""
    keys = sorted((set(a.protocol) | set(b.protocol)) - PER_RUN_FIELDS)
    return [k for k in keys if a.protocol.get(k) != b.protocol.get(k)]


def check_comparable(runs: dict[str, RunResults], allow_partial: bool = False) -> None:
    """Every run full and failure-free, on one protocol and one split (name, version and content hash)."""
    first_name, first = next(iter(runs.items()))
    for name, run in runs.items():
        if not allow_partial and not run.comparable:
            why = f"--limit {run.limit}" if run.limit is not None else f"{len(run.clips_failed)} failed clips"
            raise IncomparableRuns(f"{name}: not comparable ({why}); rerun it in full or pass --allow-partial")
        fields = protocol_differences(first, run)
        if fields:
            detail = ", ".join(f"{k} ({run.protocol.get(k)!r} vs {first.protocol.get(k)!r})" for k in fields)
            raise IncomparableRuns(f"{name}: protocol differs from {first_name}'s in {detail}")
        if (run.split["name"], run.split["content_hash"]) != (first.split["name"], first.split["content_hash"]):
            raise IncomparableRuns(f"{name}: split {run.split['name']} ({run.split['content_hash']}) differs from {first_name}'s")
    regions = {name: region_source(run) for name, run in runs.items() if region_source(run) is not None}
    if len(set(regions.values())) > 1:
        detail = ", ".join(f"{name}: {source}" for name, source in regions.items())
        raise IncomparableRuns(f"the runs' background/person metrics come from different person regions ({detail}); rescore them with one --person-region")


def region_source(run: RunResults) -> str | None:
    """Where a run's region metrics took the person region from (``masks``, ``keypoints``, with the
    masks' record hash), or None for a run without region metrics."""
    source = run.split.get("person_region")
    if source is None:
        return None
    masks = run.split.get("person_masks_hash")
    return f"{source} {masks}" if masks else source


def run_labels(runs: dict[str, RunResults]) -> dict[str, str]:
    """The method name, with the arguments that tell apart runs of the same method; runs whose
    chunk structure (chunk length, carry-over) differs with no argument to say why are labelled with it."""
    labels = {}
    for key, run in runs.items():
        same = [r for r in runs.values() if r.method["name"] == run.method["name"]]
        arguments = run.method.get("arguments", {})
        differing = sorted(k for k in arguments if any(r.method.get("arguments", {}).get(k) != arguments[k] for r in same))
        parts = [f"{k}={arguments[k]}" for k in differing]
        if not parts:
            parts = [f"{k}={run.protocol.get(k)}" for k in CHUNK_FIELDS if any(r.protocol.get(k) != run.protocol.get(k) for r in same)]
        suffix = ", ".join(parts)
        labels[key] = run.method["name"] + (f" ({suffix})" if suffix else "")
    return labels


def _cell(run: RunResults, metric: str, horizon: float) -> str:
    try:
        record = run.record(metric, horizon)
    except KeyError:
        return "-"
    return METRICS[metric].format(record.value, record.stderr)


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows])


def comparison_table(runs: dict[str, RunResults], metrics: tuple[str, ...] | None = None, markdown: bool = False) -> str:
    """One row per (run, horizon); metrics that no run reports are left out. Each metric is printed
    at its spec's precision, as in the run's own table."""
    metrics = default_metrics() if metrics is None else metrics
    present = [m for m in metrics if any(r.metric == m and r.value is not None for run in runs.values() for r in run.metrics)]
    labels = run_labels(runs)
    header = ["method", "horizon", *present]
    rows = [[labels[key], f"{h:g} s", *(_cell(run, m, h) for m in present)] for key, run in runs.items() for h in run.horizons]
    return _table(header, rows, markdown)


def plot_comparison(path: str | Path, runs: dict[str, RunResults], metrics: tuple[str, ...] | None = None) -> None:
    """Drift curves of every run, one panel per metric."""
    metrics = default_metrics() if metrics is None else metrics
    names = [m for m in metrics if any(p["metric"] == m and p.get("value") is not None for run in runs.values() for p in run.drift)]
    if not names:
        raise ValueError("none of these runs has per-window values for the requested metrics")
    labels = run_labels(runs)
    first = next(iter(runs.values()))
    title = f"{first.split['name']}: drift per 1-s window, mean over {len(first.clips_evaluated)} clips"
    plot_drift_curves(path, {labels[key]: run for key, run in runs.items()}, names, title)


# ---- paired differences ------------------------------------------------------------------------
WINDOWS_FILE = "windows.jsonl"

#: A run's per-window records: metric -> clip id -> 1-s window index -> (mean value, count).
WindowRecords = dict[str, dict[str, dict[int, tuple[float | None, int]]]]


def load_windows(path: str | Path) -> WindowRecords:
    """The per-clip, per-1-second-window values of a run (``windows.jsonl`` in its folder, one
    ``{clip_id, metric, window, t_start_s, t_end_s, value, count}`` object per line)."""
    file = run_folder(path) / WINDOWS_FILE
    if not file.exists():
        raise FileNotFoundError(f"{file}: no {WINDOWS_FILE} (paired differences need the run's per-window values)")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    records: WindowRecords = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            clip, metric, window, value, count = row["clip_id"], row["metric"], row["window"], row["value"], row["count"]
            if not isinstance(clip, str) or not isinstance(metric, str):
                raise TypeError("clip_id and metric must be strings")
            if not _is_int(window) or window < 0 or not _is_int(count) or count < 0:
                raise TypeError("window and count must be non-negative integers")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise TypeError("value must be a finite number or null")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{file}, line {number}: not a window record ({exc})") from None
        records.setdefault(metric, {}).setdefault(clip, {})[window] = (None if value is None else float(value), count)
    return records


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class RunRecords:
    """A run's results and its per-window records: what a paired comparison reads."""

    results: RunResults
    windows: WindowRecords


def load_run_records(path: str | Path) -> RunRecords:
    """:func:`load_run` and :func:`load_windows` of one run folder (or its ``results.json``)."""
    return RunRecords(load_run(path), load_windows(path))


class Unpairable(ValueError):
    """A metric whose per-clip values cannot be rebuilt from a run's records."""


def clip_values(run: RunRecords, metric: str, horizon_s: float) -> dict[str, float]:
    """Each clip's value of ``metric`` at ``horizon_s`` (clips without a value left out), rebuilt
    from the run's per-window records as the harness computes it from the clip records, to float
    rounding: per-frame metrics are the frame mean over the horizon's windows (``sum(value *
    count) / sum(count)``); V-MAE the mean over the V-MAE windows that lie inside the horizon.
    Raises :class:`Unpairable` with the reason for a metric that keeps no per-clip records."""
    spec = METRICS[metric]
    if spec.pooled:
        raise Unpairable(f"{spec.label} is pooled over all clips: there are no per-clip values to pair")
    if not (spec.per_frame or spec.feed == VIDEOMAE_WINDOWS):
        raise Unpairable(f"{spec.label} keeps no per-window records in {WINDOWS_FILE}: its per-clip values are not in the results files")
    series = run.windows.get(metric)
    if not series:
        raise Unpairable(f"{run.results.method['name']} has no per-window {metric} values")
    protocol = run.results.protocol
    fps = protocol["fps"]
    window_frames = round(protocol["window_s"] * fps)
    horizon_frames = round(horizon_s * fps)
    if spec.per_frame:
        windows = list(range(horizon_frames // window_frames))
    else:
        windows = vmae_windows_inside(protocol, horizon_s)
    values = {}
    for clip in run.results.clips_evaluated:
        records = series.get(clip, {})
        parts = [records.get(w) for w in windows]
        if any(part is None for part in parts):
            continue
        count = sum(c for v, c in parts if v is not None)  # type: ignore[misc]
        if count:
            values[clip] = math.fsum(v * c for v, c in parts if v is not None) / count  # type: ignore[misc]
    return values


def vmae_windows_inside(protocol: dict, horizon_s: float) -> list[int]:
    """The 1-s windows whose V-MAE windows (each counted in the 1-s window of its first frame) all
    lie inside the horizon; the rest have none inside. A 1-s window holding V-MAE windows on both
    sides of the horizon's end cannot be split, so it raises :class:`Unpairable`."""
    fps, size = protocol["fps"], protocol["vmae_window_frames"]
    window_frames = round(protocol["window_s"] * fps)
    evaluated = round(max(protocol["horizons_s"]) * fps) // size  # V-MAE windows in a clip's records
    inside = round(horizon_s * fps) // size
    groups: dict[int, list[int]] = {}
    for k in range(evaluated):
        groups.setdefault(k * size // window_frames, []).append(k)
    windows = []
    for window, members in sorted(groups.items()):
        within = sum(k < inside for k in members)
        if within == len(members):
            windows.append(window)
        elif within:
            raise Unpairable(
                f"at {horizon_s:g} s, 1-s window {window} holds V-MAE windows on both sides of the horizon's end: "
                f"its per-clip value cannot be rebuilt from {WINDOWS_FILE}"
            )
    return windows


@dataclass
class PairedDifference:
    """``metric`` of a run minus the baseline's, clip by clip, at one horizon or in one 1-s window."""

    metric: str
    horizon_s: float | None  # set for a horizon row
    window: int | None  # set for a window row
    mean: float | None
    stderr: float | None
    same_sign: int  # clips whose difference has the sign of the mean (zero counts as its own sign)
    clip_differences: dict[str, float] = field(default_factory=dict)
    unavailable_reason: str | None = None

    @property
    def num_clips(self) -> int:
        return len(self.clip_differences)


@dataclass
class PairedComparison:
    """Paired differences of one run against a baseline: per horizon, and per 1-second window."""

    method: str
    baseline: str
    metrics: tuple[str, ...]
    horizons: list[PairedDifference]
    windows: list[PairedDifference]
    window_s: float

    def at(self, metric: str, horizon_s: float) -> PairedDifference:
        for row in self.horizons:
            if row.metric == metric and abs(row.horizon_s - horizon_s) < 1e-9:  # type: ignore[operator]
                return row
        raise KeyError(f"no paired {metric} at {horizon_s:g} s")


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def summarise_differences(metric: str, differences: dict[str, float], horizon_s: float | None = None, window: int | None = None) -> PairedDifference:
    """Mean, standard error over clips and same-sign count of per-clip differences."""
    values = [differences[clip] for clip in sorted(differences)]
    mean, stderr = mean_and_stderr(values)
    same = 0 if mean is None else sum(_sign(v) == _sign(mean) for v in values)
    reason = None if values else "no clip has a value in both runs"
    return PairedDifference(metric, horizon_s, window, mean, stderr, same, dict(sorted(differences.items())), reason)


def paired_differences(
    run: RunRecords, baseline: RunRecords, metrics: tuple[str, ...] | None = None, labels: tuple[str, str] | None = None
) -> PairedComparison:
    """``run`` minus ``baseline``, clip by clip, for every metric at every horizon both runs have, and
    in every 1-s window both have a value in. Check the runs with :func:`check_comparable` first.
    ``labels`` names the two runs (default: :func:`run_labels`)."""
    metrics = default_metrics() if metrics is None else metrics
    a, b = run.results, baseline.results
    horizons = [h for h in a.horizons if any(abs(h - g) < 1e-9 for g in b.horizons)]
    rows = []
    for metric in metrics:
        for horizon in horizons:
            try:
                mine, theirs = clip_values(run, metric, horizon), clip_values(baseline, metric, horizon)
            except Unpairable as exc:
                rows.append(PairedDifference(metric, horizon, None, None, None, 0, {}, str(exc)))
                continue
            rows.append(summarise_differences(metric, {c: mine[c] - theirs[c] for c in mine if c in theirs}, horizon_s=horizon))
    windows = []
    for metric in metrics:
        mine_series, theirs_series = run.windows.get(metric, {}), baseline.windows.get(metric, {})
        indices = sorted({w for series in (mine_series, theirs_series) for records in series.values() for w in records})
        for window in indices:
            differences = {}
            for clip, records in mine_series.items():
                mine_value = records.get(window, (None, 0))[0]
                theirs_value = theirs_series.get(clip, {}).get(window, (None, 0))[0]
                if mine_value is not None and theirs_value is not None:
                    differences[clip] = mine_value - theirs_value
            if differences:
                windows.append(summarise_differences(metric, differences, window=window))
    if labels is None:
        named = run_labels({"run": a, "baseline": b})
        labels = (named["run"], named["baseline"])
    return PairedComparison(labels[0], labels[1], tuple(metrics), rows, windows, float(a.protocol["window_s"]))


def distinct_labels(runs: dict[str, RunResults]) -> dict[str, str]:
    """:func:`run_labels`, with the key (the run folder) added to labels that several runs share."""
    labels = run_labels(runs)
    counts = {label: list(labels.values()).count(label) for label in labels.values()}
    return {key: label if counts[label] == 1 else f"{label} [{key}]" for key, label in labels.items()}


def format_difference(metric: str, row: PairedDifference) -> str:
    """``+0.12 ± 0.03 [3/3]``: mean difference ± standard error [clips with the mean's sign / clips],
    at the metric's precision; ``n/a`` when unavailable."""
    if row.mean is None:
        return "n/a"
    decimals = METRICS[metric].decimals
    text = f"{row.mean:+.{decimals}f}"
    if row.stderr is not None:
        text += f" ± {row.stderr:.{decimals}f}"
    return f"{text} [{row.same_sign}/{row.num_clips}]"


def _direction(metric: str) -> str:
    return "↑" if METRICS[metric].higher_is_better else "↓"


def paired_tables(comparison: PairedComparison, markdown: bool = False, windows: bool = True) -> str:
    """A table with a row per horizon and a column per metric (its better direction marked), then,
    with ``windows``, one with a row per 1-s window; metrics that cannot be paired are footnoted."""
    present = [m for m in comparison.metrics if any(r.metric == m for r in comparison.horizons) or any(r.metric == m for r in comparison.windows)]
    horizons = sorted({r.horizon_s for r in comparison.horizons})  # type: ignore[type-var]
    notes: dict[str, str] = {}
    for row in comparison.horizons:
        if row.unavailable_reason:
            notes.setdefault(row.metric, row.unavailable_reason)
    header = ["horizon", *(f"{m} {_direction(m)}" for m in present)]
    rows = [[f"{h:g} s", *(format_difference(m, comparison.at(m, h)) for m in present)] for h in horizons]
    title = (
        f"paired differences, {comparison.method} − {comparison.baseline}: mean over clips ± standard error "
        "[clips whose difference has the mean's sign / clips]; ↑ higher is better, ↓ lower is better"
    )
    text = f"{title}\n{_table(header, rows, markdown)}"
    text += "".join(f"\n  n/a {m}: {reason}" for m, reason in notes.items())
    by_window = [m for m in present if any(r.metric == m for r in comparison.windows)]
    if windows and by_window:
        cells = {(r.metric, r.window): r for r in comparison.windows}
        indices = sorted({r.window for r in comparison.windows})  # type: ignore[type-var]
        step = comparison.window_s
        window_rows = [[f"{w * step:g}-{(w + 1) * step:g} s", *(format_difference(m, cells[(m, w)]) if (m, w) in cells else "-" for m in by_window)] for w in indices]
        text += f"\nper {step:g}-s window, {comparison.method} − {comparison.baseline}\n"
        text += _table(["window", *(f"{m} {_direction(m)}" for m in by_window)], window_rows, markdown)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.compare", description=__doc__.split("\n\n")[0].split(": ")[0] + ".",
                                     epilog="Example: python -m benchmark.compare runs/wan-animate-synthetic runs/vae-roundtrip-synthetic --markdown --plot drift.png")
    parser.add_argument("runs", nargs="+", help="run folders (or results.json files) written by benchmark.run / benchmark.evaluate")
    parser.add_argument("--metrics", default=",".join(default_metrics()), help=f"comma-separated, from {', '.join(METRICS)} (default: %(default)s)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--plot", type=Path, help="also write the overlaid drift curves to this PNG")
    parser.add_argument("--baseline", help="also print each run's paired differences against this run (same split), per horizon and per 1-s window")
    parser.add_argument("--no-windows", action="store_true", help="with --baseline, leave out the per-window differences")
    parser.add_argument("--allow-partial", action="store_true", help="accept --limit runs and runs with failed clips (marked as such nowhere else: use for debugging only)")
    args = parser.parse_args(argv)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = unknown_metrics(metrics)
    if unknown:
        parser.error(f"unknown metrics {', '.join(unknown)}; known: {', '.join(METRICS)}")
    try:
        runs = {str(path): load_run(path) for path in args.runs}
        baseline, baseline_key, others = None, None, {}
        if args.baseline is not None:
            baseline = load_run_records(args.baseline)
            folder = run_folder(args.baseline).resolve()
            baseline_key = next((key for key in runs if run_folder(key).resolve() == folder), None)
            others = {key: load_run_records(key) for key in runs if key != baseline_key}
            if baseline_key is None:
                baseline_key = str(args.baseline)
                runs[baseline_key] = baseline.results
        check_comparable(runs, args.allow_partial)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(comparison_table(runs, metrics, args.markdown))
    if baseline is not None:
        labels = distinct_labels(runs)
        for key, records in others.items():
            comparison = paired_differences(records, baseline, metrics, (labels[key], labels[baseline_key]))
            print()
            print(paired_tables(comparison, args.markdown, windows=not args.no_windows))
    if args.plot:
        plot_comparison(args.plot, runs, metrics)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
