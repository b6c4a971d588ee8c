"""benchmark.compare: one table and one drift plot over several finished runs, refusing runs that
cannot be compared."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmark import compare
from benchmark import run as run_cli

FAST = ["--metrics", "psnr,ssim", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_split_dir):
    root = tmp_path_factory.mktemp("runs")
    for method in ("ground-truth", "reference-copy"):
        assert run_cli.main(["--method", method, "--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "4", "--out", str(root / method), *FAST]) == 0
    assert run_cli.main(["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2", "--limit", "1", "--out", str(root / "limited"), *FAST]) == 0
    (root / "split_dir.json").write_text(json.dumps(str(tiny_split_dir)))
    return root


def test_table_has_a_row_per_method_and_horizon(runs, capsys):
    assert compare.main([str(runs / "ground-truth"), str(runs / "reference-copy" / "results.json"), "--markdown", "--plot", str(runs / "drift.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| method | horizon | psnr | ssim |"
    rows = [line for line in lines if line.startswith("| ground-truth") or line.startswith("| reference-copy")]
    assert len(rows) == 4
    assert "| ground-truth | 2 s | 100.00 ± 0.00 | 1.0000 ± 0.0000 |" in rows
    assert (runs / "drift.png").stat().st_size > 0


def test_the_run_table_and_the_comparison_print_each_metric_at_its_precision(runs):
    from benchmark.results import format_table

    run = compare.load_run(runs / "reference-copy")
    table = format_table(run)
    comparison = compare.comparison_table({"r": run}, ("psnr", "ssim"))
    for metric, decimals in (("psnr", 2), ("ssim", 4)):
        for horizon in (2, 4):
            record = run.record(metric, horizon)
            cell = f"{record.value:.{decimals}f} ± {record.stderr:.{decimals}f}"
            assert cell in table and cell in comparison


def test_partial_runs_are_refused_unless_allowed(runs, capsys):
    assert compare.main([str(runs / "ground-truth"), str(runs / "limited")]) == 2
    assert "--limit 1" in capsys.readouterr().err
    assert compare.main([str(runs / "ground-truth"), str(runs / "limited"), "--allow-partial"]) == 0


def test_runs_on_another_protocol_or_split_are_refused(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs / "reference-copy", other)
    data = json.loads((other / "results.json").read_text())
    data["split"]["content_hash"] = "0" * 16
    (other / "results.json").write_text(json.dumps(data))
    assert compare.main([str(runs / "ground-truth"), str(other)]) == 2
    assert "split" in capsys.readouterr().err
    data["split"]["content_hash"] = json.loads((runs / "reference-copy" / "results.json").read_text())["split"]["content_hash"]
    data["protocol"]["sampling_steps"] += 1
    (other / "results.json").write_text(json.dumps(data))
    assert compare.main([str(runs / "ground-truth"), str(other)]) == 2
    error = capsys.readouterr().err
    assert "protocol differs" in error and "sampling_steps (21 vs 20)" in error


def test_a_methods_own_carry_over_does_not_make_runs_incomparable(runs, tmp_path, capsys):
    variant = tmp_path / "variant"
    shutil.copytree(runs / "reference-copy", variant)
    data = json.loads((variant / "results.json").read_text())
    data["protocol"]["carry_over"] = 5
    (variant / "results.json").write_text(json.dumps(data))
    assert compare.main([str(runs / "reference-copy"), str(variant)]) == 0
    table = capsys.readouterr().out
    assert "reference-copy (carry_over=0)" in table and "reference-copy (carry_over=5)" in table


def test_missing_results_name_the_file(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    assert str(tmp_path / "results.json") in capsys.readouterr().err


def test_runs_of_one_method_are_told_apart_by_their_arguments(runs):
    loaded = compare.load_run(runs / "reference-copy")
    twin = compare.load_run(runs / "reference-copy")
    twin.method = {"name": "reference-copy", "arguments": {"flavour": "b"}}
    loaded.method = {"name": "reference-copy", "arguments": {"flavour": "a"}}
    labels = compare.run_labels({"a": loaded, "b": twin})
    assert labels == {"a": "reference-copy (flavour=a)", "b": "reference-copy (flavour=b)"}


def test_unknown_metric_is_a_usage_error(runs):
    with pytest.raises(SystemExit) as exc:
        compare.main([str(runs / "ground-truth"), "--metrics", "psnr,sharpness"])
    assert exc.value.code == 2


def test_strip_shows_ground_truth_and_every_run_at_each_time(runs, tmp_path):
    from PIL import Image

    from benchmark import strip

    out = tmp_path / "strip.png"
    assert strip.main([str(runs / "ground-truth"), str(runs / "reference-copy"), "--split", str(runs.parent / "unused"), "--out", str(out)]) == 2
    assert strip.main([str(runs / "ground-truth"), str(runs / "reference-copy"), "--split", str(_split_dir(runs)), "--times", "0,2", "--scale", "1", "--out", str(out)]) == 0
    image = Image.open(out)
    assert image.size[1] == 16 + 3 * (_frame_height(runs) + 2)


def test_strip_names_a_missing_video(runs, tmp_path, capsys):
    from benchmark import strip

    broken = tmp_path / "broken"
    shutil.copytree(runs / "reference-copy", broken)
    video = sorted((broken / "videos").glob("*.mkv"))[0]
    video.unlink()
    assert strip.main([str(broken), "--split", str(_split_dir(runs)), "--clip", video.stem, "--out", str(tmp_path / "s.png")]) == 2
    assert str(video) in capsys.readouterr().err


def _split_dir(runs):
    return json.loads((runs / "split_dir.json").read_text())


def _frame_height(runs):
    from benchmark.splits.manifest import load_split

    return load_split(_split_dir(runs)).height
