"""The leaderboard CSV: its columns (schema :data:`SCHEMA_VERSION`), the splits whose rows it accepts,
the range of every metric, and a reader that turns any file into a header and rows or one clean error.

The columns start with the ones ``summary.csv`` has (:func:`benchmark.results.csv_columns`), so a
registered metric gets its column here too; then one standard-error column per metric
(``<metric>_se``), the protocol settings the protocol hash covers, and the leaderboard's own fields.
``leaderboards/README.md`` documents every column.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.metrics.spec import METRICS, MetricSpec
from benchmark.protocol import DEFAULT_HORIZONS_S, Protocol
from benchmark.results import csv_columns, csv_metric_columns

SCHEMA_VERSION = "1.1"
#: Metric columns (with their standard errors) that schema 1.1 added to 1.0: the region metrics. A 1.0
#: file is read with these cells ``unavailable``, since nothing measured them.
ADDED_IN_1_1 = ("background_psnr", "background_ssim", "person_psnr", "person_ssim")
READABLE_VERSIONS = ("1.0", SCHEMA_VERSION)

#: The literal for a value that was not measured or is not known. An empty cell is an error.
UNAVAILABLE = "unavailable"
#: The literal for a text field with nothing to say (no notes, no URL, a method without weights).
NONE = "none"

REPRODUCED, REPORTED, SUBMITTED = "reproduced", "reported", "submitted"
SOURCES = (REPRODUCED, REPORTED, SUBMITTED)

STDERR_SUFFIX = "_se"

# Protocol settings a run chooses (its method's carry-over and sampling steps, the chunk length of
# videos scored by benchmark.evaluate, the horizons it evaluated): with the split's resolution and
# fps they give the protocol hash, which the validator recomputes.
PROTOCOL_COLUMNS = ("chunk_frames", "carry_over", "sampling_steps", "run_horizons_s")

LEADERBOARD_COLUMNS = ("source", "submitter", "date", "paper_or_url", "method_arguments", "weights_fingerprint", "notes", "schema_version")

#: Columns that identify a row: no two rows of the files validated together may share all of them.
KEY_COLUMNS = ("source", "method", "method_arguments", "weights_fingerprint", "split", "split_hash", "protocol_hash", "horizon_s")

#: Columns holding ids that may become file names (the rendered Markdown files are named by split).
ID_COLUMNS = ("method", "split")

INTEGER_COLUMNS = ("num_clips", "failed_clips", "chunk_frames", "carry_over", "sampling_steps")

#: A leading character that makes a spreadsheet evaluate a text cell as a formula. Tab and carriage
#: return are refused too: some spreadsheets strip them and then read the formula behind them.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

#: Files larger than this are refused before they are parsed.
MAX_FILE_BYTES = 32 * 1024 * 1024

#: The PSNR cap of the protocol the validator accepts (``Protocol.psnr_cap_db``); a PSNR or F-PSNR
#: above it cannot come from the harness.
PSNR_CAP_DB: float = next(f.default for f in dataclasses.fields(Protocol) if f.name == "psnr_cap_db")

#: The drift window of the protocol: horizons are whole numbers of it.
WINDOW_S: float = next(f.default for f in dataclasses.fields(Protocol) if f.name == "window_s")


def metric_columns() -> tuple[str, ...]:
    """The metric columns, in registry order (the ``summary.csv`` metric columns)."""
    return csv_metric_columns()


def stderr_columns() -> tuple[str, ...]:
    return tuple(column + STDERR_SUFFIX for column in metric_columns())


def columns() -> tuple[str, ...]:
    """Every column of schema :data:`SCHEMA_VERSION`, in the order ``submit`` writes them."""
    return csv_columns() + stderr_columns() + PROTOCOL_COLUMNS + LEADERBOARD_COLUMNS


def columns_1_0() -> tuple[str, ...]:
    """The columns of schema 1.0: those of :func:`columns` without :data:`ADDED_IN_1_1`."""
    return tuple(c for c in columns() if c.removesuffix(STDERR_SUFFIX) not in ADDED_IN_1_1)


def column_metric(column: str) -> MetricSpec:
    """The registered metric of a metric or standard-error column."""
    base = column.removesuffix(STDERR_SUFFIX)
    for spec in METRICS.values():
        if spec.csv_column == base:
            return spec
    raise KeyError(f"{column!r} is not a metric column")


@dataclass(frozen=True)
class MetricRange:
    """The values a metric can take: ``low <= value <= high`` (``high`` None: no upper bound)."""

    low: float
    high: float | None
    what: str

    def contains(self, value: float) -> bool:
        return value >= self.low and (self.high is None or value <= self.high)

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}]" if self.high is not None else f">= {self.low:g}"


#: Every registered metric's range, by metric name (a test checks that none is missing).
METRIC_RANGES: dict[str, MetricRange] = {
    "psnr": MetricRange(0.0, PSNR_CAP_DB, "dB, capped at the protocol's PSNR cap"),
    "ssim": MetricRange(-1.0, 1.0, "SSIM"),
    "lpips": MetricRange(0.0, None, "a distance"),
    "fid": MetricRange(0.0, None, "a distance"),
    "vmae": MetricRange(0.0, 2.0, "1 - cosine similarity"),
    "f_psnr": MetricRange(0.0, PSNR_CAP_DB, "dB, capped at the protocol's PSNR cap"),
    "fvd_videomae": MetricRange(0.0, None, "a distance"),
    "seam": MetricRange(0.0, None, "a ratio of frame-to-frame changes"),
    "identity": MetricRange(-1.0, 1.0, "a cosine similarity"),
    "background_psnr": MetricRange(0.0, PSNR_CAP_DB, "dB, capped at the protocol's PSNR cap"),
    "background_ssim": MetricRange(-1.0, 1.0, "SSIM"),
    "person_psnr": MetricRange(0.0, PSNR_CAP_DB, "dB, capped at the protocol's PSNR cap"),
    "person_ssim": MetricRange(-1.0, 1.0, "SSIM"),
}


# ---- the splits rows may come from ---------------------------------------------------------------
@dataclass(frozen=True)
class KnownSplit:
    """A split whose rows the leaderboard accepts: its identity and what the protocol takes from it."""

    name: str
    version: str
    content_hash: str
    width: int
    height: int
    fps: int
    shortest_seconds: float

    def protocol(self, **settings) -> Protocol:
        """The protocol a run on this split records, with the run's own settings."""
        return Protocol(width=self.width, height=self.height, fps=self.fps, **settings)


#: The shipped splits (``benchmark/splits/registry.py``), as recorded from their manifests; a test
#: checks the test split's record against the split the registry renders.
SHIPPED_SPLITS: tuple[KnownSplit, ...] = (
    KnownSplit("synthetic", "1", "acd1467776b0109c", width=64, height=96, fps=25, shortest_seconds=90.0),
    KnownSplit("synthetic-train", "1", "bda818be061ecc4e", width=64, height=96, fps=25, shortest_seconds=12.0),
)


def known_split_of(split) -> KnownSplit:
    """The :class:`KnownSplit` record of a loaded :class:`benchmark.splits.manifest.Split`."""
    return KnownSplit(split.name, split.version, split.content_hash, split.width, split.height, split.fps, split.shortest_seconds)


@dataclass(frozen=True)
class ReportedSplit:
    """The evaluation set of a paper: not released, so it has no content hash; rows reported on it
    carry these constants in place of the split and protocol hashes."""

    name: str
    version: str
    content_hash: str
    protocol_hash: str
    horizons_s: tuple[float, ...]
    citation: str
    url: str


PAPER_CITATION = (
    "Wuyang Li, Yang Gao, Mariam Hassan, Lan Feng, Wentao Pan, Po-Chien Luan, Alexandre Alahi. "
    "EverAnimate: Minute-Scale Human Animation via Latent Flow Restoration. VITA@EPFL"
)

#: The EverAnimate paper's evaluation set (Tables 1 and 2): 480p videos at 25 fps, scored at 10, 30,
#: 60 and 90 s with the paper's own code. Its rows are never ranked with rows of another split.
PAPER_SPLIT = ReportedSplit(
    name="everanimate-paper",
    version="unreleased",
    content_hash="everanimate-paper-unreleased",
    protocol_hash="everanimate-paper",
    horizons_s=DEFAULT_HORIZONS_S,
    citation=PAPER_CITATION,
    url="https://everanimate.github.io/homepage/",
)

REPORTED_SPLITS: tuple[ReportedSplit, ...] = (PAPER_SPLIT,)

#: The seed rows: the paper's Table 1 and Table 2.
REPORTED_CSV = Path(__file__).resolve().parent / "reported.csv"


# ---- cells ----------------------------------------------------------------------------------------
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_number(text: str) -> float | None:
    """A finite decimal number (``-1.5``, ``24.4``, ``1e-05``), else None. No ``nan``, ``inf``,
    ``0x..``, underscores or a leading ``+``."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_horizons(text: str) -> tuple[float, ...] | None:
    """``10;30;60;90`` as numbers, else None."""
    parts = text.split(";")
    values = [parse_number(part) for part in parts]
    return None if not parts or any(v is None for v in values) else tuple(values)  # type: ignore[misc]


def format_horizons(horizons: list[float] | tuple[float, ...]) -> str:
    return ";".join(f"{h:g}" for h in horizons)


# ---- reading ----------------------------------------------------------------------------------------
class MalformedFile(ValueError):
    """A file that is not a leaderboard CSV at all: one message for the whole file."""


@dataclass
class Table:
    """A CSV file's header and rows; ``numbers[i]`` is row ``i``'s row number as a spreadsheet shows
    it (the header is row 1). Rows with the wrong number of cells are in ``ragged``, not ``rows``."""

    path: str
    header: list[str]
    rows: list[dict[str, str]]
    numbers: list[int]
    ragged: list[tuple[int, int]]  # (row number, cells)
    schema_version: str = SCHEMA_VERSION  # the version the header is: "1.0" for a header without ADDED_IN_1_1


def read_table(path: str | Path) -> Table:
    """Read a leaderboard CSV; raise :class:`MalformedFile` with one clean message for a missing,
    oversized, binary or non-UTF-8 file, a file that is not CSV, or a header that is not the schema's."""
    path = Path(path)
    try:
        if path.is_dir():
            raise MalformedFile("is a folder, not a CSV file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MalformedFile(f"{size} bytes, larger than the {MAX_FILE_BYTES} bytes a leaderboard file may have")
        data = path.read_bytes()
    except OSError as exc:
        raise MalformedFile(f"cannot read it: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise MalformedFile("binary data (NUL bytes), not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedFile(f"not UTF-8 text (byte {exc.start}): not a CSV text file") from None
    if not text.strip():
        raise MalformedFile("empty: no header row")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise MalformedFile(f"not a valid CSV (near line {reader.line_num}): {exc}") from None
    header = records[0]
    older = sorted(header) == sorted(columns_1_0())
    if not older:
        check_header(header)
    rows, numbers, ragged = [], [], []
    for index, record in enumerate(records[1:], start=2):
        if not record:
            continue  # a blank line
        if len(record) != len(header):
            ragged.append((index, len(record)))
            continue
        row = dict(zip(header, record))
        if older:
            row.update(dict.fromkeys((c for c in columns() if c not in row), UNAVAILABLE))
        rows.append(row)
        numbers.append(index)
    return Table(str(path), list(columns()) if older else header, rows, numbers, ragged, "1.0" if older else SCHEMA_VERSION)


def check_header(header: list[str]) -> None:
    expected = columns()
    duplicated = sorted({c for c in header if header.count(c) > 1})
    missing = [c for c in expected if c not in header]
    unexpected = [c for c in header if c not in expected]
    if not duplicated and not missing and not unexpected:
        return
    if len(missing) == len(expected):
        raise MalformedFile(f"no leaderboard header (schema {SCHEMA_VERSION}): row 1 has none of its columns ({_listing(expected)})")
    parts = []
    if missing:
        parts.append(f"missing columns {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected columns {_listing([quote(c) for c in unexpected])}")
    if duplicated:
        parts.append(f"repeated columns {_listing([quote(c) for c in duplicated])}")
    raise MalformedFile(f"header is not the leaderboard schema {SCHEMA_VERSION}: {'; '.join(parts)}")


def _listing(items: list[str] | tuple[str, ...], most: int = 8) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def quote(text: str, most: int = 40) -> str:
    """A cell for a one-line message: repr (control characters escaped), shortened."""
    return repr(text if len(text) <= most else text[:most] + "...")


def write_table(path: str | Path, rows: list[dict[str, str]]) -> None:
    """Write rows with the schema's columns, atomically."""
    from benchmark.files import atomic_write_text
    from benchmark.results import csv_text

    atomic_write_text(path, csv_text(rows, columns()))
