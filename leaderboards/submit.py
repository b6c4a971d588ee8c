"""Turn finished runs into leaderboard rows: ``python -m leaderboards.submit RUN_DIR [RUN_DIR ...] --out FILE.csv``.

Each run's ``results.json`` is read with :func:`benchmark.compare.load_run`; its ``summary.csv`` rows
(:meth:`benchmark.results.RunResults.csv_rows`, one per horizon) get the standard errors, the
protocol settings, the method's arguments and weight digests, and the submission's source, submitter
and notes. The rows are checked with the validator before anything is written: a ``--limit`` run, a
run with failed clips or a run on an unknown split is refused with the validator's lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.compare import load_run
from benchmark.errors import BenchmarkError
from benchmark.results import RunResults

from .schema import (
    NONE,
    REPRODUCED,
    SCHEMA_VERSION,
    STDERR_SUFFIX,
    SUBMITTED,
    UNAVAILABLE,
    MalformedFile,
    Table,
    column_metric,
    columns,
    format_horizons,
    metric_columns,
    read_table,
    write_table,
)
from .validate import add_known_split_argument, check_tables, known_splits_from

#: Keys of a method's description that hold digests of the weights it loaded (``weights_sha256``,
#: ``lora_sha256``, ...).
DIGEST_SUFFIX = "_sha256"


def weights_fingerprint(method: dict) -> str:
    """``weights=<digest>;lora=<digest>`` from the method's recorded weight digests; ``none`` for a
    method that loads no weights."""
    pairs = [f"{key[: -len(DIGEST_SUFFIX)]}={value}" for key, value in sorted(method.items()) if key.endswith(DIGEST_SUFFIX) and isinstance(value, str)]
    return ";".join(pairs) if pairs else NONE


def method_arguments(method: dict) -> str:
    """The method's arguments as compact JSON with sorted keys."""
    return json.dumps(method.get("arguments", {}), sort_keys=True, separators=(",", ":"), default=str)


def run_rows(run: RunResults, source: str = SUBMITTED, submitter: str = "anonymous", paper_or_url: str = NONE, notes: str = NONE) -> list[dict[str, str]]:
    """One leaderboard row per horizon of ``run``: its ``summary.csv`` row with every missing metric
    marked ``unavailable``, and the leaderboard's columns."""
    rows = []
    for summary in run.csv_rows():
        row = {key: str(value) for key, value in summary.items()}
        horizon = float(row["horizon_s"])
        for column in metric_columns():
            spec = column_metric(column)
            try:
                record = run.record(spec.name, horizon)
            except KeyError:
                record = None
            measured = record is not None and record.value is not None
            row[column] = row[column] if measured and row.get(column) else UNAVAILABLE
            row[column + STDERR_SUFFIX] = repr(float(record.stderr)) if measured and record.stderr is not None else UNAVAILABLE
        row.update(
            chunk_frames=str(run.protocol["chunk_frames"]),
            carry_over=str(run.protocol["carry_over"]),
            sampling_steps=str(run.protocol["sampling_steps"]),
            run_horizons_s=format_horizons(run.protocol["horizons_s"]),
            source=source,
            submitter=submitter,
            date=run.created_utc[:10],
            paper_or_url=paper_or_url,
            method_arguments=method_arguments(run.method),
            weights_fingerprint=weights_fingerprint(run.method),
            notes=notes,
            schema_version=SCHEMA_VERSION,
        )
        rows.append({column: row[column] for column in columns()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboards.submit", description=__doc__.split("\n\n")[0].split(": ")[0] + ".")
    parser.add_argument("runs", nargs="+", help="run folders (or results.json files) written by benchmark.run / benchmark.evaluate")
    parser.add_argument("--out", type=Path, required=True, help="the leaderboard CSV to write")
    parser.add_argument("--append", action="store_true", help="add the rows to the rows already in --out instead of replacing them")
    parser.add_argument("--source", choices=(SUBMITTED, REPRODUCED), default=SUBMITTED,
                        help="submitted: a submitter's own runs; reproduced: runs of published methods made with this benchmark (default: %(default)s)")
    parser.add_argument("--submitter", default="anonymous", help="who submits the rows (default: %(default)s)")
    parser.add_argument("--paper-or-url", default=NONE, help="the method's paper or page (default: none)")
    parser.add_argument("--notes", default=NONE, help="a note for every row (default: none)")
    add_known_split_argument(parser)
    args = parser.parse_args(argv)
    try:
        known = known_splits_from(args.known_split)
        runs = [load_run(path) for path in args.runs]
        existing = read_table(args.out).rows if args.append and args.out.exists() else []
    except (BenchmarkError, MalformedFile, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = existing + [row for run in runs for row in run_rows(run, args.source, args.submitter, args.paper_or_url, args.notes)]
    problems = check_tables([Table(str(args.out), list(columns()), rows, list(range(2, len(rows) + 2)), [])], known)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"nothing written: {len(problems)} problems", file=sys.stderr)
        return 2
    write_table(args.out, rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
