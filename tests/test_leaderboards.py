"""Leaderboards: finished runs -> submit -> validate -> render, every validation failure on a bad CSV,
the paper's reported rows, escaping of untrusted cells, and the rendered page in a headless browser."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmark import run as run_cli
from benchmark.compare import load_run
from benchmark.metrics.spec import METRICS
from benchmark.results import csv_columns
from leaderboards import render, submit, validate
from leaderboards.schema import (
    METRIC_RANGES,
    PAPER_SPLIT,
    PSNR_CAP_DB,
    REPORTED_CSV,
    SHIPPED_SPLITS,
    UNAVAILABLE,
    columns,
    metric_columns,
    stderr_columns,
)

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = ["--metrics", "psnr,ssim", "--no-progress"]
REGION_COLUMNS = ("background_psnr", "background_ssim", "person_psnr", "person_ssim")
METHODS = ("ground-truth", "reference-copy")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_split_dir):
    root = tmp_path_factory.mktemp("leaderboard_runs")
    for method in METHODS:
        args = ["--method", method, "--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "4", "--out", str(root / method), *FAST]
        assert run_cli.main(args) == 0
    return root


@pytest.fixture(scope="module")
def known(tiny_split_dir):
    splits = validate.KnownSplits()
    splits.add(str(tiny_split_dir))
    return splits


@pytest.fixture(scope="module")
def board(runs, tiny_split_dir, tmp_path_factory):
    """A valid leaderboard CSV of both runs."""
    out = tmp_path_factory.mktemp("board") / "board.csv"
    args = [*(str(runs / m) for m in METHODS), "--out", str(out), "--known-split", str(tiny_split_dir), "--source", "reproduced", "--submitter", "ci"]
    assert submit.main(args) == 0
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or list(columns()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---- end to end ------------------------------------------------------------------------------------
def test_runs_submit_validate_render(runs, board, tiny_split_dir, tmp_path, capsys):
    rows = read_rows(board)
    assert list(rows[0]) == list(columns())
    assert [(r["method"], r["horizon_s"]) for r in rows] == [(m, h) for m in METHODS for h in ("2", "4")]
    for row in rows:
        results = load_run(runs / row["method"])
        horizon = float(row["horizon_s"])
        for metric in ("psnr", "ssim"):
            record = results.record(metric, horizon)
            assert float(row[metric]) == record.value and float(row[metric + "_se"]) == record.stderr
        for column in metric_columns():
            if column not in ("psnr", "ssim"):  # not measured: marked, never empty or 0
                assert row[column] == UNAVAILABLE and row[column + "_se"] == UNAVAILABLE
        assert row["protocol_hash"] == results.protocol_hash and row["split_hash"] == results.split["content_hash"]
        assert (row["source"], row["submitter"], row["method_arguments"], row["weights_fingerprint"]) == ("reproduced", "ci", "{}", "none")
        assert row["date"] == results.created_utc[:10] and row["run_horizons_s"] == "2;4"
        # the summary.csv columns are the run's own summary rows
        summary = next(r for r in read_rows(runs / row["method"] / "summary.csv") if r["horizon_s"] == row["horizon_s"])
        assert all(row[c] == (summary[c] or UNAVAILABLE) for c in csv_columns())
    assert rows[0]["psnr"] == repr(PSNR_CAP_DB)  # ground truth hits the cap

    assert validate.main([str(board), "--known-split", str(tiny_split_dir)]) == 0
    assert "4 rows: valid" in capsys.readouterr().out
    out = tmp_path / "site"
    args = [str(board), "--out", str(out), "--known-split", str(tiny_split_dir), "--runs", *(str(runs / m) for m in METHODS), "--baseline", str(runs / "reference-copy")]
    assert render.main(args) == 0
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "tiny-2s.md", "tiny-4s.md", "drift-tiny.png"} <= names
    assert {f"everanimate-paper-{h}s.md" for h in (10, 30, 60, 90)} <= names  # the paper's rows, always added
    markdown = (out / "tiny-2s.md").read_text()
    assert "| # | method | arguments | weights | PSNR (dB) ↑ | SSIM ↑ |" in markdown
    assert "| 1 | ground-truth |" in markdown and "| 2 | reference-copy |" in markdown
    page = (out / "index.html").read_text()
    for table in ("board-tiny-2s", "board-tiny-4s", "reported-everanimate-paper-60s"):
        assert f'id="{table}"' in page
    assert "data:image/png;base64," in page and "Paired differences against reference-copy" in page
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(?!data:)", page)  # nothing to fetch at view time


def test_validator_accepts_only_the_shipped_splits_unless_told(board, capsys):
    assert validate.main([str(board)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all("column split_hash: unknown split hash" in line for line in err)


def test_submit_refuses_a_limited_run_and_writes_nothing(runs, tiny_split_dir, tmp_path, capsys):
    limited = tmp_path / "limited"
    shutil.copytree(runs / "reference-copy", limited, ignore=shutil.ignore_patterns("videos", "work"))
    data = json.loads((limited / "results.json").read_text())
    data["limit"] = 1
    (limited / "results.json").write_text(json.dumps(data))
    out = tmp_path / "board.csv"
    assert submit.main([str(limited), "--out", str(out), "--known-split", str(tiny_split_dir)]) == 2
    err = capsys.readouterr().err
    assert "column limited: a --limit run" in err and "nothing written" in err
    assert not out.exists()
    assert submit.main([str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_submit_appends_and_refuses_duplicates(runs, tiny_split_dir, tmp_path, capsys):
    out = tmp_path / "board.csv"
    common = ["--out", str(out), "--known-split", str(tiny_split_dir)]
    assert submit.main([str(runs / "ground-truth"), *common]) == 0
    assert submit.main([str(runs / "reference-copy"), *common, "--append"]) == 0
    assert len(read_rows(out)) == 4
    before = out.read_bytes()
    assert submit.main([str(runs / "reference-copy"), *common, "--append"]) == 2
    assert "duplicates row 4" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_render_refuses_an_invalid_file(board, tmp_path, capsys):
    rows = read_rows(board)
    rows[0]["psnr"] = ""
    bad = write_rows(tmp_path / "bad.csv", rows)
    assert render.main([str(bad), "--out", str(tmp_path / "site")]) == 2
    assert "nothing rendered" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


# ---- one test per validation failure -----------------------------------------------------------------
BAD_CELLS = {
    "empty metric": ({"lpips": ""}, "lpips", "empty cell"),
    "empty text": ({"notes": ""}, "notes", "empty cell"),
    "PSNR above the cap": ({"psnr": "100.5"}, "psnr", f"outside [0, {PSNR_CAP_DB:g}]"),
    "negative PSNR": ({"psnr": "-3"}, "psnr", f"outside [0, {PSNR_CAP_DB:g}]"),
    "SSIM above 1": ({"ssim": "1.2"}, "ssim", "outside [-1, 1]"),
    "negative distance": ({"lpips": "-0.1"}, "lpips", "outside >= 0"),
    "negative standard error": ({"psnr_se": "-0.5"}, "psnr_se", "never negative"),
    "text in a metric": ({"ssim": "high"}, "ssim", "expected a number or 'unavailable'"),
    "NaN": ({"psnr": "nan"}, "psnr", "expected a number"),
    "white space": ({"psnr": " 20"}, "psnr", "white space"),
    "standard error without a value": ({"lpips_se": "0.1"}, "lpips_se", "without a value"),
    "standard error of a pooled metric": ({"fid": "12.5", "fid_se": "1.0"}, "fid_se", "pooled over all clips"),
    "horizon not whole seconds": ({"horizon_s": "2.5"}, "horizon_s", "not a whole number"),
    "horizon longer than the clips": ({"horizon_s": "20", "run_horizons_s": "2;20"}, "horizon_s", "longer than the shortest clip"),
    "horizon the run did not evaluate": ({"horizon_s": "3"}, "horizon_s", "not among the run's horizons"),
    "fractional count": ({"num_clips": "2.0"}, "num_clips", "whole number"),
    "unknown split hash": ({"split_hash": "0123456789abcdef"}, "split_hash", "unknown split hash"),
    "split name of another split": ({"split": "synthetic"}, "split", "is split 'tiny'"),
    "unknown protocol hash": ({"protocol_hash": "ffffffffffffffff"}, "protocol_hash", "unknown protocol hash"),
    "protocol settings that do not give the hash": ({"sampling_steps": "4"}, "protocol_hash", "unknown protocol hash"),
    "--limit run": ({"limited": "true"}, "limited", "a --limit run"),
    "failed clips": ({"failed_clips": "1"}, "failed_clips", "1 failed clips"),
    "formula =": ({"notes": '=HYPERLINK("http://example.org")'}, "notes", "formula"),
    "formula +": ({"submitter": "+1 555 0100"}, "submitter", "formula"),
    "formula -": ({"notes": "-2+3"}, "notes", "formula"),
    "formula @": ({"paper_or_url": "@SUM(A1:A9)"}, "paper_or_url", "formula"),
    "formula behind a tab": ({"notes": "\t=1+1"}, "notes", "control character"),
    "id with ..": ({"method": "../escape"}, "method", "not safe as a file name"),
    "id with a path separator": ({"method": "a/b"}, "method", "not safe as a file name"),
    "id with a control character": ({"method": "a\x07b"}, "method", "control character"),
    "unknown source": ({"source": "scraped"}, "source", "not one of reproduced, reported, submitted"),
    "reported row on a benchmark split": ({"source": "reported"}, "split", "declared paper split"),
    "run row on the paper's split": (
        {"split": PAPER_SPLIT.name, "split_version": PAPER_SPLIT.version, "split_hash": PAPER_SPLIT.content_hash}, "split", "only source=reported"),
    "bad date": ({"date": "01/12/2026"}, "date", "YYYY-MM-DD"),
    "arguments not JSON": ({"method_arguments": "lora=stage1"}, "method_arguments", "JSON object"),
    "bad weights fingerprint": ({"weights_fingerprint": "weights=xyz"}, "weights_fingerprint", "name=hexdigest"),
    "other schema version": ({"schema_version": "2.0"}, "schema_version", "reads schema 1.0 and 1.1"),
    "version unlike the header": ({"schema_version": "1.0"}, "schema_version", "in a file whose header is schema 1.1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CELLS))
def test_each_bad_cell_is_one_located_problem(case, board, known, tmp_path):
    changes, column, message = BAD_CELLS[case]
    rows = read_rows(board)
    rows[1].update(changes)  # row 3 of the file: the header is row 1
    path = write_rows(tmp_path / "bad.csv", rows)
    _, problems = validate.validate_files([path], known)
    assert problems, case
    assert all(p.file == str(path) and p.row == 3 for p in problems), [str(p) for p in problems]
    hits = [p for p in problems if p.column == column and message in p.message]
    assert hits, [str(p) for p in problems]
    assert str(hits[0]).startswith(f"{path}: row 3, column {column}: ")
    assert all("\n" not in str(p) and "\x07" not in str(p) for p in problems)


def test_cli_prints_one_line_per_problem_and_exits_2(board, tiny_split_dir, tmp_path, capsys):
    rows = read_rows(board)
    rows[0]["psnr"], rows[2]["notes"] = "", "=1+1"
    path = write_rows(tmp_path / "bad.csv", rows)
    assert validate.main([str(path), "--known-split", str(tiny_split_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{path}: row 2, column psnr: empty cell: give the value, or 'unavailable' if it was not measured (never leave it empty or write 0)",
        f"{path}: row 4, column notes: '=1+1' starts with '=': a spreadsheet would evaluate it as a formula",
    ]


def test_a_schema_1_0_file_reads_with_its_region_cells_unavailable(board, known, tmp_path):
    from leaderboards.schema import columns_1_0, read_table

    rows = [{c: v for c, v in row.items() if c in columns_1_0()} | {"schema_version": "1.0"} for row in read_rows(board)]
    path = write_rows(tmp_path / "v1_0.csv", rows, header=list(columns_1_0()))
    tables, problems = validate.validate_files([path], known)
    assert problems == []
    table = read_table(path)
    assert table.header == list(columns())
    assert {row[f"{c}{s}"] for row in table.rows for c in REGION_COLUMNS for s in ("", "_se")} == {"unavailable"}
    assert all(row["psnr"] == original["psnr"] for row, original in zip(table.rows, read_rows(board)))

    rows[0]["schema_version"] = "0.9"
    assert [p.message for p in validate.validate_files([write_rows(tmp_path / "v0_9.csv", rows, header=list(columns_1_0()))], known)[1]] == [
        "'0.9': this validator reads schema 1.0 and 1.1"
    ]
    partly = [{c: v for c, v in row.items() if c != "person_psnr"} for row in read_rows(board)]
    with pytest.raises(Exception, match="missing columns person_psnr"):
        read_table(write_rows(tmp_path / "partly.csv", partly, header=[c for c in columns() if c != "person_psnr"]))


def test_negative_numbers_in_numeric_columns_are_numbers(board, known, tmp_path):
    rows = read_rows(board)
    rows[1]["ssim"], rows[2]["ssim"] = "-0.25", "-1e-3"
    path = write_rows(tmp_path / "negative.csv", rows)
    assert validate.validate_files([path], known)[1] == []


def test_duplicate_rows_within_and_across_files(board, known, tmp_path):
    rows = read_rows(board)
    within = write_rows(tmp_path / "within.csv", [*rows, rows[1]])
    problems = validate.validate_files([within], known)[1]
    assert [(p.row, p.message.split(" (")[0]) for p in problems] == [(6, "duplicates row 3")]
    other = write_rows(tmp_path / "other.csv", rows[:1])
    problems = validate.validate_files([board, other], known)[1]
    assert [str(p).split(" (")[0] for p in problems] == [f"{other}: row 2: duplicates row 2 of {board}"]


def _csv_text(board: Path, drop_header: bool = False) -> bytes:
    lines = board.read_text().splitlines(keepends=True)
    return "".join(lines[1:] if drop_header else lines).encode()


MALFORMED = {
    "binary": (lambda board: bytes(range(256)) * 4, "binary data"),
    "not UTF-8": (lambda board: b"method,split\n\xff\xfe,\xfa\n", "not UTF-8"),
    "empty": (lambda board: b"", "empty: no header row"),
    "no header": (lambda board: _csv_text(board, drop_header=True), "no leaderboard header"),
    "wrong columns": (lambda board: _csv_text(board).replace(b",notes,", b",remarks,", 1), "missing columns notes; unexpected columns 'remarks'"),
    "repeated column": (lambda board: _csv_text(board).replace(b",notes,", b",date,", 1), "repeated columns 'date'"),
    "broken quoting": (lambda board: _csv_text(board) + b'"unterminated,cell\n', "not a valid CSV"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_file_is_one_clean_line(case, board, tmp_path, capsys):
    make, message = MALFORMED[case]
    path = tmp_path / "malformed.csv"
    path.write_bytes(make(board))
    assert validate.main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}: ") and message in err[0], err


def test_missing_files_folders_and_ragged_rows(board, known, tmp_path, capsys):
    assert validate.main([str(tmp_path / "absent.csv"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot read it" in err[0] and "is a folder" in err[1]
    ragged = tmp_path / "ragged.csv"
    ragged.write_bytes(_csv_text(board) + b"tiny,row\n")
    problems = validate.validate_files([ragged], known)[1]
    assert [str(p) for p in problems] == [f"{ragged}: row 6: 2 cells, the header has {len(columns())}"]
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(columns()) + "\n")
    assert [p.message for p in validate.validate_files([header_only], known)[1]] == ["no rows after the header"]


# ---- the schema and the reported rows -------------------------------------------------------------------
def test_schema_extends_the_summary_columns():
    assert columns()[: len(csv_columns())] == csv_columns()
    assert stderr_columns() == tuple(c + "_se" for c in metric_columns())
    assert set(METRIC_RANGES) == set(METRICS)  # a new metric needs a range
    assert all(isinstance(spec.higher_is_better, bool) for spec in METRICS.values())


def test_shipped_split_records_match_the_registry():
    from benchmark.splits.registry import resolve_split
    from benchmark.splits.synthetic.cache import split_folder
    from benchmark.splits.synthetic.spec import SPLITS

    assert {s.name for s in SHIPPED_SPLITS} == set(SPLITS)
    for record in SHIPPED_SPLITS:
        spec = SPLITS[record.name]
        assert (record.version, record.width, record.height, record.fps) == (spec.version, spec.width, spec.height, spec.fps)
        assert record.shortest_seconds == spec.num_frames / spec.fps
    # The test split's hash is checked against the split itself (cached by the other tests); the
    # 48-clip train split only when it is already rendered.
    assert resolve_split("synthetic").content_hash == SHIPPED_SPLITS[0].content_hash
    if (split_folder("synthetic-train") / "manifest.json").exists():
        assert resolve_split("synthetic-train", verify="none").content_hash == SHIPPED_SPLITS[1].content_hash


# The paper's Table 1 (method, horizon: PSNR, SSIM, LPIPS, FID, V-MAE, F-PSNR) and Table 2 (at 60 s:
# PSNR, SSIM, LPIPS), a few rows as printed.
PAPER_ROWS = {
    ("one-to-all", "10"): ("20.730", "0.824", "0.268", "55.969", "0.041", "16.311"),
    ("scail", "90"): ("11.048", "0.349", "0.602", "186.992", "0.037", "9.937"),
    ("wan-animate", "30"): ("21.907", "0.787", "0.241", "40.809", "0.039", "16.426"),
    ("everanimate", "60"): ("23.857", "0.855", "0.194", "26.241", "0.027", "16.927"),
    ("everanimate-ablation-baseline", "60"): ("18.472", "0.543", "0.386", UNAVAILABLE, UNAVAILABLE, UNAVAILABLE),
    ("everanimate-without-rfm", "60"): ("21.842", "0.781", "0.273", UNAVAILABLE, UNAVAILABLE, UNAVAILABLE),
}


def test_reported_rows_are_the_papers_tables(capsys):
    assert validate.main([str(REPORTED_CSV)]) == 0
    capsys.readouterr()
    rows = read_rows(REPORTED_CSV)
    assert len(rows) == 6 * 4 + 4
    assert {(r["source"], r["split"], r["split_hash"], r["protocol_hash"]) for r in rows} == {
        ("reported", PAPER_SPLIT.name, PAPER_SPLIT.content_hash, PAPER_SPLIT.protocol_hash)
    }
    assert all(PAPER_SPLIT.url in r["paper_or_url"] and "EverAnimate" in r["paper_or_url"] for r in rows)
    by_key = {(r["method"], r["horizon_s"]): r for r in rows}
    for key, values in PAPER_ROWS.items():
        assert tuple(by_key[key][c] for c in ("psnr", "ssim", "lpips", "fid", "vmae", "f_psnr")) == values
    for row in rows:  # metrics the paper does not report, and every standard error
        assert all(row[c] == UNAVAILABLE for c in ("fvd_videomae", "seam", "identity", *REGION_COLUMNS, *stderr_columns()))
    assert PAPER_SPLIT.content_hash not in {s.content_hash for s in SHIPPED_SPLITS}


# ---- untrusted cells ------------------------------------------------------------------------------------
def test_untrusted_text_is_escaped_in_the_page_and_the_markdown(board, tiny_split_dir, tmp_path):
    rows = read_rows(board)
    rows[0]["notes"] = "<script>alert(1)</script> | [x](javascript:alert(2))"
    rows[0]["submitter"] = '<img src=x onerror="alert(3)">'
    rows[0]["paper_or_url"] = 'javascript:alert(4) https://example.org/p?a=1&b=2"><b>'
    path = write_rows(tmp_path / "hostile.csv", rows)
    out = tmp_path / "site"
    assert render.main([str(path), "--out", str(out), "--known-split", str(tiny_split_dir), "--no-reported"]) == 0
    page = (out / "index.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "javascript:alert(4)</a>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=&quot;alert(3)&quot;&gt;" in page
    assert '<a href="https://example.org/p?a=1&amp;b=2" rel="noopener noreferrer">' in page
    assert page.count("<script>") == 1  # the page's own
    markdown = (out / "tiny-2s.md").read_text()
    assert "&lt;script&gt;" in markdown and "\\| \\[x\\](javascript:alert(2))" in markdown and "<img" not in markdown


# ---- the page in a headless browser --------------------------------------------------------------------
class _Tables(HTMLParser):
    """Row order (``data-method``) of every table, by id, and the body's attributes."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[str]] = {}
        self.classes: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._current = attrs["id"]
            self.tables[self._current] = []
            self.classes[self._current] = attrs.get("class", "")
        elif tag == "tr" and self._current and "data-method" in attrs:
            self.tables[self._current].append(attrs["data-method"])
        elif tag == "body":
            self.body = {k: v or "" for k, v in attrs.items()}

    def handle_endtag(self, tag):
        if tag == "table":
            self._current = None


@pytest.fixture(scope="session")
def browser() -> str:
    """The Chromium executable; the browser test skips, before any run is made, where there is none."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian: apt-get install chromium); the rendered page is not tested in a browser")


def browse(browser: str, page: Path, fragment: str, profile: Path, screenshot: Path | None = None) -> _Tables:
    """The DOM of ``page#fragment`` after its script ran (``--dump-dom``), or a screenshot."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=3000", "--window-size=1400,1800"]  # fmt: skip
    command += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    try:
        done = subprocess.run([*command, page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=90, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not run here: {exc}")
    if done.returncode != 0 and (screenshot is None or not screenshot.exists()):
        pytest.skip(f"chromium could not run here (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    parser = _Tables()
    parser.feed(done.stdout)
    return parser


def test_rendered_page_sorts_in_a_headless_browser(browser, board, tiny_split_dir, tmp_path):
    out = tmp_path / "site"
    assert render.main([str(board), "--out", str(out), "--known-split", str(tiny_split_dir)]) == 0
    page, profile = out / "index.html", tmp_path / "profile"

    shot = tmp_path / "page.png"
    browse(browser, page, "", profile, shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    plain = browse(browser, page, "", profile)
    assert plain.body.get("data-ready") == "true"  # the script ran
    assert plain.tables["board-tiny-2s"] == ["ground-truth", "reference-copy"]  # ranked by PSNR, higher first
    reported = [t for t in plain.tables if t.startswith("reported-")]
    assert sorted(reported) == sorted(f"reported-everanimate-paper-{h}s" for h in (10, 30, 60, 90))
    assert all("reported" in plain.classes[t] for t in reported) and not any("reported" in plain.classes[t] for t in plain.tables if t.startswith("board-"))
    assert not {"one-to-all", "everanimate"} & set(plain.tables["board-tiny-2s"])  # the paper's rows never join our tables
    assert plain.tables["reported-everanimate-paper-10s"][0] == "one-to-all"  # in the paper's order until sorted

    worst_first = browse(browser, page, "#sort=psnr:asc", profile)
    assert worst_first.body.get("data-sort-applied", "").startswith("psnr:asc")
    assert worst_first.tables["board-tiny-2s"] == ["reference-copy", "ground-truth"]
    assert worst_first.tables["reported-everanimate-paper-10s"][0] == "scail"  # lowest PSNR at 10 s, 19.602

    by_lpips = browse(browser, page, "#sort=lpips", profile)  # lower is better: best first
    assert by_lpips.tables["reported-everanimate-paper-10s"][:2] == ["everanimate", "unianimate-dit"]  # 0.169, 0.192
    assert by_lpips.tables["reported-everanimate-paper-10s"] != plain.tables["reported-everanimate-paper-10s"]
    by_method = browse(browser, page, "#sort=method", profile)
    assert by_method.tables["reported-everanimate-paper-60s"] == sorted(by_method.tables["reported-everanimate-paper-60s"])
    assert html.escape("#sort=COLUMN") in page.read_text()
