"""``benchmark.evaluate --videos DIR`` on awkward folders: ambiguous, unknown, missing, lossy and damaged
files, each failing or flagging only its own clip; and what the results record about every video."""

from pathlib import Path

import av
import numpy as np
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
