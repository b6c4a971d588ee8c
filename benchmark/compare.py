"""Compare finished runs: ``python -m benchmark.compare RUN_DIR [RUN_DIR ...]``.

Reads each run's ``results.json``, refuses runs that are not comparable (a ``--limit`` run, failed clips,
another protocol or another split), and prints one table with a row per method and horizon, as text or
Markdown. ``--plot FILE`` overlays the methods' drift curves (1-second windows, mean over clips with a
standard-error band), one panel per metric.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .metrics.spec import METRICS, unknown_metrics
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


def comparison_table(runs: dict[str, RunResults], metrics: tuple[str, ...] | None = None, markdown: bool = False) -> str:
    """One row per (run, horizon); metrics that no run reports are left out. Each metric is printed
    at its spec's precision, as in the run's own table."""
    metrics = default_metrics() if metrics is None else metrics
    present = [m for m in metrics if any(r.metric == m and r.value is not None for run in runs.values() for r in run.metrics)]
    labels = run_labels(runs)
    header = ["method", "horizon", *present]
    rows = [[labels[key], f"{h:g} s", *(_cell(run, m, h) for m in present)] for key, run in runs.items() for h in run.horizons]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows])


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.compare", description=__doc__.split("\n\n")[0].split(": ")[0] + ".",
                                     epilog="Example: python -m benchmark.compare runs/wan-animate-synthetic runs/vae-roundtrip-synthetic --markdown --plot drift.png")
    parser.add_argument("runs", nargs="+", help="run folders (or results.json files) written by benchmark.run / benchmark.evaluate")
    parser.add_argument("--metrics", default=",".join(default_metrics()), help=f"comma-separated, from {', '.join(METRICS)} (default: %(default)s)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--plot", type=Path, help="also write the overlaid drift curves to this PNG")
    parser.add_argument("--allow-partial", action="store_true", help="accept --limit runs and runs with failed clips (marked as such nowhere else: use for debugging only)")
    args = parser.parse_args(argv)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = unknown_metrics(metrics)
    if unknown:
        parser.error(f"unknown metrics {', '.join(unknown)}; known: {', '.join(METRICS)}")
    try:
        runs = {str(path): load_run(path) for path in args.runs}
        check_comparable(runs, args.allow_partial)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(comparison_table(runs, metrics, args.markdown))
    if args.plot:
        plot_comparison(args.plot, runs, metrics)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
