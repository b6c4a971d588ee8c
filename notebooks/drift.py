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
# # Drift over time, and every metric at every horizon
#
# For finished benchmark runs, this notebook plots every metric over time, one curve per run (the mean
# over clips in each 1-second window, with a standard-error band: `benchmark.results.plot_drift_curves`),
# and a bar chart per horizon (one panel per metric, one bar per run, ± the standard error over clips).
#
# Runs are grouped by split (name and content hash); within a split, runs on another protocol than the
# first one's are left out, as `benchmark.compare` would refuse them. `--limit` runs and runs with failed
# clips are left out unless `ALLOW_PARTIAL` is set, in which case the figures say so.
#
# **Parameters** are the variables of the next cell (tagged `parameters`, so papermill can set them).
# Without papermill, set the environment variable `EVERANIMATE_NB_PARAMS` to a JSON object whose keys are
# parameter names, e.g. `EVERANIMATE_NB_PARAMS='{"RUNS": ["runs/wan-animate", "runs/everanimate"]}'`;
# unknown keys are refused. Relative paths are read from the repository root.
#
# Outputs, in `OUT_DIR`: `drift_<split>.png` and `bars_<split>_<horizon>s.png`.

# %% tags=["parameters"]
RUNS_DIR = "runs"  # every folder in it holding a results.json is plotted, unless RUNS is given
RUNS = None  # None, or a list of run folders (or results.json files)
METRICS = None  # None: the metrics benchmark.compare shows by default; or a list of names
HORIZONS = None  # None: every horizon the runs have; or a list of seconds
ALLOW_PARTIAL = False  # also plot --limit runs and runs with failed clips (marked in the figures)
OUT_DIR = "notebooks/out"  # where the figures are written

# %% [markdown]
# Parameters given through `EVERANIMATE_NB_PARAMS`, then the runs.

# %%
from pathlib import Path

from leaderboards.notebook import apply_parameters

PARAMETER_NAMES = ("RUNS_DIR", "RUNS", "METRICS", "HORIZONS", "ALLOW_PARTIAL", "OUT_DIR")
apply_parameters(globals(), PARAMETER_NAMES)

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import Image, display

from benchmark.compare import IncomparableRuns, check_comparable, default_metrics, distinct_labels, load_run
from benchmark.files import is_safe_clip_id
from benchmark.metrics.spec import METRICS as METRIC_SPECS
from benchmark.results import plot_drift_curves

METRIC_NAMES = tuple(METRICS) if METRICS is not None else default_metrics()
_unknown_metrics = [m for m in METRIC_NAMES if m not in METRIC_SPECS]
if _unknown_metrics:
    raise ValueError(f"METRICS: unknown metric(s) {', '.join(_unknown_metrics)}; known: {', '.join(METRIC_SPECS)}")

if RUNS is None:
    folders = sorted(p.parent for p in Path(RUNS_DIR).glob("*/results.json"))
    print(f"{len(folders)} finished run(s) in {RUNS_DIR}")
else:
    folders = [Path(p) for p in RUNS]
OUT_DIR = Path(OUT_DIR)
OUT_DIR.mkdir(parents=True, exist_ok=True)

# Runs are named by their folder's name, or by its path where two folders share a name.
_names = [Path(folder).name for folder in folders]
runs, left_out = {}, {}
for folder, name in zip(folders, _names):
    key = name if _names.count(name) == 1 else str(folder)
    try:
        results = load_run(folder)
    except (FileNotFoundError, ValueError) as exc:
        left_out[key] = str(exc)
        continue
    if not results.comparable and not ALLOW_PARTIAL:
        why = f"--limit {results.limit}" if results.limit is not None else f"{len(results.clips_failed)} failed clip(s)"
        left_out[key] = f"not comparable ({why}); set ALLOW_PARTIAL = True to plot it anyway"
        continue
    runs[key] = results

# %% [markdown]
# ## Grouping by split
#
# One group per split (name and content hash). Within a group every run must be comparable with the
# first one (`benchmark.compare.check_comparable`); the others are left out with the reason.

# %%
groups: dict[tuple[str, str], dict] = {}
for key, results in runs.items():
    groups.setdefault((results.split["name"], results.split["content_hash"]), {})[key] = results
for (name, content_hash), members in groups.items():
    first = next(iter(members))
    for key in list(members)[1:]:
        try:
            check_comparable({first: members[first], key: members[key]}, allow_partial=ALLOW_PARTIAL)
        except IncomparableRuns as exc:
            left_out[key] = str(exc)
            del members[key]
names_per_split = {}
for name, content_hash in groups:
    names_per_split.setdefault(name, []).append(content_hash)


def split_tag(name: str, content_hash: str) -> str:
    """The split's name in file names, with its hash when two versions of it are plotted."""
    tag = name if is_safe_clip_id(name) else "split"
    return f"{tag}-{content_hash[:12]}" if len(names_per_split[name]) > 1 or tag != name else tag


for (name, content_hash), members in groups.items():
    print(f"split {name} ({content_hash}): {', '.join(members)}")
for key, reason in left_out.items():
    print(f"left out: {key}: {reason}")
if not groups:
    print("no run to plot")

# %% [markdown]
# ## Every metric over time
#
# One figure per split: a panel per metric, a curve per run (mean over clips per 1-second window, with a
# standard-error band). Runs are labelled by method and the arguments that tell them apart.

# %%
def partial_mark(results) -> str:
    if results.limit is not None:
        return f" [--limit {results.limit}: not comparable]"
    if results.clips_failed:
        return f" [{len(results.clips_failed)} failed clips: not comparable]"
    return ""


written = []
labels_per_group = {}
for (name, content_hash), members in groups.items():
    labels = {key: label + partial_mark(members[key]) for key, label in distinct_labels(members).items()}
    labels_per_group[(name, content_hash)] = labels
    drifting = [m for m in METRIC_NAMES if any(p["metric"] == m and p.get("value") is not None for r in members.values() for p in r.drift)]
    if not drifting:
        print(f"split {name}: none of the runs has per-window values of {', '.join(METRIC_NAMES)}")
        continue
    path = OUT_DIR / f"drift_{split_tag(name, content_hash)}.png"
    clips = sorted({len(r.clips_evaluated) for r in members.values()})
    title = f"{name}: drift per 1-s window, mean over {'/'.join(map(str, clips))} clips"
    plot_drift_curves(path, {labels[key]: results for key, results in members.items()}, drifting, title)
    written.append(path)
    display(Image(filename=str(path)))

# %% [markdown]
# ## Every metric at every horizon
#
# One figure per split and horizon: a panel per metric with a value, a bar per run with its standard
# error over clips (pooled metrics such as FID have none). The panel title gives the better direction.

# %%
def bar_chart(path: Path, title: str, members: dict, labels: dict, horizon: float) -> bool:
    """Write the bar chart of ``members`` at ``horizon``; False when no metric has a value there."""
    panels = []
    for metric in METRIC_NAMES:
        bars = []
        for index, (key, results) in enumerate(members.items()):
            try:
                record = results.record(metric, horizon)
            except KeyError:
                continue
            if record.value is not None:
                bars.append((labels[key], record.value, record.stderr, f"C{index % 10}"))
        if bars:
            panels.append((metric, bars))
    if not panels:
        return False
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    width = max(4.4, 0.55 * max(len(bars) for _, bars in panels) + 1.6)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.4 * rows), squeeze=False)
    for ax, (metric, bars) in zip(axes.flat, panels):
        spec = METRIC_SPECS[metric]
        positions = range(len(bars))
        errors = [se if se is not None else 0.0 for _, _, se, _ in bars]
        ax.bar(positions, [v for _, v, _, _ in bars], yerr=errors, capsize=3, color=[colour for *_, colour in bars])
        ax.set_xticks(list(positions), [label for label, *_ in bars], rotation=30, ha="right", fontsize=7)
        direction = "higher is better" if spec.higher_is_better else "lower is better"
        ax.set_title(f"{spec.label}" + (f" ({spec.unit})" if spec.unit else "") + f", {direction}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return True


for (name, content_hash), members in groups.items():
    available = sorted({h for r in members.values() for h in r.horizons})
    horizons = available if HORIZONS is None else [float(h) for h in HORIZONS if any(abs(float(h) - g) < 1e-9 for g in available)]
    if HORIZONS is not None:
        absent = [float(h) for h in HORIZONS if float(h) not in horizons]
        if absent:
            print(f"split {name}: no run has the horizon(s) {', '.join(f'{h:g} s' for h in absent)}")
    for horizon in horizons:
        path = OUT_DIR / f"bars_{split_tag(name, content_hash)}_{horizon:g}s.png"
        title = f"{name} at {horizon:g} s: mean over clips ± standard error"
        if bar_chart(path, title, members, labels_per_group[(name, content_hash)], horizon):
            written.append(path)
            display(Image(filename=str(path)))

print("wrote", ", ".join(str(p) for p in written) if written else "nothing")
