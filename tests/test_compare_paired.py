"""benchmark.compare --baseline: paired differences per clip, per horizon and per 1-second window, on
runs whose per-clip differences are known."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from benchmark import compare
from benchmark import run as run_cli
from benchmark.metrics.records import mean_and_stderr

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = ["--metrics", "psnr,ssim,f_psnr", "--no-progress"]
# Per-clip offsets added to every window of the baseline's records: the paired differences they give
# are known exactly.
OFFSETS = {"psnr": {"tiny00": 1.0, "tiny01": 3.0}, "ssim": {"tiny00": -0.01, "tiny01": 0.03}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_split_dir):
    root = tmp_path_factory.mktemp("paired_runs")
    args = ["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2", "--horizon", "4", "--out", str(root / "reference-copy"), *FAST]
    assert run_cli.main(args) == 0
    shifted = root / "shifted"
    shutil.copytree(root / "reference-copy", shifted, ignore=shutil.ignore_patterns("videos", "work"))
    lines = []
    for line in (shifted / "windows.jsonl").read_text().splitlines():
        row = json.loads(line)
        offset = OFFSETS.get(row["metric"], {}).get(row["clip_id"])
        if offset is not None and row["value"] is not None:
            row["value"] += offset
        lines.append(json.dumps(row))
    (shifted / "windows.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_known_offsets_give_known_paired_differences(runs):
    comparison = compare.paired_differences(compare.load_run_records(runs / "shifted"), compare.load_run_records(runs / "reference-copy"), ("psnr", "ssim"))
    for horizon in (2, 4):
        psnr = comparison.at("psnr", horizon)
        assert psnr.mean == pytest.approx(2.0, abs=1e-9)
        assert psnr.stderr == pytest.approx(1.0, abs=1e-9)  # differences 1 and 3: sd sqrt(2), over sqrt(2) clips
        assert (psnr.same_sign, psnr.num_clips) == (2, 2)
        assert psnr.clip_differences == pytest.approx({"tiny00": 1.0, "tiny01": 3.0}, abs=1e-9)
        ssim = comparison.at("ssim", horizon)
        assert ssim.mean == pytest.approx(0.01, abs=1e-12)
        assert ssim.stderr == pytest.approx(0.02, abs=1e-12)
        assert (ssim.same_sign, ssim.num_clips) == (1, 2)  # only tiny01 moved the way the mean did
    windows = [row for row in comparison.windows if row.metric == "psnr"]
    assert [row.window for row in windows] == [0, 1, 2, 3]  # every 1-s window of the 4-s evaluation
    assert all(row.mean == pytest.approx(2.0, abs=1e-9) and row.same_sign == 2 for row in windows)


def test_per_clip_values_rebuilt_from_the_window_records_match_the_results(runs):
    """The per-clip values paired are the harness's: their mean and standard error over clips are the
    run's reported numbers, for a per-frame metric, SSIM and the face-box F-PSNR (with frames
    without a face)."""
    records = compare.load_run_records(runs / "reference-copy")
    for metric in ("psnr", "ssim", "f_psnr"):
        for horizon in (2, 4):
            values = compare.clip_values(records, metric, horizon)
            assert sorted(values) == ["tiny00", "tiny01"]
            mean, stderr = mean_and_stderr(list(values.values()))
            assert mean == pytest.approx(records.results.value(metric, horizon), abs=1e-9)
            assert stderr == pytest.approx(records.results.record(metric, horizon).stderr, abs=1e-9)


def test_mean_paired_difference_is_the_difference_of_the_means(runs):
    method, baseline = compare.load_run_records(runs / "shifted"), compare.load_run_records(runs / "reference-copy")
    comparison = compare.paired_differences(method, baseline, ("psnr", "f_psnr"))
    for horizon in (2, 4):
        shifted = compare.clip_values(method, "psnr", horizon)
        assert comparison.at("psnr", horizon).mean == pytest.approx(sum(shifted.values()) / 2 - baseline.results.value("psnr", horizon), abs=1e-9)
        assert comparison.at("f_psnr", horizon).mean == 0.0  # not shifted
        assert comparison.at("f_psnr", horizon).same_sign == 2


def test_cli_prints_horizon_and_window_tables(runs, capsys):
    assert compare.main([str(runs / "shifted"), "--baseline", str(runs / "reference-copy"), "--metrics", "psnr,ssim"]) == 0
    out = capsys.readouterr().out
    assert f"paired differences, reference-copy [{runs / 'shifted'}] − reference-copy [{runs / 'reference-copy'}]" in out
    assert "+2.00 ± 1.00 [2/2]" in out and "+0.0100 ± 0.0200 [1/2]" in out
    assert "psnr ↑" in out and "per 1-s window" in out
    window_lines = [line for line in out.splitlines() if line.startswith(("0-1 s", "1-2 s", "2-3 s", "3-4 s"))]
    assert len(window_lines) == 4 and all("+2.00 ± 1.00 [2/2]" in line for line in window_lines)
    # the baseline is listed in the comparison table, and never paired with itself
    assert compare.main([str(runs / "reference-copy"), "--baseline", str(runs / "reference-copy"), "--metrics", "psnr"]) == 0
    assert "paired differences" not in capsys.readouterr().out


def test_cli_without_windows_and_in_markdown(runs, capsys):
    assert compare.main([str(runs / "shifted"), "--baseline", str(runs / "reference-copy"), "--metrics", "psnr", "--markdown", "--no-windows"]) == 0
    out = capsys.readouterr().out
    assert "| horizon | psnr ↑ |" in out and "per 1-s window" not in out


def test_metrics_without_per_clip_records_are_reported_unpaired(runs):
    records = compare.load_run_records(runs / "reference-copy")
    comparison = compare.paired_differences(records, records, ("psnr", "fid", "seam", "lpips"))
    assert comparison.at("fid", 2).unavailable_reason.startswith("FID is pooled over all clips")
    assert "no per-window records" in comparison.at("seam", 2).unavailable_reason
    assert "no per-window lpips values" in comparison.at("lpips", 2).unavailable_reason  # not measured in this run
    assert comparison.at("psnr", 2).mean == 0.0 and comparison.at("psnr", 2).same_sign == 2


def test_vmae_windows_are_rebuilt_only_when_the_horizon_ends_between_them():
    protocol = {"fps": 25, "window_s": 1.0, "vmae_window_frames": 16, "horizons_s": [2.0, 4.0]}
    # 4 s: V-MAE windows 0-5 (frames 0-95) lie inside; 1-s windows 0-3 hold them whole.
    assert compare.vmae_windows_inside(protocol, 4.0) == [0, 1, 2, 3]
    # 2 s: 1-s window 1 (frames 25-49) holds V-MAE window 2 (32-47, inside) and 3 (48-63, outside).
    with pytest.raises(compare.Unpairable, match="both sides"):
        compare.vmae_windows_inside(protocol, 2.0)
    # The protocol's horizons end between V-MAE windows: every one is rebuilt exactly.
    protocol["horizons_s"] = [10.0, 30.0, 60.0, 90.0]
    for horizon in protocol["horizons_s"]:
        windows = compare.vmae_windows_inside(protocol, horizon)
        inside = int(horizon * 25) // 16
        assert windows == sorted({k * 16 // 25 for k in range(inside)})


def test_runs_on_another_split_are_refused(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs / "shifted", other)
    data = json.loads((other / "results.json").read_text())
    data["split"]["content_hash"] = "0" * 16
    (other / "results.json").write_text(json.dumps(data))
    assert compare.main([str(other), "--baseline", str(runs / "reference-copy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "split" in err and "Traceback" not in err


def test_missing_or_broken_window_records_are_clean_errors(runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(runs / "shifted", broken)
    (broken / "windows.jsonl").unlink()
    assert compare.main([str(broken), "--baseline", str(runs / "reference-copy")]) == 2
    assert "no windows.jsonl" in capsys.readouterr().err
    (broken / "windows.jsonl").write_text('{"clip_id": "tiny00", "metric": "psnr", "window": 0, "value": 1.0, "count": 25}\nnot json\n')
    assert compare.main([str(broken), "--baseline", str(runs / "reference-copy")]) == 2
    assert "windows.jsonl, line 2: not a window record" in capsys.readouterr().err
    (broken / "windows.jsonl").write_text('{"clip_id": "tiny00", "metric": "psnr", "window": true, "value": NaN, "count": 25}\n')
    with pytest.raises(ValueError, match="line 1"):
        compare.load_windows(broken)


def test_same_sign_counts_zero_as_its_own_sign():
    row = compare.summarise_differences("psnr", {"a": 0.0, "b": 0.0})
    assert (row.mean, row.same_sign) == (0.0, 2)
    row = compare.summarise_differences("psnr", {"a": -1.0, "b": 0.0, "c": -2.0})
    assert row.mean == -1.0 and row.same_sign == 2 and math.isclose(row.stderr, math.sqrt(1 / 3))
    assert compare.summarise_differences("psnr", {}).unavailable_reason == "no clip has a value in both runs"
