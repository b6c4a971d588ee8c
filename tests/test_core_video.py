import pytest
import torch

from benchmark.errors import ClipError
from benchmark.video import VideoWriter, concat_videos, iter_frames, prefetch, probe, read_frames, write_video


def frames(n=30, seed=0):
    return torch.randint(0, 256, (n, 48, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_lossless_and_bit_exact(tmp_path):
    f = frames()
    write_video(tmp_path / "a.mkv", f, 25)
    write_video(tmp_path / "b.mkv", f, 25)
    assert torch.equal(read_frames(tmp_path / "a.mkv"), f)
    assert (tmp_path / "a.mkv").read_bytes() == (tmp_path / "b.mkv").read_bytes()
    info = probe(tmp_path / "a.mkv")
    assert (info.num_frames, info.width, info.height, info.fps, info.codec) == (30, 32, 48, 25.0, "ffv1")


def test_concat_copies_packets(tmp_path):
    a, b = frames(10, 1), frames(7, 2)
    write_video(tmp_path / "a.mkv", a, 25)
    write_video(tmp_path / "b.mkv", b, 25)
    assert concat_videos([tmp_path / "a.mkv", tmp_path / "b.mkv"], tmp_path / "out" / "c.mkv") == 17
    assert torch.equal(read_frames(tmp_path / "out" / "c.mkv"), torch.cat([a, b]))
    assert probe(tmp_path / "out" / "c.mkv").fps == 25.0


def test_batches_ranges_and_truncation(tmp_path):
    f = frames()
    write_video(tmp_path / "a.mkv", f, 25)
    batches = list(iter_frames(tmp_path / "a.mkv", batch_size=8, start=3, stop=20))
    assert [b.shape[0] for b in batches] == [8, 8, 1]
    assert torch.equal(torch.cat(batches), f[3:20])
    with pytest.raises(ClipError, match=r"clip 'c'.*a.mkv: video has 30 frames, 40 needed"):
        list(iter_frames(tmp_path / "a.mkv", stop=40, clip_id="c"))
    with pytest.raises(ClipError, match="frame 0 is 32x48, expected 48x32"):
        list(iter_frames(tmp_path / "a.mkv", expected_size=(48, 32)))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ClipError, match="does not exist"):
        probe(tmp_path / "nope.mkv", "c")
    (tmp_path / "bad.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(200))
    with pytest.raises(ClipError, match=r"clip 'c'.*bad.mkv"):
        list(iter_frames(tmp_path / "bad.mkv", clip_id="c"))


def test_writer_is_atomic_and_checks_frames(tmp_path):
    path = tmp_path / "v.mkv"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 25, 32, 48) as writer:
            writer.write(frames(5))
            raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())
    with pytest.raises(ClipError, match="uint8"):
        with VideoWriter(path, 25, 32, 48) as writer:
            writer.write(torch.zeros((2, 48, 32, 3)))
    assert not path.exists()


def test_prefetch_preserves_order_and_errors():
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise ClipError("c", "f.mkv", "boom")

    with pytest.raises(ClipError, match="boom"):
        list(prefetch(broken()))
