"""Render leaderboard CSV files: ``python -m leaderboards.render [FILE.csv ...] --out DIR``.

Writes, after the files pass the validator (nothing is written otherwise):

- ``DIR/<split>-<horizon>s.md``: a Markdown table per split and horizon;
- ``DIR/index.html``: one static page (inline CSS and JavaScript, images as data URIs, a content
  security policy that forbids every network request) with a table per split and horizon, sortable
  by clicking a column header, each metric's better direction marked, standard errors shown, rows
  reported in papers in their own section, never ranked with the benchmark's rows; with ``--runs``,
  the runs' drift curves, and with ``--baseline``, their paired differences against the baseline.

The page reads ``#sort=COLUMN`` or ``#sort=COLUMN:asc|desc`` from its address and sorts every table
by that column on load (the better values first unless a direction is given). The CSV is untrusted:
every cell is escaped, and only ``http(s)://`` addresses become links.
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from benchmark.compare import (
    IncomparableRuns,
    RunRecords,
    check_comparable,
    format_difference,
    load_run_records,
    paired_differences,
    plot_comparison,
    run_labels,
)
from benchmark.errors import BenchmarkError
from benchmark.files import CLIP_ID_RULE, atomic_write_text, is_safe_clip_id
from benchmark.metrics.spec import METRICS, MetricSpec

from .schema import (
    REPORTED,
    REPORTED_CSV,
    SCHEMA_VERSION,
    STDERR_SUFFIX,
    UNAVAILABLE,
    column_metric,
    metric_columns,
)
from .validate import add_known_split_argument, known_splits_from, validate_files

_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Board:
    """The rows of one split at one horizon."""

    split: str
    split_version: str
    split_hash: str
    horizon_s: float
    reported: bool
    rows: list[dict[str, str]]
    # The split's name in file names and ids, with its hash when two versions of a split share a name.
    split_tag: str = ""

    @property
    def slug(self) -> str:
        return f"{self.split_tag or self.split}-{self.horizon_s:g}s"

    def metrics(self) -> list[str]:
        """Metric columns with a value in at least one row."""
        return [c for c in metric_columns() if any(row[c] != UNAVAILABLE for row in self.rows)]

    def unmeasured(self) -> list[str]:
        return [c for c in metric_columns() if c not in self.metrics()]

    def shared_citation(self) -> str | None:
        """The paper every row of a reported board cites, when they all cite the same one (it is then
        printed once, above the table, instead of in every row)."""
        citations = {row["paper_or_url"] for row in self.rows}
        return next(iter(citations)) if self.reported and len(citations) == 1 else None

    def columns(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        """The non-metric columns shown, before and after the metrics: those with a value in some row
        (a reported board's shared citation is shown once, not as a column)."""
        def shown(column: tuple[str, str, str]) -> bool:
            if column[0] == "paper_or_url" and self.shared_citation() is not None:
                return False
            return any(row[column[0]] != UNAVAILABLE for row in self.rows)

        return [c for c in LEADING_COLUMNS if shown(c)], [c for c in TRAILING_COLUMNS if shown(c)]


def boards(rows: list[dict[str, str]]) -> list[Board]:
    """Rows grouped by split (name and hash) and horizon: the benchmark's splits first (rows ranked by
    the first metric with values, better first), then reported splits (rows in file order)."""
    groups: dict[tuple[str, str, float], Board] = {}
    for row in rows:
        key = (row["split"], row["split_hash"], float(row["horizon_s"]))
        if key not in groups:
            groups[key] = Board(row["split"], row["split_version"], row["split_hash"], key[2], row["source"] == REPORTED, [])
        groups[key].rows.append(row)
    result = sorted(groups.values(), key=lambda b: (b.reported, b.split, b.split_hash, b.horizon_s))
    for board in result:
        if len({b.split_hash for b in result if b.split == board.split}) > 1:
            board.split_tag = f"{board.split}-{board.split_hash[:12]}"
        if not board.reported and board.metrics():
            board.rows = ranked(board.rows, board.metrics()[0])
    return result


def ranked(rows: list[dict[str, str]], column: str) -> list[dict[str, str]]:
    """Rows by ``column``, better values first, unavailable last."""
    spec = column_metric(column)
    measured = [r for r in rows if r[column] != UNAVAILABLE]
    measured.sort(key=lambda r: float(r[column]), reverse=spec.higher_is_better)
    return measured + [r for r in rows if r[column] == UNAVAILABLE]


# Non-metric columns of a board: (CSV column, header, kind); a column that is 'unavailable' in every
# row of a board is left out of its table.
LEADING_COLUMNS = (("method", "method", "text"), ("method_arguments", "arguments", "text"), ("weights_fingerprint", "weights", "text"))
TRAILING_COLUMNS = (
    ("num_clips", "clips", "number"), ("carry_over", "carry-over", "number"), ("sampling_steps", "steps", "number"),
    ("source", "source", "text"), ("submitter", "submitter", "text"), ("date", "date", "text"),
    ("paper_or_url", "paper or URL", "link"), ("notes", "notes", "text"),
)  # fmt: skip


# ---- cells --------------------------------------------------------------------------------------
def _decimals(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def metric_text(row: dict[str, str], column: str) -> tuple[str, str | None]:
    """``(value, standard error or None)`` as printed: runs at the metric's precision, reported
    numbers with the digits the paper printed; ``n/a`` for unavailable."""
    spec = column_metric(column)
    text, se = row[column], row[column + STDERR_SUFFIX]
    if text == UNAVAILABLE:
        return "n/a", None
    decimals = _decimals(text) if row["source"] == REPORTED else spec.decimals
    value = f"{float(text):.{decimals}f}"
    return value, (None if se == UNAVAILABLE else f"{float(se):.{decimals}f}")


def header_label(spec: MetricSpec) -> str:
    return spec.label + (f" ({spec.unit})" if spec.unit else "")


def arrow(spec: MetricSpec) -> str:
    return "↑" if spec.higher_is_better else "↓"


def _md(text: str) -> str:
    """A Markdown table cell: HTML-escaped, and the characters that would end the cell or start a
    link or code span backslash-escaped; line breaks become spaces."""
    text = html.escape(text, quote=False).replace("\r", " ").replace("\n", " ")
    return re.sub(r"([|\[\]`\\])", r"\\\1", text)


def _md_text(text: str) -> str:
    return "n/a" if text == UNAVAILABLE else _md(text)


def _linked(text: str) -> str:
    """Escaped text with its http(s) addresses as links."""
    parts, last = [], 0
    for match in _URL.finditer(text):
        parts.append(html.escape(text[last : match.start()]))
        url = html.escape(match.group(0), quote=True)
        parts.append(f'<a href="{url}" rel="noopener noreferrer">{url}</a>')
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


# ---- Markdown -------------------------------------------------------------------------------------
def markdown_board(board: Board) -> str:
    metrics = board.metrics()
    specs = [column_metric(c) for c in metrics]
    lines = [f"# {_md(board.split)} at {board.horizon_s:g} s", ""]
    if board.reported:
        lines.append(f"Reported in a paper on its own evaluation set (`{_md(board.split)}`), not on a split of this benchmark: "
                     "not comparable with, and never ranked together with, the benchmark's rows. The paper's numbers come from "
                     "its own evaluation code, whose metric implementations may differ from this benchmark's.")
        if board.shared_citation():
            lines += ["", f"Source: {_md(board.shared_citation())}"]
    else:
        lines.append(f"Split `{_md(board.split)}` version {_md(board.split_version)}, content hash `{_md(board.split_hash)}`; "
                     "ranked by the first metric column, better first.")
    lines += ["", "Values are the mean ± standard error over clips; ↑ higher is better, ↓ lower is better; n/a: unavailable.", ""]
    leading, trailing = board.columns()
    header = ([] if board.reported else ["#"]) + [label for _, label, _ in leading]
    header += [f"{header_label(s)} {arrow(s)}" for s in specs] + [label for _, label, _ in trailing]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for position, row in enumerate(board.rows, 1):
        cells = ([] if board.reported else [str(position)]) + [_md_text(row[key]) for key, _, _ in leading]
        for column in metrics:
            value, se = metric_text(row, column)
            cells.append(value if se is None else f"{value} ± {se}")
        cells += [_md_text(row[key]) for key, _, _ in trailing]
        lines.append("| " + " | ".join(cells) + " |")
    if board.unmeasured():
        lines += ["", "Unavailable in every row: " + ", ".join(column_metric(c).label for c in board.unmeasured()) + "."]
    return "\n".join(lines) + "\n"


# ---- HTML -----------------------------------------------------------------------------------------
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; } h3 { margin: 1.2em 0 .4em; }
table { border-collapse: collapse; margin: .3em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d6d6; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f2f2f4; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; } td.na { color: #888; text-align: center; }
.se { color: #666; font-size: .9em; } .dir { color: #06c; font-weight: bold; }
.args { font-family: ui-monospace, monospace; font-size: .85em; min-width: 14em; max-width: 24em; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.notes { max-width: 30em; font-size: .9em; }
section.reported { background: #fff8ec; border: 2px dashed #d9a441; padding: .2em 1em 1em; margin-top: 2.5em; }
section.reported h2 { border-color: #d9a441; }
.legend { background: #f6f6f8; padding: .6em 1em; border-radius: 4px; }
img.drift { max-width: 100%; border: 1px solid #ddd; }
"""

SCRIPT = """
(function () {
  "use strict";
  function cellKey(cell, type) {
    if (type === "number") {
      var v = cell.getAttribute("data-value");
      return v === null || v === "" ? null : parseFloat(v);
    }
    return (cell.textContent || "").trim().toLowerCase();
  }
  function sortTable(table, column, direction) {
    var heads = table.tHead.rows[0].cells, index = -1;
    for (var i = 0; i < heads.length; i++) { if (heads[i].getAttribute("data-key") === column) { index = i; } }
    if (index < 0) { return false; }
    var head = heads[index], type = head.getAttribute("data-type");
    if (direction !== "asc" && direction !== "desc") {
      direction = head.getAttribute("data-better") === "lower" || type !== "number" ? "asc" : "desc";
    }
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a.cells[index], type), y = cellKey(b.cells[index], type);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return direction === "asc" ? c : -c;
    });
    rows.forEach(function (row, position) {
      body.appendChild(row);
      var rank = row.querySelector("td.position");
      if (rank) { rank.textContent = String(position + 1); }
    });
    for (var j = 0; j < heads.length; j++) { heads[j].removeAttribute("aria-sort"); }
    head.setAttribute("aria-sort", direction === "asc" ? "ascending" : "descending");
    table.setAttribute("data-sorted", column + ":" + direction);
    return true;
  }
  function tables() { return Array.prototype.slice.call(document.querySelectorAll("table.sortable")); }
  function applyHash() {
    var match = /^#sort=([A-Za-z0-9_]+)(?::(asc|desc))?$/.exec(window.location.hash);
    if (!match) { return; }
    var sorted = 0;
    tables().forEach(function (table) { if (sortTable(table, match[1], match[2])) { sorted++; } });
    document.body.setAttribute("data-sort-applied", match[1] + ":" + (match[2] || "better") + ":" + sorted);
  }
  tables().forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (head) {
      var key = head.getAttribute("data-key");
      if (!key || key === "position") { return; }
      head.addEventListener("click", function () {
        var current = table.getAttribute("data-sorted") || "";
        var flip = current.indexOf(key + ":") === 0 ? (current.slice(key.length + 1) === "asc" ? "desc" : "asc") : null;
        sortTable(table, key, flip);
      });
    });
  });
  window.addEventListener("hashchange", applyHash);
  applyHash();
  document.body.setAttribute("data-ready", "true");
})();
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

def _th(key: str, label: str, kind: str, title: str = "", better: str | None = None) -> str:
    attributes = f' data-key="{html.escape(key)}" data-type="{kind}"'
    if better:
        attributes += f' data-better="{better}"'
    if title:
        attributes += f' title="{html.escape(title, quote=True)}"'
    return f"<th{attributes}>{label}</th>"


def _text_cell(row: dict[str, str], key: str, kind: str) -> str:
    text = row[key]
    if kind == "number":
        number = "" if text == UNAVAILABLE else text
        return f'<td class="num" data-value="{html.escape(number, quote=True)}">{html.escape(number or "n/a")}</td>'
    if kind == "link":
        return f'<td class="notes">{_linked(text)}</td>'
    css = {"method": "method", "notes": "notes"}.get(key, "args" if key in ("method_arguments", "weights_fingerprint") else "")
    return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"


def html_board(board: Board) -> str:
    """One sortable table: a header cell per column (metric headers with their better direction and
    description), a row per leaderboard row, numbers in ``data-value`` for sorting."""
    metrics = board.metrics()
    leading, trailing = board.columns()
    head = [] if board.reported else [_th("position", "#", "number", "position in the current order")]
    head += [_th(key, html.escape(label), "number" if kind == "number" else "text") for key, label, kind in leading]
    for column in metrics:
        spec = column_metric(column)
        direction = "higher" if spec.higher_is_better else "lower"
        label = f'{html.escape(header_label(spec))} <span class="dir" title="{direction} is better">{arrow(spec)}</span>'
        head.append(_th(column, label, "number", f"{spec.description}; {direction} is better", direction))
    head += [_th(key, html.escape(label), "number" if kind == "number" else "text") for key, label, kind in trailing]
    body = []
    for position, row in enumerate(board.rows, 1):
        cells = [] if board.reported else [f'<td class="num position">{position}</td>']
        cells += [_text_cell(row, key, kind) for key, _, kind in leading]
        for column in metrics:
            value, se = metric_text(row, column)
            if row[column] == UNAVAILABLE:
                cells.append('<td class="na">n/a</td>')
                continue
            se_html = "" if se is None else f'<span class="se"> ± {html.escape(se)}</span>'
            cells.append(f'<td class="num" data-value="{html.escape(row[column], quote=True)}">{html.escape(value)}{se_html}</td>')
        cells += [_text_cell(row, key, kind) for key, _, kind in trailing]
        body.append(f'<tr data-method="{html.escape(row["method"], quote=True)}">' + "".join(cells) + "</tr>")
    table_id = html.escape(("reported-" if board.reported else "board-") + board.slug, quote=True)
    classes = "board sortable" + (" reported" if board.reported else "")
    unmeasured = board.unmeasured()
    note = f'<p class="se">Unavailable in every row: {html.escape(", ".join(column_metric(c).label for c in unmeasured))}.</p>' if unmeasured else ""
    return (
        f'<h3>{board.horizon_s:g} s</h3>\n<div class="scroll"><table id="{table_id}" class="{classes}" data-split="{html.escape(board.split, quote=True)}" '
        f'data-horizon="{board.horizon_s:g}">\n<thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n' + "\n".join(body) + f"\n</tbody>\n</table></div>\n{note}"
    )


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def drift_images(runs: list[RunRecords], folders: list[Path], out: Path, split: str) -> list[tuple[str, str]]:
    """``(caption, data URI)`` of the runs' drift curves on one split: one overlay when the runs are
    comparable (also written to ``out/drift-<split>.png``), else each run's own ``drift.png``."""
    keyed = {str(folder): records.results for folder, records in zip(folders, runs)}
    try:
        check_comparable(keyed)
        path = out / f"drift-{split}.png"
        plot_comparison(path, keyed)
        return [(f"{split}: every run's drift per 1-s window (mean over clips, standard-error band)", _png_uri(path.read_bytes()))]
    except (IncomparableRuns, ValueError) as exc:
        images = []
        labels = run_labels(keyed)
        for folder, key in zip(folders, keyed):
            png = folder / "drift.png"
            if png.is_file() and png.read_bytes()[:8] == PNG_MAGIC:
                images.append((f"{labels[key]} on {split} (runs not overlaid: {exc})", _png_uri(png.read_bytes())))
        return images


def html_paired(records: list[RunRecords], baseline: RunRecords) -> str:
    """Tables of every run's paired differences against ``baseline``, a row per run and horizon."""
    metrics = tuple(m for m in METRICS if METRICS[m].drift)
    comparisons = [paired_differences(r, baseline, metrics) for r in records]
    present = [m for m in metrics if any(row.mean is not None for c in comparisons for row in c.horizons if row.metric == m)]
    if not comparisons or not present:
        return ""
    head = "<th>method</th><th>horizon</th>" + "".join(
        f'<th>{html.escape(METRICS[m].label)} <span class="dir">{arrow(METRICS[m])}</span></th>' for m in present)
    rows = []
    for comparison in comparisons:
        for horizon in sorted({row.horizon_s for row in comparison.horizons}):
            cells = "".join(f'<td class="num">{html.escape(format_difference(m, comparison.at(m, horizon)))}</td>' for m in present)
            rows.append(f"<tr><td>{html.escape(comparison.method)}</td><td>{horizon:g} s</td>{cells}</tr>")
    baseline_label = html.escape(comparisons[0].baseline)
    return (
        f'<h3>Paired differences against {baseline_label}</h3>\n<p>Per clip, the run minus {baseline_label}; mean over clips ± standard error '
        "[clips whose difference has the mean's sign / clips].</p>\n"
        f'<table class="paired"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>\n"
    )


def html_page(all_boards: list[Board], sources: list[str], extras: dict[str, str]) -> str:
    """The page: the benchmark's splits, then the reported section; ``extras`` adds HTML (drift
    plots, paired differences) after a split's tables."""
    parts = [
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>everanimate-bench leaderboard</title>\n',
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>everanimate-bench leaderboard</h1>\n",
        (
            '<div class="legend"><p>One table per split and horizon; values are the mean ± standard error over clips, '
            "<b>↑</b> higher is better, <b>↓</b> lower is better, n/a: unavailable (not measured). Click a column header to sort "
            "(better values first; click again to reverse), or open the page with <code>#sort=COLUMN</code> in its address. "
            "Rows reported in papers are in their own section: they come from another evaluation set and are never ranked with "
            "the benchmark's rows.</p>"
        ),
        f"<p>Leaderboard schema {SCHEMA_VERSION}; from {html.escape(', '.join(sources))}.</p></div>\n",
    ]
    ours = [b for b in all_boards if not b.reported]
    sections = list(dict.fromkeys([*((b.split, b.split_tag or b.split) for b in ours), *((name, name) for name in extras)]))
    if not sections:
        parts.append('<section class="benchmark"><h2>Benchmark splits</h2><p>No rows of the benchmark\'s splits yet.</p></section>\n')
    shown: set[str] = set()
    for split, tag in sections:
        members = [b for b in ours if (b.split_tag or b.split) == tag]
        if not members and split in shown:
            continue
        identity = f" <span class=\"se\">(version {html.escape(members[0].split_version)}, content hash {html.escape(members[0].split_hash)})</span>" if members else ""
        parts.append(f'<section class="benchmark" id="split-{html.escape(tag, quote=True)}">\n<h2>Split {html.escape(split)}{identity}</h2>\n')
        if not members:
            parts.append("<p>No leaderboard rows of this split in the files rendered.</p>\n")
        parts += [html_board(b) for b in members]
        if split not in shown:
            parts.append(extras.get(split, ""))
        shown.add(split)
        parts.append("</section>\n")
    reported = [b for b in all_boards if b.reported]
    if reported:
        parts.append('<section class="reported" id="reported">\n<h2>Reported in papers: another evaluation set, not ranked with the rows above</h2>\n')
        for split in dict.fromkeys(b.split for b in reported):
            members = [b for b in reported if b.split == split]
            citations = dict.fromkeys(b.shared_citation() for b in members if b.shared_citation())
            parts.append(f"<h3>{html.escape(split)}</h3>\n" + "".join(f"<p>{_linked(c)}</p>\n" for c in citations))
            parts.append("<p>The paper's numbers, from its own evaluation code on its own videos; its metric implementations may "
                         "differ from this benchmark's.</p>\n")
            parts += [html_board(b) for b in members]
        parts.append("</section>\n")
    parts.append(f"<script>{SCRIPT}</script>\n</body>\n</html>\n")
    return "".join(parts)


def render(rows: list[dict[str, str]], out: Path, sources: list[str], runs: tuple | list = (), baseline: Path | None = None) -> list[Path]:
    """Write the Markdown tables and the page (with the drift curves of ``runs`` and their paired
    differences against ``baseline``, when given); return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    all_boards = boards(rows)
    written = []
    for board in all_boards:
        path = out / f"{board.slug}.md"
        atomic_write_text(path, markdown_board(board))
        written.append(path)
    extras: dict[str, str] = {}
    folders = list(dict.fromkeys(Path(r) for r in runs))
    records = [load_run_records(folder) for folder in folders]
    base = load_run_records(baseline) if baseline is not None else None
    for folder, record in zip(folders, records):
        if not is_safe_clip_id(record.results.split["name"]):
            raise ValueError(f"{folder}: split name {record.results.split['name']!r} is not safe as a file name ({CLIP_ID_RULE})")
    for split in dict.fromkeys(r.results.split["name"] for r in records):
        chosen = [(f, r) for f, r in zip(folders, records) if r.results.split["name"] == split]
        figures = drift_images([r for _, r in chosen], [f for f, _ in chosen], out, split)
        text = "".join(f'<figure><img class="drift" alt="{html.escape(c, quote=True)}" src="{uri}"><figcaption>{html.escape(c)}</figcaption></figure>\n'
                       for c, uri in figures)
        if base is not None and base.results.split["name"] == split:
            others = [r for f, r in chosen if f.resolve() != Path(baseline).resolve()]
            try:
                check_comparable({str(i): r.results for i, r in enumerate([base, *others])})
                text += html_paired(others, base)
            except IncomparableRuns as exc:
                text += f"<p>No paired differences: {html.escape(str(exc))}</p>\n"
        if text:
            extras[split] = "<h3>Drift and paired differences</h3>\n" + text
    page = out / "index.html"
    atomic_write_text(page, html_page(all_boards, sources, extras))
    return written + [page]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboards.render", description=__doc__.split("\n\n")[0].split(": ")[0] + ".")
    parser.add_argument("files", nargs="*", type=Path, help=f"leaderboard CSV files (the paper's rows, {REPORTED_CSV.name}, are always added)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for index.html and the Markdown tables")
    parser.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="run folders whose drift curves the page shows")
    parser.add_argument("--baseline", type=Path, help="with --runs: also show each run's paired differences against this run")
    parser.add_argument("--no-reported", action="store_true", help=f"leave out {REPORTED_CSV.name}")
    add_known_split_argument(parser)
    args = parser.parse_args(argv)
    files = list(args.files)
    if not args.no_reported and not any(f.resolve() == REPORTED_CSV for f in files if f.exists()):
        files.append(REPORTED_CSV)
    if not files:
        parser.error("no files to render")
    try:
        known = known_splits_from(args.known_split)
    except (BenchmarkError, OSError, ValueError) as exc:
        print(f"error: --known-split: {exc}", file=sys.stderr)
        return 2
    tables, problems = validate_files(files, known)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"nothing rendered: {len(problems)} problems (python -m leaderboards.validate lists the same)", file=sys.stderr)
        return 2
    rows = [row for table in tables for row in table.rows]
    runs = list(args.runs) + ([str(args.baseline)] if args.baseline is not None and str(args.baseline) not in args.runs else [])
    try:
        written = render(rows, args.out, [str(f) for f in files], runs, args.baseline)
    except (BenchmarkError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {args.out} ({len(rows)} rows): {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
