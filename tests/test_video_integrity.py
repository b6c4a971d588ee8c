"""Video files that are damaged, written concurrently, or read only in part: slice CRCs, unique temporary
names, and readers that close quietly."""

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.error import FFmpegError

from benchmark.errors import ClipError
from benchmark.video import LOSSLESS_PIX_FMT, VideoInfo, VideoWriter, concat_videos, iter_frames, probe, read_frames, write_video

ROOT = Path(__file__).resolve().parents[1]
NUM_FRAMES, HEIGHT, WIDTH = 12, 96, 64
DAMAGED = 5


def frames(n=NUM_FRAMES, seed=0):
    """Smooth gradients with a moving block: compressible like real video, different in every frame."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    out = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (xx * 3 + i * 7 + seed) % 256
        out[i, ..., 1] = (yy * 2 + seed) % 256
        out[i, ..., 2] = (xx + yy) * (i + 1) % 256
        out[i, 20 + i : 40 + i, 10:30] = (255, 255 - 10 * i, 40)
    return torch.from_numpy(out)


def write_without_crcs(path, video):
    """FFV1 level 3 as VideoWriter writes it, except for the slice CRCs."""
    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=25, options={"level": "3", "slicecrc": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, LOSSLESS_PIX_FMT
        for image in video.numpy():
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def packet_spans(path):
    with av.open(str(path)) as container:
        return [(packet.pos, packet.size) for packet in container.demux(container.streams.video[0]) if packet.size > 0]


def flip_bytes_in_frame(path, frame, count=16):
    """Invert ``count`` bytes inside frame ``frame``'s payload, a third of the way into its packet (inside
    the second of its four slices, clear of the slice trailers)."""
    pos, size = packet_spans(path)[frame]
    assert size > 3 * count
    data = bytearray(Path(path).read_bytes())
    first = pos + size // 3
    data[first : first + count] = bytes(b ^ 0xFF for b in data[first : first + count])
    Path(path).write_bytes(bytes(data))


def test_writer_pins_ffv1_level_3_with_slice_crcs(tmp_path):
    write_video(tmp_path / "crc.mkv", frames(), 25)
    write_without_crcs(tmp_path / "plain.mkv", frames())
    with av.open(str(tmp_path / "crc.mkv")) as container:
        context = container.streams.video[0].codec_context
        assert context.extradata  # level 3 keeps its parameters in a global header
    # Same frames and level, 4 slices each: an error byte and a 4-byte CRC per slice is 20 bytes a frame.
    crc, plain = packet_spans(tmp_path / "crc.mkv"), packet_spans(tmp_path / "plain.mkv")
    assert [size for _, size in crc] == [size + 20 for _, size in plain]
    assert torch.equal(read_frames(tmp_path / "crc.mkv"), frames())


def test_a_damaged_frame_fails_with_a_named_clip_error(tmp_path):
    path = tmp_path / "v.mkv"
    write_video(path, frames(), 25)
    flip_bytes_in_frame(path, DAMAGED)
    with pytest.raises(ClipError, match=rf"clip 'c', file .*v.mkv: corrupt video at frame {DAMAGED}: slice 2 of 4 does not match its CRC"):
        list(iter_frames(path, batch_size=4, clip_id="c"))
    with pytest.raises(ClipError, match=f"frame {DAMAGED}"):
        list(iter_frames(path, start=DAMAGED + 1, clip_id="c"))  # later frames depend on the damaged one
    assert torch.equal(read_frames(path, stop=DAMAGED), frames()[:DAMAGED])


def test_without_slice_crcs_the_same_damage_decodes_silently(tmp_path):
    path = tmp_path / "plain.mkv"
    write_without_crcs(path, frames())
    flip_bytes_in_frame(path, DAMAGED)
    decoded = torch.cat(list(iter_frames(path, clip_id="c")))
    assert decoded.shape == frames().shape
    assert torch.equal(decoded[:DAMAGED], frames()[:DAMAGED])
    assert not torch.equal(decoded[DAMAGED], frames()[DAMAGED])


def test_a_damaged_slice_trailer_is_caught_too(tmp_path):
    path = tmp_path / "v.mkv"
    write_video(path, frames(), 25)
    pos, size = packet_spans(path)[0]
    data = bytearray(path.read_bytes())
    data[pos + size - 8] ^= 0x7F  # the last slice's size field
    path.write_bytes(bytes(data))
    with pytest.raises(ClipError, match="corrupt video at frame 0"):
        list(iter_frames(path, clip_id="c"))


def test_concatenated_segments_keep_their_crcs(tmp_path):
    write_video(tmp_path / "a.mkv", frames(6, seed=1), 25)
    write_video(tmp_path / "b.mkv", frames(6, seed=2), 25)
    assert concat_videos([tmp_path / "a.mkv", tmp_path / "b.mkv"], tmp_path / "c.mkv") == 12
    flip_bytes_in_frame(tmp_path / "c.mkv", 8)
    with pytest.raises(ClipError, match="corrupt video at frame 8"):
        list(iter_frames(tmp_path / "c.mkv"))


def test_two_writers_of_one_path_both_complete(tmp_path):
    path = tmp_path / "v.mkv"
    first, second = frames(seed=1), frames(seed=2)
    one = VideoWriter(path, 25, WIDTH, HEIGHT)
    two = VideoWriter(path, 25, WIDTH, HEIGHT)
    for a, b in zip(first.split(3), second.split(3)):
        one.write(a)
        two.write(b)
    one.close()
    assert torch.equal(read_frames(path), first)
    two.close()
    assert torch.equal(read_frames(path), second)
    assert probe(path).num_frames == NUM_FRAMES
    assert [p.name for p in tmp_path.iterdir()] == ["v.mkv"]


def test_temporary_files_are_removed_on_failure_and_keep_normal_permissions(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "v.mkv", 25, WIDTH, HEIGHT) as writer:
            writer.write(frames(2))
            assert len([p for p in tmp_path.iterdir() if p.name.startswith(".v.") and p.name.endswith(".partial.mkv")]) == 1
            raise RuntimeError("interrupted")
    with pytest.raises(FFmpegError):
        concat_videos([tmp_path / "missing.mkv"], tmp_path / "c.mkv")
    assert not list(tmp_path.iterdir())
    write_video(tmp_path / "v.mkv", frames(2), 25)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "v.mkv").stat().st_mode & 0o777 == 0o666 & ~umask


SCRIPT = """
import sys
from benchmark.video import iter_frames
frames = iter_frames(sys.argv[1], batch_size=4)
batch = next(frames)
assert batch.shape[0] == 4
if sys.argv[2] == "module":
    sys._held_frames = frames  # released while modules are torn down, after av's, with stderr still open
elif sys.argv[2] == "loop":
    for batch in iter_frames(sys.argv[1], batch_size=4):
        break
print("read", batch.shape[0])
"""


@pytest.mark.parametrize("holder", ["main", "module", "loop"])
def test_a_reader_stopped_early_exits_quietly(tmp_path, holder):
    write_video(tmp_path / "v.mkv", frames(), 25)
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path / "v.mkv"), holder], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout == "read 4\n"
    assert done.stderr == ""


@pytest.mark.parametrize(
    "codec, pix_fmt, lossless",
    [
        ("ffv1", "bgr0", True),
        ("ffv1", "gbrp10le", True),
        ("png", "rgb24", True),
        ("utvideo", "gbrap", True),
        ("ffv1", "yuv444p", False),
        ("ffv1", "yuv420p", False),
        ("h264", "yuv444p", False),
        ("h264", "gbrp", False),
        ("mjpeg", "yuvj420p", False),
    ],
)
def test_lossless_needs_a_lossless_codec_and_rgb_pixels(codec, pix_fmt, lossless):
    assert VideoInfo("v", 25.0, 1, 2, 2, codec, pix_fmt).lossless is lossless


def test_probe_reports_the_pixel_format(tmp_path):
    write_video(tmp_path / "v.mkv", frames(2), 25)
    info = probe(tmp_path / "v.mkv")
    assert (info.codec, info.pix_fmt, info.lossless) == ("ffv1", "bgr0", True)
