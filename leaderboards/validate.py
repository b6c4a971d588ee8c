"""Check leaderboard CSV files: ``python -m leaderboards.validate FILE.csv [FILE.csv ...]``.

Prints one line per problem, naming the file, the row (as a spreadsheet numbers it: the header is
row 1) and the column, and exits with status 2 if there is any; a file that is not a leaderboard CSV
at all (binary, not UTF-8, no header, other columns) is one line. The rules are in
``leaderboards/README.md``: every cell filled (``unavailable`` for a metric that was not measured),
types and ranges, known split and protocol hashes, no ``--limit`` runs and no failed clips, no
duplicate rows, no spreadsheet formulas, ids that are safe file names.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.files import CLIP_ID_RULE, is_safe_clip_id
from benchmark.protocol import PROTOCOL_VERSION

from .schema import (
    FORMULA_PREFIXES,
    ID_COLUMNS,
    INTEGER_COLUMNS,
    KEY_COLUMNS,
    METRIC_RANGES,
    NONE,
    READABLE_VERSIONS,
    REPORTED,
    REPORTED_SPLITS,
    SCHEMA_VERSION,
    SHIPPED_SPLITS,
    SOURCES,
    STDERR_SUFFIX,
    UNAVAILABLE,
    WINDOW_S,
    KnownSplit,
    MalformedFile,
    ReportedSplit,
    Table,
    column_metric,
    columns,
    known_split_of,
    metric_columns,
    parse_horizons,
    parse_number,
    quote,
    read_table,
    stderr_columns,
)

_WEIGHTS = re.compile(r"[a-z0-9_]{1,32}=[0-9a-f]{8,64}(;[a-z0-9_]{1,32}=[0-9a-f]{8,64})*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Problem:
    """One problem, located by file, row and column (either may be None for the whole file or row)."""

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = ", ".join(part for part in (f"row {self.row}" if self.row is not None else "", f"column {self.column}" if self.column else "") if part)
        return f"{self.file}: {where + ': ' if where else ''}{self.message}"


class KnownSplits:
    """The splits rows may come from: the shipped splits, the declared paper splits (for reported
    rows only), and any split folder added with :meth:`add`."""

    def __init__(self, splits: Iterable[KnownSplit] = SHIPPED_SPLITS, reported: Iterable[ReportedSplit] = REPORTED_SPLITS):
        self.by_hash: dict[str, KnownSplit] = {s.content_hash: s for s in splits}
        self.reported: dict[str, ReportedSplit] = {s.name: s for s in reported}

    def add(self, name_or_folder: str) -> KnownSplit:
        """Accept rows of a split folder (or a named split), loaded and checked by the registry."""
        from benchmark.splits.registry import resolve_split

        split = known_split_of(resolve_split(name_or_folder))
        self.by_hash[split.content_hash] = split
        return split

    def describe(self) -> str:
        return ", ".join(f"{s.name} {s.content_hash}" for s in self.by_hash.values())


def _empty_message(column: str) -> str:
    if column in metric_columns() or column in stderr_columns():
        return "empty cell: give the value, or 'unavailable' if it was not measured (never leave it empty or write 0)"
    return f"empty cell: every cell holds a value ('{NONE}' for a text field with nothing to say)"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def check_row(row: dict[str, str], known: KnownSplits) -> list[tuple[str | None, str]]:
    """Every problem of one row, as ``(column, message)``."""
    problems: list[tuple[str | None, str]] = []
    bad: set[str] = set()

    def fail(column: str | None, message: str) -> None:
        problems.append((column, message))
        if column is not None:
            bad.add(column)

    def cell(column: str) -> str | None:
        """The cell, or None if an earlier check already failed it."""
        return None if column in bad else row[column]

    numeric = set(metric_columns()) | set(stderr_columns()) | set(INTEGER_COLUMNS) | {"horizon_s"}
    for column in columns():
        text = row[column]
        if text == "":
            fail(column, _empty_message(column))
        elif _has_control(text):
            fail(column, f"control character in {quote(text)}")
        elif text != text.strip():
            fail(column, f"leading or trailing white space in {quote(text)}")
        elif column not in numeric and text.startswith(FORMULA_PREFIXES):
            fail(column, f"{quote(text)} starts with {text[0]!r}: a spreadsheet would evaluate it as a formula")

    source = cell("source")
    if source is not None and source not in SOURCES:
        fail("source", f"{quote(source)} is not one of {', '.join(SOURCES)}")
        source = None
    reported = source == REPORTED
    version = cell("schema_version")
    if version is not None and version not in READABLE_VERSIONS:
        fail("schema_version", f"{quote(version)}: this validator reads schema {' and '.join(READABLE_VERSIONS)}")
    for column in ID_COLUMNS:
        text = cell(column)
        if text is not None and not is_safe_clip_id(text):
            fail(column, f"{quote(text)} is not safe as a file name ({CLIP_ID_RULE})")

    # Integers; 'unavailable' only where a paper does not say.
    ints: dict[str, int | None] = {}
    for column in INTEGER_COLUMNS:
        text = cell(column)
        if text is None:
            continue
        if text == UNAVAILABLE:
            if reported:
                ints[column] = None
            else:
                fail(column, f"'{UNAVAILABLE}' is for reported rows only; a run records it")
        elif not re.fullmatch(r"\d{1,9}", text):
            fail(column, f"expected a whole number, got {quote(text)}")
        else:
            ints[column] = int(text)
    if ints.get("num_clips") == 0:
        fail("num_clips", "no clip was evaluated")
    if ints.get("failed_clips"):
        fail("failed_clips", f"{ints['failed_clips']} failed clips: the run is not comparable; rerun the failed clips")
    if ints.get("chunk_frames") is not None and ints["chunk_frames"] < 2:
        fail("chunk_frames", "a chunk has at least 2 frames")
    if ints.get("carry_over") is not None and ints.get("chunk_frames") is not None and ints["carry_over"] >= ints["chunk_frames"]:
        fail("carry_over", f"carry-over {ints['carry_over']} must be below the chunk length {ints['chunk_frames']}")
    if ints.get("sampling_steps") == 0:
        fail("sampling_steps", "at least 1 sampling step")
    limited = cell("limited")
    if limited is not None:
        if limited not in ("true", "false"):
            fail("limited", f"expected true or false, got {quote(limited)}")
        elif limited == "true":
            fail("limited", "a --limit run scores only part of the split: not comparable; rerun it without --limit")

    # The split, and the protocol on it.
    split_name, split_hash = cell("split"), cell("split_hash")
    paper = known.reported.get(split_name or "")
    split: KnownSplit | None = None
    if reported:
        if split_name is not None and paper is None:
            fail("split", f"reported rows come from a declared paper split ({', '.join(known.reported)}), not {quote(split_name)}")
        elif paper is not None:
            for column, expected in (("split_version", paper.version), ("split_hash", paper.content_hash), ("protocol_hash", paper.protocol_hash)):
                text = cell(column)
                if text is not None and text != expected:
                    fail(column, f"{quote(text)}: rows reported on {paper.name} carry {expected!r}")
    elif source is not None:
        if paper is not None:
            fail("split", f"{paper.name} is a paper's evaluation set: only source={REPORTED} rows may name it")
        elif split_hash is not None:
            split = known.by_hash.get(split_hash)
            if split is None:
                fail("split_hash", f"unknown split hash {quote(split_hash)}: not a shipped split ({known.describe()}) nor one given with --known-split")
            else:
                if split_name is not None and split_name != split.name:
                    fail("split", f"split hash {split_hash} is split {split.name!r}, not {quote(split_name)}")
                version = cell("split_version")
                if version is not None and version != split.version:
                    fail("split_version", f"split {split.name} with hash {split_hash} is version {split.version!r}, not {quote(version)}")

    horizon = None
    text = cell("horizon_s")
    if text is not None:
        horizon = parse_number(text)
        if horizon is None or horizon <= 0:
            fail("horizon_s", f"expected a positive number of seconds, got {quote(text)}")
            horizon = None
        elif abs(horizon / WINDOW_S - round(horizon / WINDOW_S)) > 1e-9:
            fail("horizon_s", f"{text} s is not a whole number of {WINDOW_S:g}-s drift windows")
        elif paper is not None and reported and not any(abs(horizon - h) < 1e-9 for h in paper.horizons_s):
            fail("horizon_s", f"{paper.name} reports horizons {', '.join(f'{h:g}' for h in paper.horizons_s)} s, not {text}")
        elif split is not None and horizon > split.shortest_seconds + 1e-9:
            fail("horizon_s", f"{text} s is longer than the shortest clip of {split.name} ({split.shortest_seconds:g} s)")
    run_horizons = None
    text = cell("run_horizons_s")
    if text is not None:
        if text == UNAVAILABLE:
            if not reported:
                fail("run_horizons_s", f"'{UNAVAILABLE}' is for reported rows only; a run records its horizons")
        else:
            run_horizons = parse_horizons(text)
            if run_horizons is None or any(h <= 0 or abs(h / WINDOW_S - round(h / WINDOW_S)) > 1e-9 for h in run_horizons):
                fail("run_horizons_s", f"expected whole positive seconds separated by ';' (10;30;60;90), got {quote(text)}")
                run_horizons = None
            elif horizon is not None and not any(abs(horizon - h) < 1e-9 for h in run_horizons):
                fail("horizon_s", f"{horizon:g} s is not among the run's horizons ({text})")
    protocol_hash = cell("protocol_hash")
    settings = ("chunk_frames", "carry_over", "sampling_steps")
    if split is not None and protocol_hash is not None and run_horizons is not None and all(ints.get(k) is not None for k in settings):
        try:
            expected = split.protocol(horizons_s=run_horizons, **{k: ints[k] for k in settings}).hash
        except ValueError as exc:
            fail("protocol_hash", f"cannot rebuild the protocol: {exc}")
        else:
            if protocol_hash != expected:
                detail = ", ".join(f"{k}={ints[k]}" for k in settings)
                fail("protocol_hash", f"unknown protocol hash {quote(protocol_hash)}: protocol {PROTOCOL_VERSION} on {split.name} with {detail}, "
                     f"horizons {row['run_horizons_s']} has hash {expected}; another protocol version or convention")

    # Metrics and their standard errors.
    for column in metric_columns():
        spec = column_metric(column)
        limits = METRIC_RANGES.get(spec.name)
        value_text, se_column = cell(column), column + STDERR_SUFFIX
        if value_text is not None and value_text != UNAVAILABLE:
            value = parse_number(value_text)
            if value is None:
                fail(column, f"expected a number or '{UNAVAILABLE}', got {quote(value_text)}")
            elif limits is not None and not limits.contains(value):
                fail(column, f"{spec.label} {value_text} is outside {limits.describe()} ({limits.what})")
        se_text = cell(se_column)
        if se_text is None or se_text == UNAVAILABLE:
            continue
        se = parse_number(se_text)
        if se is None:
            fail(se_column, f"expected a number or '{UNAVAILABLE}', got {quote(se_text)}")
        elif se < 0:
            fail(se_column, f"a standard error is never negative, got {se_text}")
        elif row[column] == UNAVAILABLE:
            fail(se_column, f"a standard error without a value: {column} is '{UNAVAILABLE}'")
        elif spec.pooled:
            fail(se_column, f"{spec.label} is pooled over all clips and has no standard error: write '{UNAVAILABLE}'")

    # Provenance.
    text = cell("date")
    if text is not None and not (reported and text == UNAVAILABLE):
        try:
            if not _DATE.fullmatch(text):
                raise ValueError
            _dt.date.fromisoformat(text)
        except ValueError:
            fail("date", f"expected a date YYYY-MM-DD, got {quote(text)}")
    text = cell("method_arguments")
    if text is not None and not (reported and text == UNAVAILABLE):
        try:
            arguments = json.loads(text)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            fail("method_arguments", f'expected a JSON object such as {{}} or {{"lora":"stage1"}}, got {quote(text)}')
    text = cell("weights_fingerprint")
    if text is not None and text not in (NONE, UNAVAILABLE) and not _WEIGHTS.fullmatch(text):
        fail("weights_fingerprint", f"expected '{NONE}', '{UNAVAILABLE}' or name=hexdigest pairs separated by ';', got {quote(text)}")
    text = cell("paper_or_url")
    if reported and text is not None and text in (NONE, UNAVAILABLE):
        fail("paper_or_url", "a reported row cites its paper")
    return problems


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """The identifying cells of a row, with the horizon as a number (``10`` and ``10.0`` are one horizon)."""
    horizon = parse_number(row["horizon_s"])
    return tuple(f"{horizon:g}" if c == "horizon_s" and horizon is not None else row[c] for c in KEY_COLUMNS)


def check_tables(tables: list[Table], known: KnownSplits) -> list[Problem]:
    """Every problem of rows already read, including rows repeated within or across the tables."""
    problems: list[Problem] = []
    seen: dict[tuple[str, ...], tuple[str, int]] = {}
    for table in tables:
        for number, cells in table.ragged:
            problems.append(Problem(table.path, number, None, f"{cells} cells, the header has {len(table.header)}"))
        if not table.rows and not table.ragged:
            problems.append(Problem(table.path, None, None, "no rows after the header"))
        for number, row in zip(table.numbers, table.rows):
            problems.extend(Problem(table.path, number, column, message) for column, message in check_row(row, known))
            version = row.get("schema_version")
            if version in READABLE_VERSIONS and version != table.schema_version:
                problems.append(Problem(table.path, number, "schema_version", f"{quote(version)} in a file whose header is schema {table.schema_version}"))
            key = row_key(row)
            if key in seen:
                file, first = seen[key]
                where = f"row {first}" + ("" if file == table.path else f" of {file}")
                problems.append(Problem(table.path, number, None, f"duplicates {where} (same {', '.join(KEY_COLUMNS)})"))
            else:
                seen[key] = (table.path, number)
    return problems


def validate_files(paths: Iterable[str | Path], known: KnownSplits | None = None) -> tuple[list[Table], list[Problem]]:
    """Read and check the files; a file that cannot be read as a leaderboard CSV is one problem."""
    known = KnownSplits() if known is None else known
    tables, problems = [], []
    for path in paths:
        try:
            tables.append(read_table(path))
        except MalformedFile as exc:
            problems.append(Problem(str(path), None, None, str(exc)))
    return tables, problems + check_tables(tables, known)


def add_known_split_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--known-split", action="append", default=[], metavar="NAME_OR_FOLDER",
        help="also accept rows of this split (a split folder with manifest.json, e.g. one built from your videos); repeatable",
    )  # fmt: skip


def known_splits_from(names: list[str]) -> KnownSplits:
    """The shipped splits plus ``names`` (raises the registry's error for a split that does not load)."""
    known = KnownSplits()
    for name in names:
        known.add(name)
    return known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboards.validate", description=__doc__.split("\n\n")[0].split(": ")[0] + ".")
    parser.add_argument("files", nargs="+", type=Path, help="leaderboard CSV files (checked together: a row repeated across files is a duplicate)")
    add_known_split_argument(parser)
    args = parser.parse_args(argv)
    try:
        known = known_splits_from(args.known_split)
    except (BenchmarkError, OSError, ValueError) as exc:  # the split loader's errors name the folder and the problem
        print(f"error: --known-split: {exc}", file=sys.stderr)
        return 2
    tables, problems = validate_files(args.files, known)
    for problem in problems:
        print(problem, file=sys.stderr)
    rows = sum(len(t.rows) for t in tables)
    if problems:
        print(f"{len(problems)} problem{'' if len(problems) == 1 else 's'} in {len(args.files)} file{'' if len(args.files) == 1 else 's'} ({rows} rows read)")
        return 2
    print(f"{len(args.files)} files, {rows} rows: valid (leaderboard schema {SCHEMA_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
