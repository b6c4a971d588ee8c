# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # EverAnimate ablation: Table 2 and the Table 1 layout, from results files
#
# This notebook rebuilds the paper's ablation (Table 2: the baseline, without restorative flow matching,
# without persistent latent propagation, the full method, at 60 s) and the Table 1 layout (a row per
# method and horizon) from the benchmark's own results files, with each row's **paired differences**
# against the baseline (`wan-animate`): per clip, the row's metric minus the baseline's on the same clip,
# as the mean over clips ± its standard error and the number of clips on which the difference has the
# mean's sign (`benchmark.compare.paired_differences`).
#
# Every row is one benchmark run. The notebook looks for the run in `RUNS_DIR/<folder>`; a finished run
# is reused when its `results.json` is for the row's method and arguments, the requested split, limit and
# horizons; an interrupted run is resumed; a missing run is made with `benchmark.run` (the command is
# printed). A row whose run cannot be made (a LoRA that is not shipped, a method that cannot be built,
# failed clips, another protocol than the baseline's) is left out of the tables, and the tables say why.
# No number is ever filled in for it.
#
# **Parameters** are the variables of the next cell (tagged `parameters`, so papermill can set them).
# Without papermill, set the environment variable `EVERANIMATE_NB_PARAMS` to a JSON object whose keys are
# parameter names, e.g. `EVERANIMATE_NB_PARAMS='{"LIMIT": 1, "HORIZONS": [10, 60]}'`; unknown keys are
# refused. Relative paths are read from the repository root, wherever the notebook is executed from.
#
# Outputs, in `OUT_DIR`: `ablation_table2.md`, `ablation_table1.md` and `ablation_rows.json` (what
# happened to each row).

# %% tags=["parameters"]
SPLIT = "synthetic"  # a split name, or a split folder holding manifest.json
HORIZONS = [10, 30, 60, 90]  # seconds: the horizons of the runs and of the Table 1 layout
TABLE2_HORIZON = 60  # seconds: the horizon of Table 2 (one of HORIZONS)
LIMIT = None  # None: every clip; N: the first N clips only (tables are then marked as not comparable)
STEPS = None  # None: the protocol's sampling steps; N: steps=N for every method that has a steps option
METRICS = None  # None: every metric; or a list of names, e.g. ["psnr", "ssim"]
RUNS_DIR = "runs"  # where each row's run folder is looked for, and made
OUT_DIR = "notebooks/out"  # where the tables are written
DEVICE = "cpu"  # the runner's --device
OVERWRITE = False  # replace a run folder that holds another run (otherwise that row is left out)
PROGRESS = True  # the runner's progress bars
BASELINE = "baseline"  # the row the paired differences are taken against
# The rows, in table order: the name printed in the tables, the method and its --method-arg values,
# and the run folder inside RUNS_DIR.
ROWS = [
    {"name": "baseline", "method": "wan-animate", "args": [], "folder": "wan-animate"},
    {"name": "without RFM", "method": "everanimate", "args": ["lora=stage1"], "folder": "everanimate-stage1"},
    {"name": "without PLP", "method": "everanimate", "args": ["lora=stage2-image-carry"], "folder": "everanimate-image-carry"},
    {"name": "full method", "method": "everanimate", "args": [], "folder": "everanimate"},
    {"name": "PLP without a LoRA", "method": "everanimate", "args": ["lora=none"], "folder": "everanimate-none"},
]

# %% [markdown]
# Parameters given through `EVERANIMATE_NB_PARAMS`, then checks of every parameter before any run starts.

# %%
import json
import sys
from pathlib import Path

from leaderboards.notebook import ROOT, apply_parameters

PARAMETER_NAMES = ("SPLIT", "HORIZONS", "TABLE2_HORIZON", "LIMIT", "STEPS", "METRICS", "RUNS_DIR", "OUT_DIR", "DEVICE",
                   "OVERWRITE", "PROGRESS", "BASELINE", "ROWS")  # fmt: skip
apply_parameters(globals(), PARAMETER_NAMES)

HORIZONS = [float(h) for h in HORIZONS]
TABLE2_HORIZON = float(TABLE2_HORIZON)
if not any(abs(h - TABLE2_HORIZON) < 1e-9 for h in HORIZONS):
    raise ValueError(f"TABLE2_HORIZON {TABLE2_HORIZON:g} s is not one of HORIZONS ({', '.join(f'{h:g}' for h in HORIZONS)})")
if LIMIT is not None and (isinstance(LIMIT, bool) or not isinstance(LIMIT, int) or LIMIT < 1):
    raise ValueError(f"LIMIT must be None or a positive integer, not {LIMIT!r}")
if STEPS is not None and (isinstance(STEPS, bool) or not isinstance(STEPS, int) or STEPS < 1):
    raise ValueError(f"STEPS must be None or a positive integer, not {STEPS!r}")
for _row in ROWS:
    if not isinstance(_row, dict) or not {"name", "method", "folder"} <= set(_row) or not set(_row) <= {"name", "method", "folder", "args"}:
        raise ValueError(f"ROWS: each row is {{'name', 'method', 'folder'[, 'args']}}, not {_row!r}")
    if not all(isinstance(a, str) for a in _row.get("args", [])):
        raise ValueError(f"ROWS: row {_row['name']!r}: 'args' is a list of 'KEY=VALUE' strings")
for _key in ("name", "folder"):
    _values = [row[_key] for row in ROWS]
    if len(set(_values)) != len(_values):
        raise ValueError(f"ROWS: two rows share a {_key}: {_values}")
if BASELINE not in [row["name"] for row in ROWS]:
    raise ValueError(f"BASELINE {BASELINE!r} is not the name of a row ({', '.join(row['name'] for row in ROWS)})")
RUNS_DIR, OUT_DIR = Path(RUNS_DIR), Path(OUT_DIR)
print(f"repository {ROOT}; split {SPLIT}; horizons {', '.join(f'{h:g}' for h in HORIZONS)} s; Table 2 at {TABLE2_HORIZON:g} s; "
      f"limit {LIMIT}; steps {STEPS or 'of the protocol'}; runs in {RUNS_DIR}; tables to {OUT_DIR}")  # fmt: skip

# %%
import contextlib
import dataclasses
import inspect
import io
import shlex
import traceback

from benchmark import run as benchmark_run
from benchmark.compare import (
    IncomparableRuns,
    check_comparable,
    comparison_table,
    default_metrics,
    format_difference,
    load_run,
    load_run_records,
    paired_differences,
    paired_tables,
)
from benchmark.files import is_safe_clip_id
from benchmark.metrics.spec import METRICS as METRIC_SPECS
from benchmark.splits.registry import resolve_split
from leaderboards.render import arrow, boards, header_label, markdown_board
from leaderboards.schema import REPORTED_CSV, read_table
from methods import registry

METRIC_NAMES = tuple(METRICS) if METRICS is not None else default_metrics()
_unknown_metrics = [m for m in METRIC_NAMES if m not in METRIC_SPECS]
if _unknown_metrics:
    raise ValueError(f"METRICS: unknown metric(s) {', '.join(_unknown_metrics)}; known: {', '.join(METRIC_SPECS)}")
for _row in ROWS:
    if not is_safe_clip_id(_row["folder"]):
        raise ValueError(f"ROWS: row {_row['name']!r}: folder {_row['folder']!r} is not a plain folder name")

split = resolve_split(SPLIT)
print(f"split {split.name} version {split.version}, content hash {split.content_hash}, {len(split.clips)} clips")

# %% [markdown]
# ## Finding or making each row's run
#
# A run in `RUNS_DIR/<folder>` is reused only if its `results.json` records the row's method (its
# registered class name) and arguments (those the row gives, and the method's defaults for the rest), the
# requested split (by content hash), `LIMIT`, and every horizon of `HORIZONS`. Otherwise the runner is
# called in this kernel, exactly as `python -m benchmark.run` with the printed arguments would be.

# %%
def _same(a, b) -> bool:
    return a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-12)


def method_plan(row: dict):
    """The row's method class, its ``--method-arg`` list (with ``steps=STEPS`` added when the method
    has a steps option), the arguments its results must record, and the ones the row gives."""
    cls = registry.method_class(row["method"])
    pairs = list(row.get("args", []))
    raw = registry.parse_options(pairs)
    parameters = registry.option_parameters(cls)
    if STEPS is not None and "steps" not in raw and (parameters is None or "steps" in parameters):
        pairs.append(f"steps={STEPS}")
        raw["steps"] = str(STEPS)
    given = registry.method_options(cls, raw)
    defaults = {} if parameters is None else {n: p.default for n, p in parameters.items() if p.default is not inspect.Parameter.empty}
    return cls, pairs, {**defaults, **given}, set(given)


def mismatch(results, cls, expected: dict, given: set) -> str | None:
    """Why a finished run is not this row's run, or None when it is."""
    name = results.method.get("name")
    if name != cls.name:
        return f"it is a run of {name}, not {cls.name}"
    recorded = results.method.get("arguments", {})
    for key, value in expected.items():
        if key in recorded:
            if (key in given or value is not None) and not _same(recorded[key], value):
                return f"it ran with {key}={recorded[key]!r}, this row needs {key}={value!r}"
        elif key in given:
            return f"it records no {key} argument, this row gives {key}={value!r}"
    if (results.split.get("name"), results.split.get("content_hash")) != (split.name, split.content_hash):
        return f"it ran on split {results.split.get('name')} ({results.split.get('content_hash')}), not {split.name} ({split.content_hash})"
    if results.limit != LIMIT:
        return f"it ran with limit {results.limit}, not {LIMIT}"
    missing = [h for h in HORIZONS if not any(abs(h - g) < 1e-9 for g in results.horizons)]
    if missing:
        return f"it has no {', '.join(f'{h:g} s' for h in missing)} horizon"
    if METRICS is not None:
        absent = [m for m in METRIC_NAMES for h in HORIZONS if not any(r.metric == m and abs(r.horizon_s - h) < 1e-9 for r in results.metrics)]
        if absent:
            return f"it did not evaluate {', '.join(sorted(set(absent)))}"
    return None


class _Tee(io.TextIOBase):
    """Writes through to ``stream`` and keeps a copy of what was written."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_benchmark(argv: list[str]) -> tuple[int, str | None]:
    """``benchmark.run.main(argv)`` in this kernel: its exit status and its last ``error:`` line."""
    print("$", shlex.join(["python", "-m", "benchmark.run", *argv]))
    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        code = benchmark_run.main(argv)
    errors = [line[len("error: "):] for line in "".join(tee.parts).splitlines() if line.startswith("error: ")]
    return code, (errors[-1] if errors else None)


def obtain(row: dict) -> dict:
    """Find, resume or make the row's run; the entry records what happened (``found``, ``ran`` or
    ``left out`` with the reason)."""
    folder = RUNS_DIR / row["folder"]
    entry = {"name": row["name"], "method": row["method"], "args": list(row.get("args", [])), "folder": str(folder), "status": None, "reason": None}

    def left_out(reason: str) -> dict:
        entry.update(status="left out", reason=reason)
        return entry

    def finished(results, status: str) -> dict:
        if results.clips_failed:
            failed = "; ".join(f"{clip}: {reason}" for clip, reason in results.clips_failed.items())
            return left_out(f"{len(results.clips_failed)} clip(s) of {folder} failed ({failed}); fix the cause and rerun the row")
        entry["status"] = status
        return entry

    try:
        cls, pairs, expected, given = method_plan(row)
    except (registry.MethodError, ValueError) as exc:
        return left_out(f"the method cannot be built: {exc}")
    entry["args"] = pairs
    argv = ["--method", row["method"], *(a for pair in pairs for a in ("--method-arg", pair)), "--split", SPLIT,
            *(a for h in HORIZONS for a in ("--horizon", f"{h:g}")), "--out", str(folder), "--device", DEVICE]  # fmt: skip
    argv += ["--limit", str(LIMIT)] if LIMIT is not None else []
    argv += ["--metrics", ",".join(METRIC_NAMES)] if METRICS is not None else []
    argv += [] if PROGRESS else ["--no-progress"]
    entry["command"] = shlex.join(["python", "-m", "benchmark.run", *argv])
    modes = [[]]
    if (folder / "results.json").exists():
        try:
            why = mismatch(load_run(folder), cls, expected, given)
        except ValueError as exc:
            why = str(exc)
        if why is None:
            return finished(load_run(folder), "found")
        if not OVERWRITE:
            return left_out(f"{folder} holds another run ({why}); set OVERWRITE = True to replace it, or choose another RUNS_DIR")
        modes = [["--overwrite"]]
    elif (folder / "run.json").exists():
        modes = [["--resume"]] + ([["--overwrite"]] if OVERWRITE else [])
    error = None
    for mode in modes:
        try:
            code, error = run_benchmark(argv + mode)
        except Exception as exc:  # the runner stopped with a traceback: report it, go on with the other rows
            traceback.print_exc()
            return left_out(f"the run stopped with {type(exc).__name__}: {exc}")
        if code != 2:
            break
    if not (folder / "results.json").exists():
        return left_out(f"the runner refused it: {error}" if error else f"the run wrote no results (exit status {code})")
    results = load_run(folder)
    why = mismatch(results, cls, expected, given)
    if why is not None:
        return left_out(f"the run it made does not match the row: {why}")
    return finished(results, "ran")


entries = []
for row in ROWS:
    entry = obtain(row)
    entries.append(entry)
    print(f"{entry['name']}: {entry['status']}" + (f" ({entry['reason']})" if entry["reason"] else f" ({entry['folder']})"))

# %% [markdown]
# ## Comparability
#
# Every row is compared with the baseline row through `benchmark.compare.check_comparable` (same split,
# same protocol; a method's own carry-over is allowed and shown in its label). With `LIMIT` set, every run
# scored only the first clips: `check_comparable` is then told to accept them, and every table says
# "limited run, not comparable". A row whose run has failed clips was left out above.

# %%
ALLOW_LIMITED = LIMIT is not None
LIMITED_NOTE = (
    f"**limited run, not comparable**: every run here scored only the first {LIMIT} clip(s) of the split (`LIMIT = {LIMIT}`); "
    "these tables check the notebook and must not be reported."
) if ALLOW_LIMITED else None  # fmt: skip

records = {}
for entry in entries:
    if entry["status"] in ("found", "ran"):
        try:
            records[entry["name"]] = load_run_records(entry["folder"])
        except (FileNotFoundError, ValueError) as exc:
            entry.update(status="left out", reason=str(exc))

reference = BASELINE if BASELINE in records else next(iter(records), None)
for entry in entries:
    name = entry["name"]
    if name in records and name != reference:
        try:
            check_comparable({reference: records[reference].results, name: records[name].results}, allow_partial=ALLOW_LIMITED)
        except IncomparableRuns as exc:
            entry.update(status="left out", reason=f"not comparable with {reference}: {exc}")
            del records[name]

included = [entry["name"] for entry in entries if entry["name"] in records]
left_out = [entry for entry in entries if entry["status"] == "left out"]
print("in the tables:", ", ".join(included) or "no row")
for entry in left_out:
    print(f"left out: {entry['name']}: {entry['reason']}")

# %% [markdown]
# ## Paired differences against the baseline
#
# `benchmark.compare.paired_differences(row, baseline)` for every row, at every horizon and in every
# 1-second window. Pooled metrics (FID, FVD) and the seam score keep no per-clip records and are not paired.

# %%
def restricted(results, horizons):
    """``results`` with only its metric records at ``horizons``."""
    keep = [m for m in results.metrics if any(abs(m.horizon_s - h) < 1e-9 for h in horizons)]
    return dataclasses.replace(results, metrics=keep)


# Each run is labelled by its method and the row's --method-arg values; only the metrics some run
# measured are paired.
_args = {entry["name"]: entry["args"] for entry in entries}
labels = {name: records[name].results.method["name"] + (f" ({', '.join(_args[name])})" if _args[name] else "") for name in included}
MEASURED = tuple(m for m in METRIC_NAMES if any(r.metric == m and r.value is not None for name in included for r in records[name].results.metrics))
comparisons = {}
if BASELINE in records:
    for name in included:
        if name != BASELINE:
            comparisons[name] = paired_differences(records[name], records[BASELINE], MEASURED, (labels[name], labels[BASELINE]))
else:
    print(f"no paired differences: the baseline row {BASELINE!r} is left out")


def cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def spaced(text: str) -> str:
    """``text`` with a blank line around every line that is not a table line (``| ...``), so that
    Markdown reads each table as a table and each note as its own paragraph."""
    lines: list[str] = []
    for line in text.splitlines():
        table = line.startswith("|")
        if lines and not (table and lines[-1].startswith("|")):
            lines.append("")
        lines.append(line if table else line.strip())
    return "\n".join(lines)


def demoted(markdown: str, levels: int = 2) -> str:
    """Markdown with its headings moved ``levels`` levels down, to sit inside another document."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def split_line() -> str:
    first = records[included[0]].results
    clips = len(first.clips_evaluated)
    return (f"Split `{split.name}` version {split.version}, content hash `{split.content_hash}`; {clips} clip(s); "
            f"chunk length {first.protocol['chunk_frames']} frames, {first.protocol['sampling_steps']} sampling steps.")  # fmt: skip


def left_out_lines() -> list[str]:
    if not left_out:
        return []
    lines = ["", "Rows left out (no number is given for them):", ""]
    for entry in left_out:
        command = " ".join(["--method", entry["method"], *(f"--method-arg {a}" for a in entry["args"])])
        lines.append(f"- **{cell(entry['name'])}** (`{command}`): {cell(entry['reason'])}")
    return lines


def paper_section(prefix: str, horizons: list[float] | None, title: str) -> list[str]:
    """The paper's reported rows whose notes start with ``prefix`` (at ``horizons``, or all), as the
    leaderboard renders them."""
    try:
        rows = [r for r in read_table(REPORTED_CSV).rows if r["notes"].startswith(prefix)]
    except (OSError, ValueError) as exc:
        return ["", f"## {title}", "", f"The paper's rows could not be read: {cell(str(exc))}"]
    if horizons is not None:
        rows = [r for r in rows if any(abs(float(r["horizon_s"]) - h) < 1e-9 for h in horizons)]
    if not rows:
        return ["", f"## {title}", "", f"The paper reports none of the horizons {', '.join(f'{h:g} s' for h in horizons)}."]
    return ["", f"## {title}", "", *(demoted(markdown_board(board)) for board in boards(rows))]


# %% [markdown]
# ## Table 2: the ablation at `TABLE2_HORIZON`
#
# One row per ablation row, in the order of `ROWS`: each metric as the mean ± standard error over clips,
# then each metric's paired difference against the baseline, `mean ± standard error [clips with the
# mean's sign / clips]`. Below it, the paper's Table 2 as reported (its own evaluation set: not comparable).

# %%
def table_opening(title: str) -> tuple[list[str], str | None]:
    """A table's first lines (title, the limited-run note) and, when no row has a run, the whole table."""
    lines = [title, ""] + ([LIMITED_NOTE, ""] if LIMITED_NOTE else [])
    if not included:
        return lines, "\n".join([*lines, "No row has a run: there is no table.", *left_out_lines()]) + "\n"
    return lines, None


def table2() -> str:
    h = TABLE2_HORIZON
    lines, empty = table_opening(f"# Table 2: ablation at {h:g} s")
    if empty:
        return empty

    def record(name, metric):
        try:
            return records[name].results.record(metric, h)
        except KeyError:
            return None

    shown = [m for m in METRIC_NAMES if any((r := record(n, m)) is not None and r.value is not None for n in included)]

    def difference(name, metric):
        try:
            return comparisons[name].at(metric, h)
        except KeyError:
            return None

    paired = [m for m in shown if any((d := difference(n, m)) is not None and d.mean is not None for n in comparisons)]
    unpaired = {m: next((d.unavailable_reason for n in comparisons if (d := difference(n, m)) is not None and d.unavailable_reason), None)
                for m in shown if m not in paired}  # fmt: skip
    header = ["row", "run", *(f"{header_label(METRIC_SPECS[m])} {arrow(METRIC_SPECS[m])}" for m in shown)]
    header += [f"Δ {header_label(METRIC_SPECS[m])} {arrow(METRIC_SPECS[m])}" for m in paired]
    lines += [split_line(), ""]
    if comparisons:
        lines += [(f"Δ: paired difference, row − {cell(BASELINE)} ({cell(labels[BASELINE])}), clip by clip: mean over clips ± standard error "
                   "[clips whose difference has the mean's sign / clips]. ↑ higher is better, ↓ lower is better."), ""]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in included:
        values = [METRIC_SPECS[m].format(r.value, r.stderr) if (r := record(name, m)) is not None else "-" for m in shown]
        if name == BASELINE:
            deltas = ["(baseline)"] * len(paired)
        else:
            deltas = [format_difference(m, d) if (d := difference(name, m)) is not None else "-" for m in paired]
        lines.append("| " + " | ".join([cell(name), cell(labels[name]), *values, *deltas]) + " |")
    for metric, reason in unpaired.items():
        if reason:
            lines.append(f"\nNo Δ {METRIC_SPECS[metric].label}: {cell(reason)}")
    lines += left_out_lines()
    lines += paper_section("paper Table 2", None, "The paper's Table 2, as reported")
    return "\n".join(lines) + "\n"


OUT_DIR.mkdir(parents=True, exist_ok=True)
TABLE2 = table2()
(OUT_DIR / "ablation_table2.md").write_text(TABLE2, encoding="utf-8")
print(TABLE2)

# %% [markdown]
# ## The Table 1 layout: every row at every horizon
#
# `benchmark.compare.comparison_table` over the rows' runs (a row per run and horizon, labelled by method
# and the arguments that tell runs apart), then each row's paired differences against the baseline at every
# horizon (`benchmark.compare.paired_tables`). Below them, the paper's Table 1 at the same horizons, as
# reported.

# %%
def table1() -> str:
    lines, empty = table_opening(f"# Table 1 layout: {', '.join(f'{h:g}' for h in HORIZONS)} s")
    if empty:
        return empty
    folders = {entry["name"]: entry["folder"] for entry in entries}
    lines += [split_line(), "", "Rows: " + "; ".join(f"{cell(name)} = {cell(labels[name])} (`{folders[name]}`)" for name in included), ""]
    runs = {name: restricted(records[name].results, HORIZONS) for name in included}
    lines.append(comparison_table(runs, METRIC_NAMES, markdown=True))
    for name, comparison in comparisons.items():
        kept = dataclasses.replace(comparison, horizons=[r for r in comparison.horizons if any(abs(r.horizon_s - h) < 1e-9 for h in HORIZONS)])
        lines += ["", f"## {cell(name)} − {cell(BASELINE)}", "", spaced(paired_tables(kept, markdown=True, windows=False))]
    lines += left_out_lines()
    lines += paper_section("paper Table 1", HORIZONS, "The paper's Table 1, as reported")
    return "\n".join(lines) + "\n"


TABLE1 = table1()
(OUT_DIR / "ablation_table1.md").write_text(TABLE1, encoding="utf-8")
print(TABLE1)

# %% [markdown]
# ## What happened to each row
#
# `ablation_rows.json`: per row, its name, method, arguments, run folder, the runner command, and whether
# its run was found, made, or left out (with the reason).

# %%
(OUT_DIR / "ablation_rows.json").write_text(json.dumps({"limit": LIMIT, "horizons_s": HORIZONS, "table2_horizon_s": TABLE2_HORIZON,
                                                        "baseline": BASELINE, "rows": entries}, indent=1) + "\n", encoding="utf-8")  # fmt: skip
for entry in entries:
    print(f"{entry['name']:<24} {entry['status']:<9} {entry['reason'] or entry['folder']}")
print("wrote", ", ".join(str(OUT_DIR / f) for f in ("ablation_table2.md", "ablation_table1.md", "ablation_rows.json")))
