"""Untrusted input stays in its folder, bad arguments fail before any generation, and every input
mistake is a one-line message with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import run as run_cli
from benchmark.errors import ClipError, ManifestError
from benchmark.files import UnsafePathError, check_clip_id, remove_inside, resolve_inside
from benchmark.lock import FolderLock
from benchmark.metrics.spec import METRICS
from benchmark.results import RunResults
from benchmark.splits import __main__ as splits_cli
from benchmark.splits import manifest as manifest_module
from benchmark.splits.manifest import MANIFEST_NAME, content_hash, load_split

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--metrics", "psnr", "--no-progress"]


def edit_manifest(root: Path, edit) -> None:
    """Apply ``edit`` to the manifest document and re-seal its content hash, as an attacker can."""
    path = root / MANIFEST_NAME
    document = json.loads(path.read_text())
    edit(document)
    if isinstance(document, dict) and isinstance(document.get("clips"), list) and all(isinstance(c, dict) for c in document["clips"]):
        meta = {k: document[k] for k in ("name", "version", "fps", "width", "height", "face_size", "keypoint_layout")}
        document["content_hash"] = content_hash([manifest_module.ClipRecord(**c) for c in document["clips"]], meta)
    path.write_text(json.dumps(document))


def set_clip(index: int, **changes):
    def edit(document):
        document["clips"][index].update(changes)

    return edit


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ---- confinement ------------------------------------------------------------------------------


@pytest.mark.parametrize("clip_id", ["..", "../victim", "../../escape", "/tmp/absolute", "a/b", "a\\b", ".hidden", "", "x" * 129, "bad id"])
def test_unsafe_clip_ids_are_refused(clip_id):
    with pytest.raises(ClipError, match="not a safe name"):
        check_clip_id(clip_id)


@pytest.mark.parametrize("clip_id", ["..", "../../victim", "/tmp/escape", "sub/dir"])
def test_a_run_never_touches_anything_outside_out(tmp_path, tiny_split_copy, clip_id, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    edit_manifest(tiny_split_copy, set_clip(0, id=clip_id))
    before = tree(tmp_path)
    out = tmp_path / "runs" / "out"
    code = run_cli.main(["--method", "reference-copy", "--split", str(tiny_split_copy), "--horizon", "2", "--out", str(out), *FAST])
    assert code == 2
    assert "not a safe name" in capsys.readouterr().err
    assert (victim / "precious.txt").read_text() == "keep me"
    assert tree(tmp_path) == before and not out.exists()


@pytest.mark.parametrize("value", ["../outside/red.png", "/etc/passwd", "tiny00/../../outside/red.png", "~/red.png"])
def test_file_fields_outside_the_split_are_refused(tiny_split_copy, tmp_path, value):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((48, 32, 3), np.uint8)).save(outside / "red.png")
    edit_manifest(tiny_split_copy, set_clip(0, reference=value))
    with pytest.raises(ClipError, match="outside the split folder|outside"):
        load_split(tiny_split_copy)


def test_a_symlink_out_of_the_split_is_refused(tiny_split_copy, tmp_path):
    outside = tmp_path / "outside.png"
    shutil.copy(tiny_split_copy / "tiny00" / "reference.png", outside)
    (tiny_split_copy / "tiny00" / "reference.png").unlink()
    (tiny_split_copy / "tiny00" / "reference.png").symlink_to(outside)
    with pytest.raises(ClipError, match=r"clip 'tiny00'.*resolves to .*outside\.png, outside"):
        load_split(tiny_split_copy, verify="full")
    (tiny_split_copy / "tiny00").rename(tiny_split_copy / "real")
    (tiny_split_copy / "tiny00").symlink_to(tmp_path)  # a folder link leaving the split
    with pytest.raises(ClipError, match="outside"):
        load_split(tiny_split_copy)


def test_resolve_and_remove_stay_inside(tmp_path):
    assert resolve_inside(tmp_path, "a/b.txt") == tmp_path.resolve() / "a" / "b.txt"
    for bad in ("..", "../x", "/abs", "a/../../x", ".", None, 3):
        with pytest.raises(ClipError):
            resolve_inside(tmp_path, bad)
    inside, outside = tmp_path / "out", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    with pytest.raises(UnsafePathError):
        remove_inside(inside, outside)
    with pytest.raises(UnsafePathError):
        remove_inside(inside, inside)
    with pytest.raises(UnsafePathError):
        remove_inside(inside, inside / ".." / "elsewhere")
    (inside / "link").symlink_to(outside)
    remove_inside(inside, inside / "link")  # removes the link, never what it points to
    assert outside.is_dir() and not (inside / "link").exists()


def test_the_reference_must_be_frame_zero(tiny_split_copy):
    path = tiny_split_copy / "tiny01" / "reference.png"
    image = np.asarray(Image.open(path)).copy()
    image[0, 0] ^= 1
    Image.fromarray(image).save(path)
    edit_manifest(tiny_split_copy, set_clip(1, reference_sha256=manifest_module.sha256_file(path)))
    with pytest.raises(ClipError, match=r"clip 'tiny01'.*reference differs from frame 0.*max difference 1"):
        load_split(tiny_split_copy)


def test_hf_import_refuses_unsafe_ids(tiny_split, tmp_path):
    pytest.importorskip("datasets")
    import datasets

    from benchmark.splits.hf import export_split, import_split

    exported = export_split(tiny_split, tmp_path / "ds")
    dataset = datasets.load_from_disk(str(exported))

    def hostile(row, index):
        record = json.loads(row["record"])
        if index == 0:
            record["id"] = "../../victim"
        return {"record": json.dumps(record)}

    dataset.map(hostile, with_indices=True, keep_in_memory=True).save_to_disk(str(tmp_path / "hostile"))
    with pytest.raises(ClipError, match="not a safe name"):
        import_split(tmp_path / "hostile", tmp_path / "imported")
    assert not (tmp_path / "imported").exists() and not (tmp_path / "victim").exists()


def test_builder_refuses_unsafe_file_names(tmp_path):
    from benchmark.splits.sources import find_videos

    (tmp_path / "bad name.mp4").write_bytes(b"")
    with pytest.raises(ClipError, match="not a safe one"):
        find_videos(tmp_path)


# ---- manifest types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.clear() or d.update({"x": 1}), "not a split manifest"),
        (lambda d: d.update(clips="tiny00"), "field 'clips' must be a non-empty list, got 'tiny00'"),
        (lambda d: d.update(clips=[1, 2]), r"clips\[0\] must be an object, got 1 \(int\)"),
        (lambda d: d.update(clips=[]), "field 'clips' must be a non-empty list"),
        (lambda d: d.update(width="64"), "field 'width' must be a positive integer, got '64' \\(str\\)"),
        (lambda d: d.update(fps=True), "field 'fps' must be a positive integer, got True"),
        (lambda d: d.update(name=None), "field 'name' must be a string"),
        (set_clip(0, video=None), r"clip 'tiny00'.*field 'video' must be a string, got None"),
        (set_clip(0, width="32"), r"clip 'tiny00'.*field 'width' must be a positive integer, got '32' \(str\)"),
        (set_clip(1, num_frames=-5), r"clip 'tiny01'.*field 'num_frames' must be a positive integer, got -5"),
        (set_clip(0, fps=float("nan")), r"field 'fps' must be a positive finite number"),
        (set_clip(0, video_sha256="abc"), r"field 'video_sha256' must be a sha256 hex digest"),
        (set_clip(0, resampling=[]), r"field 'resampling' must be an object"),
        (set_clip(0, id=7), r"clip '#0'.*field 'id' must be a string, got 7"),
        (set_clip(1, id="TINY00"), "collide"),
    ],
)
def test_manifest_type_errors_name_the_field_and_value(tiny_split_copy, edit, message):
    edit_manifest(tiny_split_copy, edit)
    with pytest.raises((ManifestError, ClipError), match=message):
        load_split(tiny_split_copy)


def test_manifest_that_is_a_list_or_a_folder(tmp_path):
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(ManifestError, match="must be a JSON object, got list"):
        load_split(tmp_path / "list")
    (tmp_path / "folder" / MANIFEST_NAME).mkdir(parents=True)
    with pytest.raises(ManifestError, match="is not a regular file"):
        load_split(tmp_path / "folder")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / MANIFEST_NAME).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_split(tmp_path / "binary")


# ---- fail fast ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "reference-copy", "--metrics", "psnr,bogus"], "unknown metric(s) bogus"),
        (["--method", "reference-copy", "--horizon", "2.5"], "not a whole number of 1 s drift windows"),
        (["--method", "reference-copy", "--horizon", "0.01"], "not a whole number of 1 s drift windows"),
        (["--method", "reference-copy", "--horizon", "nan"], "positive, finite"),
        (["--method", "reference-copy", "--horizon", "-2"], "positive, finite"),
        (["--method", "reference-copy", "--horizon", "11"], "supports horizons up to 10 s"),
        (["--method", "reference-copy", "--device", "cuda:7"], "--device cuda:7"),
        (["--method", "reference-copy", "--device", "tpu"], "--device 'tpu'"),
        (["--method", "methods.sanity:Nope"], "has no 'Nope'"),
        (["--method", "json:JSONDecoder"], "not a concrete methods.base"),
        (["--method", "reference-copy", "--method-arg", "steps=4"], "has no option 'steps'"),
        (["--method", "fake_methods:Sampler", "--method-arg", "stepz=2"], "has no option 'stepz'; its options: delay, steps"),
        (["--method", "fake_methods:Sampler", "--method-arg", "steps=0"], "sampling steps must be at least 1"),
        (["--method", "reference-copy", "--limit", "0"], "--limit must be at least 1"),
        (["--method", "reference-copy", "--split", "/nonexistent/split"], "unknown split"),
    ],
)
def test_bad_arguments_exit_2_before_any_generation(tmp_path, tiny_split_dir, args, message, capsys):
    out = tmp_path / "out"
    full = [*args, "--out", str(out), "--no-progress"]
    if "--split" not in args:
        full += ["--split", str(tiny_split_dir)]
    if "--metrics" not in args:
        full += ["--metrics", "psnr"]
    if "--horizon" not in args:
        full += ["--horizon", "2"]
    code = run_cli.main(full)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "videos").exists() and not (out / "work").exists()


def test_resume_and_overwrite_are_mutually_exclusive(tmp_path, tiny_split_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli.main(["--method", "reference-copy", "--split", str(tiny_split_dir), "--out", str(tmp_path / "o"), "--resume", "--overwrite"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_cli_process_prints_one_line_and_no_traceback(tmp_path, tiny_split_dir):
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.run", "--method", "reference-copy", "--split", str(tiny_split_dir), "--metrics", "psnr,ssmi", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: --metrics 'psnr,ssmi': unknown metric(s) ssmi; choose from {','.join(METRICS)}"]
    assert not (tmp_path / "o" / "videos").exists()


# ---- the recorded protocol ----------------------------------------------------------------------


def test_a_steps_override_is_in_the_recorded_protocol(tmp_path, tiny_split_dir):
    base = ["--method", "fake_methods:Sampler", "--split", str(tiny_split_dir), "--horizon", "2", *FAST]
    assert run_cli.main([*base, "--out", str(tmp_path / "default")]) == 0
    assert run_cli.main([*base, "--method-arg", "steps=4", "--out", str(tmp_path / "four")]) == 0
    default, four = (RunResults.load(tmp_path / name / "results.json") for name in ("default", "four"))
    assert default.protocol["sampling_steps"] == 20 and four.protocol["sampling_steps"] == 4
    assert default.protocol_hash != four.protocol_hash
    from benchmark import compare

    with pytest.raises(compare.IncomparableRuns, match=r"sampling_steps \(4 vs 20\)"):
        compare.check_comparable({"default": default, "four": four})


# ---- one run per folder -------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_run(tmp_path, tiny_split_dir, capsys):
    out = tmp_path / "out"
    with FolderLock(out):
        code = run_cli.main(["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2", "--out", str(out), *FAST])
        assert code == 2
        assert f"is in use by another run (pid {os.getpid()}" in capsys.readouterr().err
        assert not (out / "videos").exists()
    assert not (out / ".lock").exists()


def test_a_stale_lock_is_taken_over(tmp_path, tiny_split_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": "yesterday"}))
    code = run_cli.main(["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "2", "--out", str(out), *FAST])
    assert code == 0
    assert "left by a run that no longer holds it (pid 999999 on elsewhere since yesterday)" in capsys.readouterr().err
    assert not (out / ".lock").exists()


def test_two_concurrent_runs_into_one_folder(tmp_path, tiny_split_dir):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmark.run", "--method", "fake_methods:Sampler", "--split", str(tiny_split_dir), "--horizon", "10", "--out", str(out), *FAST]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    first = subprocess.Popen([*command, "--method-arg", "delay=2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "work").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, "the first run ended before the second started"
    second = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 2
    assert "is in use by another run" in second.stderr
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    results = RunResults.load(out / "results.json")
    assert results.comparable and results.clips_evaluated == ["tiny00", "tiny01"]


# ---- corruption ---------------------------------------------------------------------------------


def test_resume_regenerates_nothing_when_finished_and_a_changed_video_when_not(tmp_path, tiny_split_dir):
    args = ["--method", "reference-copy", "--split", str(tiny_split_dir), "--horizon", "4", "--out", str(tmp_path / "out"), *FAST]
    assert run_cli.main(args) == 0
    video = tmp_path / "out" / "videos" / "tiny00.mkv"
    original = video.read_bytes()
    assert run_cli.main([*args, "--resume"]) == 0
    assert RunResults.load(tmp_path / "out" / "results.json").timing["chunks_generated"] == 0
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    video.write_bytes(bytes(damaged))
    assert run_cli.main([*args, "--resume"]) == 0
    results = RunResults.load(tmp_path / "out" / "results.json")
    assert results.timing["chunks_generated"] == 2  # tiny00 again (100 frames: 2 chunks), tiny01 kept
    assert video.read_bytes() == original


# ---- hashing once -------------------------------------------------------------------------------


def test_files_are_hashed_once_then_checked_by_size_and_time(tiny_split_copy, monkeypatch):
    load_split(tiny_split_copy)
    calls = []
    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda path: calls.append(Path(path).name) or real(path))
    load_split(tiny_split_copy)
    assert calls == []
    path = tiny_split_copy / "tiny00" / "keypoints.npz"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    load_split(tiny_split_copy)
    assert len(calls) == 10  # any change re-verifies the whole split
    calls.clear()
    load_split(tiny_split_copy, verify="none")
    assert calls == []
    load_split(tiny_split_copy, verify="full")
    assert len(calls) == 10


def test_a_changed_file_with_the_same_size_is_caught(tiny_split_copy):
    load_split(tiny_split_copy)
    path = tiny_split_copy / "tiny00" / "keypoints.npz"
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ClipError, match="sha256 differs"):
        load_split(tiny_split_copy)


def test_verify_command(tiny_split_dir, capsys):
    assert splits_cli.main(["verify", str(tiny_split_dir)]) == 0
    assert "2 clips, 10 files verified" in capsys.readouterr().out
