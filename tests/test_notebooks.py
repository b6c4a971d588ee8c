"""The notebooks in notebooks/: each is converted from its jupytext source and executed top to bottom
with nbclient on the tiny split, with cheap methods standing in for the Wan models, and the tables and
figures it writes are checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmark import compare
from benchmark import run as run_cli

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TESTS = Path(__file__).resolve().parent
FAST = ["--metrics", "psnr,ssim", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A method whose LoRA is looked up by name and may not be there, refused the way everanimate refuses
# a LoRA that is not shipped.
NEEDS_LORA = '''
from pathlib import Path

from methods.base import ChunkMethod


class NeedsLora(ChunkMethod):
    name = "needs-lora"

    def __init__(self, device="cpu", lora: str = "stage2"):
        folder = Path(__file__).parent / "loras" / lora
        if not (folder / "lora.json").is_file():
            raise ValueError(f"lora={lora}: no such LoRA is shipped in {folder.parent}")
        super().__init__(device, lora=lora)

    def start(self, clip):
        return {"reference": clip.references[0]}

    def generate_chunk(self, state, controls):
        return state["reference"].expand(len(controls), *state["reference"].shape).clone(), state
'''


def execute(name: str, tmp_path: Path, params: dict, monkeypatch, python_path: tuple[Path, ...] = ()) -> str:
    """Convert ``notebooks/<name>.py`` to a notebook in ``tmp_path``, execute it from the notebooks
    folder (as ``jupytext --execute`` does) with ``params`` in ``EVERANIMATE_NB_PARAMS``, and return the
    text of every output."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    path = tmp_path / f"{name}.ipynb"
    jupytext.write(jupytext.read(NOTEBOOKS / f"{name}.py"), path)
    notebook = nbformat.read(path, as_version=4)
    assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)
    monkeypatch.setenv("EVERANIMATE_NB_PARAMS", json.dumps(params))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*map(str, python_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    nbformat.write(notebook, path)
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


# ---- the ablation notebook ----------------------------------------------------------------------
def test_the_ablation_notebook_finds_makes_and_leaves_out_rows_and_writes_both_tables(tmp_path, tiny_split_dir, monkeypatch):
    runs, out, methods = tmp_path / "runs", tmp_path / "out", tmp_path / "methods"
    methods.mkdir()
    (methods / "nb_methods.py").write_text(NEEDS_LORA)
    common = ["--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "4", "--limit", "1", *FAST]
    # The baseline's run is there already, and must be reused; the last row's folder holds another method's run.
    assert run_cli.main(["--method", "reference-copy", *common, "--out", str(runs / "base")]) == 0
    assert run_cli.main(["--method", "ground-truth", *common, "--out", str(runs / "sampler")]) == 0
    reused = (runs / "base" / "results.json").stat().st_mtime_ns
    rows = [
        {"name": "baseline", "method": "reference-copy", "args": [], "folder": "base"},
        {"name": "without RFM", "method": "fake_methods:NoisyDrift", "args": [], "folder": "noisy"},
        {"name": "without PLP", "method": "nb_methods:NeedsLora", "args": ["lora=stage2-image-carry"], "folder": "needs-lora"},
        {"name": "full method", "method": "ground-truth", "args": [], "folder": "gt"},
        {"name": "PLP without a LoRA", "method": "fake_methods:Sampler", "args": [], "folder": "sampler"},
    ]
    params = {"SPLIT": str(tiny_split_dir), "HORIZONS": [2, 4], "TABLE2_HORIZON": 4, "LIMIT": 1, "METRICS": ["psnr", "ssim"],
              "RUNS_DIR": str(runs), "OUT_DIR": str(out), "PROGRESS": False, "ROWS": rows}  # fmt: skip
    text = execute("ablation", tmp_path, params, monkeypatch, (TESTS, methods))
    assert f"repository {ROOT}" in text

    status = {row["name"]: row for row in json.loads((out / "ablation_rows.json").read_text())["rows"]}
    assert [status[r["name"]]["status"] for r in rows] == ["found", "ran", "left out", "ran", "left out"]
    assert (runs / "base" / "results.json").stat().st_mtime_ns == reused
    assert "no such LoRA is shipped" in status["without PLP"]["reason"]
    assert not (runs / "needs-lora" / "results.json").exists()
    assert "holds another run" in status["PLP without a LoRA"]["reason"] and "ground-truth" in status["PLP without a LoRA"]["reason"]
    assert compare.load_run(runs / "sampler").method["name"] == "ground-truth"  # never overwritten without OVERWRITE
    assert "python -m benchmark.run --method fake_methods:NoisyDrift" in status["without RFM"]["command"]

    table2 = (out / "ablation_table2.md").read_text()
    assert table2.startswith("# Table 2: ablation at 4 s")
    assert "limited run, not comparable" in table2
    lines = table2.splitlines()
    header = next(line for line in lines if line.startswith("| row | run |"))
    assert header == "| row | run | PSNR (dB) ↑ | SSIM ↑ | Δ PSNR (dB) ↑ | Δ SSIM ↑ |"
    table = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and not line.startswith("| row")}
    assert list(table)[:3] == ["baseline", "without RFM", "full method"]
    assert "without PLP" not in table and "PLP without a LoRA" not in table
    assert table["baseline"].startswith("| baseline | reference-copy |") and "(baseline)" in table["baseline"]
    assert table["full method"].startswith("| full method | ground-truth | 100.00 |")
    base = compare.load_run_records(runs / "base")
    for name, folder in (("without RFM", "noisy"), ("full method", "gt")):
        paired = compare.paired_differences(compare.load_run_records(runs / folder), base, ("psnr", "ssim"))
        for metric in ("psnr", "ssim"):
            assert f"| {compare.format_difference(metric, paired.at(metric, 4))}" in table[name]
    assert paired.at("psnr", 4).mean > 0 and "[1/1]" in table["full method"]
    left = table2[table2.index("Rows left out"):]
    assert "**without PLP** (`--method nb_methods:NeedsLora --method-arg lora=stage2-image-carry`): " in left
    assert "no such LoRA is shipped" in left and "**PLP without a LoRA**" in left
    assert "The paper's Table 2, as reported" in table2 and "everanimate-paper" in table2

    table1 = (out / "ablation_table1.md").read_text()
    assert "limited run, not comparable" in table1
    assert "| method | horizon | psnr | ssim |" in table1
    for label in ("reference-copy", "noisy-drift", "ground-truth"):
        for horizon in (2, 4):
            assert f"| {label} | {horizon} s |" in table1
    assert "## without RFM − baseline" in table1 and "paired differences, noisy-drift − reference-copy" in table1
    assert "## full method − baseline" in table1 and "| horizon | psnr ↑ | ssim ↑ |" in table1
    assert "no such LoRA is shipped" in table1
    assert "The paper reports none of the horizons 2 s, 4 s." in table1
    assert "left out: without PLP" in text


# ---- the drift notebook ---------------------------------------------------------------------------
def test_the_drift_notebook_plots_every_run_over_time_and_per_horizon(tmp_path, tiny_split_dir, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out"
    common = ["--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "4", *FAST]
    for method in ("ground-truth", "reference-copy"):
        assert run_cli.main(["--method", method, *common, "--out", str(runs / method)]) == 0
    assert run_cli.main(["--method", "reference-copy", *common, "--limit", "1", "--out", str(runs / "limited")]) == 0
    text = execute("drift", tmp_path, {"RUNS_DIR": str(runs), "OUT_DIR": str(out)}, monkeypatch)
    assert "left out: limited: not comparable (--limit 1)" in text
    assert "split tiny (" in text and "ground-truth, reference-copy" in text
    written = sorted(p.name for p in out.iterdir())
    assert written == ["bars_tiny_2s.png", "bars_tiny_4s.png", "drift_tiny.png"]
    for name in written:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert text.count("<IPython.core.display.Image object>") == 3
