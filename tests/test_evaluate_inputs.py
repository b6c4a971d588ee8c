"""``benchmark.evaluate --videos DIR`` on awkward folders: ambiguous, unknown, missing, lossy and damaged
files, each failing or flagging only its own clip; and what the results record about every video."""

from pathlib import Path

import av
import pytest

from benchmark import evaluate as evaluate_cli
from benchmark import run as run_cli
from benchmark.evaluate import VIDEO_EXTENSIONS
from benchmark.results import RunResults
from benchmark.video import read_frames, write_video

FAST = ["--metrics", "psnr,ssim", "--no-progress", "--horizon", "4"]
FFV1_RECORD = {"codec": "ffv1", "pix_fmt": "bgr0", "lossless": True}


@pytest.fixture(scope="module")
def truth(tiny_split):
    return {clip.id: read_frames(tiny_split.path(clip, "video")) for clip in tiny_split.clips}


def evaluate(videos: Path, split_dir: Path, out: Path) -> tuple[int, RunResults]:
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(split_dir), "--out", str(out), *FAST])
    return code, RunResults.load(out / "results.json")


def write_h264(path: Path, frames) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames.numpy():
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_several_candidates_fail_only_their_clip(tmp_path, tiny_split_dir, truth, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "tiny00.mkv", truth["tiny00"], 25)
    write_video(videos / "tiny00.mp4", truth["tiny00"], 25)
    write_video(videos / "tiny01.mkv", truth["tiny01"], 25)
    code, results = evaluate(videos, tiny_split_dir, tmp_path / "eval")
    assert code == 1
    assert results.clips_evaluated == ["tiny01"] and list(results.clips_failed) == ["tiny00"]
    reason = results.clips_failed["tiny00"]
    assert "clip 'tiny00'" in reason and "tiny00.mkv, tiny00.mp4" in reason and "keep exactly one" in reason
    assert results.value("psnr", 4) == 100.0
    assert "warning" not in capsys.readouterr().err


def test_files_matching_no_clip_are_named_in_one_warning(tmp_path, tiny_split_dir, truth, capsys):
    videos = tmp_path / "videos"
    for clip_id, frames in truth.items():
        write_video(videos / f"{clip_id}.mkv", frames, 25)
    write_video(videos / "tiny02.mkv", truth["tiny00"], 25)
    (videos / "notes.txt").write_text("submitted by us")
    (videos / ".DS_Store").write_bytes(b"\0")
    (videos / "evaluation").mkdir()
    (videos / "evaluation" / "stale.mkv").write_bytes(b"")
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(tiny_split_dir), *FAST])
    assert code == 0
    assert RunResults.load(videos / "evaluation" / "results.json").clips_evaluated == ["tiny00", "tiny01"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1
    assert "notes.txt, tiny02.mkv" in warnings[0] and str(videos) in warnings[0]
    assert ".DS_Store" not in warnings[0] and "stale" not in warnings[0] and "evaluation" not in warnings[0]


def test_a_missing_video_names_the_folder_and_the_extensions(tmp_path, tiny_split_dir, truth):
    videos = tmp_path / "videos"
    write_video(videos / "tiny00.mkv", truth["tiny00"], 25)
    (videos / "tiny01.m4v").write_bytes(b"")
    code, results = evaluate(videos, tiny_split_dir, tmp_path / "eval")
    assert code == 1 and results.clips_evaluated == ["tiny00"]
    reason = results.clips_failed["tiny01"]
    assert "no video for this clip" in reason and str(videos) in reason
    assert all(ext in reason for ext in VIDEO_EXTENSIONS)
    assert reason.endswith("not accepted: tiny01.m4v")


def test_an_h264_submission_is_recorded_as_lossy(tmp_path, tiny_split_dir, truth, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_h264(videos / "tiny00.mp4", truth["tiny00"])
    write_video(videos / "tiny01.mkv", truth["tiny01"], 25)
    code, results = evaluate(videos, tiny_split_dir, tmp_path / "eval")
    assert code == 0
    assert results.clip_videos == {
        "tiny00": {"file": "tiny00.mp4", "codec": "h264", "pix_fmt": "yuv420p", "lossless": False},
        "tiny01": {"file": "tiny01.mkv", **FFV1_RECORD},
    }
    assert results.value("psnr", 4) < 100.0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "lossy" in line]
    assert len(warnings) == 1 and "tiny00 (h264 yuv420p)" in warnings[0] and "tiny01" not in warnings[0]


def test_an_ffv1_submission_is_recorded_as_lossless(tmp_path, tiny_split_dir, truth, capsys):
    videos = tmp_path / "videos"
    for clip_id, frames in truth.items():
        write_video(videos / f"{clip_id}.mkv", frames, 25)
    code, results = evaluate(videos, tiny_split_dir, tmp_path / "eval")
    assert code == 0
    assert results.clip_videos == {clip_id: {"file": f"{clip_id}.mkv", **FFV1_RECORD} for clip_id in truth}
    assert "lossy" not in capsys.readouterr().err
    assert "clip_videos" in (tmp_path / "eval" / "results.json").read_text()


def test_a_damaged_submission_fails_its_clip_at_the_frame(tmp_path, tiny_split_dir, truth):
    videos = tmp_path / "videos"
    for clip_id, frames in truth.items():
        write_video(videos / f"{clip_id}.mkv", frames, 25)
    path = videos / "tiny01.mkv"
    with av.open(str(path)) as container:
        pos, size = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size > 0][10]
    data = bytearray(path.read_bytes())
    data[pos + size // 3 : pos + size // 3 + 16] = bytes(16)
    path.write_bytes(bytes(data))
    code, results = evaluate(videos, tiny_split_dir, tmp_path / "eval")
    assert code == 1 and results.clips_evaluated == ["tiny00"]
    assert "tiny01.mkv" in results.clips_failed["tiny01"] and "corrupt video at frame 10" in results.clips_failed["tiny01"]


def test_the_runner_records_its_own_videos_as_lossless(tmp_path, tiny_split_dir):
    out = tmp_path / "run"
    code = run_cli.main(["--method", "reference-copy", "--split", str(tiny_split_dir), "--limit", "1", "--out", str(out), *FAST])
    assert code == 0
    assert RunResults.load(out / "results.json").clip_videos == {"tiny00": {"file": "tiny00.mkv", **FFV1_RECORD}}


def test_results_written_before_clip_videos_still_load(tmp_path, tiny_split_dir, truth):
    videos = tmp_path / "videos"
    for clip_id, frames in truth.items():
        write_video(videos / f"{clip_id}.mkv", frames, 25)
    _, results = evaluate(videos, tiny_split_dir, tmp_path / "eval")
    old = results.to_dict()
    del old["clip_videos"]
    old["schema_version"] = "1.0"
    loaded = RunResults.from_dict(old)
    assert loaded.clip_videos == {} and loaded.value("psnr", 4) == 100.0
    old["schema_version"] = "0.9"
    with pytest.raises(ValueError, match="results schema '0.9'"):
        RunResults.from_dict(old)


# ---- chunk structure: the seam score only where it is known --------------------------------------
SEAMS = ["--metrics", "psnr,seam", "--no-progress", "--horizon", "4"]


@pytest.fixture(scope="module")
def lossy_copies(tmp_path_factory, truth):
    """An H.264 copy of every ground-truth clip: small compression changes in every frame, no seams."""
    videos = tmp_path_factory.mktemp("lossy")
    for clip_id, frames in truth.items():
        write_h264(videos / f"{clip_id}.mp4", frames)
    return videos


def evaluate_with(videos: Path, split_dir: Path, out: Path, *extra: str) -> tuple[int, RunResults]:
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(split_dir), "--out", str(out), *SEAMS, *extra])
    return code, RunResults.load(out / "results.json")


def test_without_carry_over_the_seam_score_is_unavailable_with_the_reason(tmp_path, tiny_split_dir, lossy_copies, capsys):
    code, results = evaluate_with(lossy_copies, tiny_split_dir, tmp_path / "eval")
    assert code == 0
    seam = results.record("seam", 4)
    assert seam.value is None and seam.unavailable_reason == evaluate_cli.CHUNK_STRUCTURE_UNKNOWN
    assert "pass --carry-over FRAMES (and --chunk-frames)" in seam.unavailable_reason
    assert results.value("psnr", 4) < 100
    assert results.method["arguments"]["carry_over"] == "unknown"
    assert results.protocol["carry_over"] == 0 and results.protocol["chunk_frames"] == 77
    assert "n/a seam: chunk structure unknown" in capsys.readouterr().out


def test_a_given_chunk_structure_is_scored_and_recorded(tmp_path, tiny_split_dir, lossy_copies):
    code, results = evaluate_with(lossy_copies, tiny_split_dir, tmp_path / "eval", "--carry-over", "0")
    assert code == 0
    assert results.value("seam", 4) is not None and results.record("seam", 4).unavailable_reason is None
    assert results.method["arguments"] == {"videos": str(lossy_copies), "carry_over": 0, "chunk_frames": 77}

    code, short = evaluate_with(lossy_copies, tiny_split_dir, tmp_path / "short", "--carry-over", "2", "--chunk-frames", "30")
    assert code == 0
    assert (short.protocol["chunk_frames"], short.protocol["carry_over"]) == (30, 2)
    assert short.method["arguments"]["chunk_frames"] == 30
    # Boundaries at 30, 58 and 86 instead of 77: another seam score from the same frames.
    assert short.value("seam", 4) is not None and short.value("seam", 4) != results.value("seam", 4)
    assert short.value("psnr", 4) == results.value("psnr", 4)


def test_evaluations_with_and_without_a_chunk_structure_compare(tmp_path, tiny_split_dir, lossy_copies, capsys):
    from benchmark import compare

    evaluate_with(lossy_copies, tiny_split_dir, tmp_path / "unknown")
    evaluate_with(lossy_copies, tiny_split_dir, tmp_path / "known", "--carry-over", "2", "--chunk-frames", "30")
    capsys.readouterr()
    assert compare.main([str(tmp_path / "unknown"), str(tmp_path / "known"), "--metrics", "psnr,seam"]) == 0
    table = capsys.readouterr().out
    assert "external (carry_over=unknown)" in table and "external (carry_over=2" in table


@pytest.mark.parametrize("arguments, message", [(["--carry-over", "77"], "carry-over must be in [0, 77)"), (["--carry-over", "1", "--chunk-frames", "1"], "chunk_frames")])
def test_an_impossible_chunk_structure_is_an_input_error(tmp_path, tiny_split_dir, lossy_copies, capsys, arguments, message):
    code = evaluate_cli.main(["--videos", str(lossy_copies), "--split", str(tiny_split_dir), "--out", str(tmp_path / "eval"), *SEAMS, *arguments])
    assert code == 2
    assert message in capsys.readouterr().err and not (tmp_path / "eval").exists()


# ---- default horizons ---------------------------------------------------------------------------
def test_default_horizons_are_the_ones_the_split_holds(tmp_path, tiny_split_dir, truth, capsys):
    videos = tmp_path / "videos"
    for clip_id, frames in truth.items():
        write_video(videos / f"{clip_id}.mkv", frames, 25)
    code = evaluate_cli.main(["--videos", str(videos), "--split", str(tiny_split_dir), "--out", str(tmp_path / "eval"), "--metrics", "psnr", "--no-progress"])
    assert code == 0
    assert RunResults.load(tmp_path / "eval" / "results.json").horizons == [10.0]
    notes = [line for line in capsys.readouterr().err.splitlines() if "dropped" in line]
    assert notes == ["note: horizons 30, 60, 90 s dropped: the shortest clip is 10.0 s"]


def test_no_default_horizon_fitting_is_an_input_error_naming_the_longest(tmp_path, capsys):
    from conftest import make_tiny_split

    split_dir = make_tiny_split(tmp_path / "short", num_frames=112)
    (tmp_path / "videos").mkdir()
    code = evaluate_cli.main(["--videos", str(tmp_path / "videos"), "--split", str(split_dir), "--metrics", "psnr", "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "no default horizon (10, 30, 60, 90 s) fits in the shortest clip of the split (4.5 s)" in error
    assert "supports horizons up to 4 s" in error and "Traceback" not in error


def test_explicit_horizons_and_the_runner_stay_strict(tmp_path, tiny_split_dir, capsys):
    (tmp_path / "videos").mkdir()
    code = evaluate_cli.main(["--videos", str(tmp_path / "videos"), "--split", str(tiny_split_dir), "--horizon", "12", "--no-progress"])
    assert code == 2 and "horizon 12 s exceeds the shortest clip" in capsys.readouterr().err
    code = run_cli.main(["--method", "ground-truth", "--split", str(tiny_split_dir), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2 and "horizon 30 s exceeds the shortest clip" in capsys.readouterr().err
