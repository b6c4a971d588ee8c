"""The chunk loop: control slicing, reflection past the end, kept frames, state and resume."""

import numpy as np
import pytest
import torch

from benchmark.errors import MethodOutputError
from benchmark.rollout import SequentialReader, build_context, generate_clip, plan_clip, reflect_indices
from benchmark.video import read_frames
from methods import registry
from methods.base import check_frames


def test_reflect_indices():
    assert reflect_indices(0, 5, 10).tolist() == [0, 1, 2, 3, 4]
    assert reflect_indices(8, 13, 10).tolist() == [8, 9, 8, 7, 6]
    assert reflect_indices(0, 4, 1).tolist() == [0, 0, 0, 0]


def test_sequential_reader_matches_full_decode(tiny_split):
    clip = tiny_split.clips[0]
    path = tiny_split.path(clip, "pose_video")
    full = read_frames(path)
    reader = SequentialReader(path, clip.id, clip.num_frames, (32, 48))
    for start, stop in [(0, 77), (74, 151), (148, 225), (222, 299), (10, 20)]:
        expected = full[torch.from_numpy(reflect_indices(start, stop, clip.num_frames))]
        assert torch.equal(reader.read(start, stop), expected)


def test_controls_are_seeded_by_clip_and_chunk(tiny_split):
    clip = tiny_split.clips[0]
    context = build_context(tiny_split, clip, tiny_split.protocol(), torch.device("cpu"))
    a = context.read_controls(0, 77, 0)
    b = context.read_controls(0, 77, 0)
    c = context.read_controls(77, 154, 1)
    assert torch.equal(torch.randn(3, generator=a.generator), torch.randn(3, generator=b.generator))
    assert not torch.equal(torch.randn(3, generator=b.generator), torch.randn(3, generator=c.generator))
    assert a.pose.shape == (77, 48, 32, 3) and a.face.shape == (77, 16, 16, 3)
    assert a.keypoints.shape == (77, 133, 3) and a.face_boxes.shape == (77, 4)


@pytest.mark.parametrize("method_name", ["ground-truth", "fake_methods:NoisyDrift"])
def test_generated_video_has_exactly_the_horizon(tmp_path, tiny_split, method_name):
    method = registry.build(method_name)
    protocol = method.effective_protocol(tiny_split.protocol())
    plan = plan_clip(protocol, tiny_split.clips[0], 229)
    video, timings = generate_clip(method, tiny_split, protocol, plan, tmp_path, "fp", False, torch.device("cpu"))
    frames = read_frames(video)
    assert frames.shape == (229, 48, 32, 3)
    # 229 frames: chunks of 77 with stride 77 (no carry-over) need 3, with stride 74 (carry 3) need 4.
    assert len(timings) == len(plan.starts) == {0: 3, 3: 4}[protocol.carry_over]
    assert not (tmp_path / "work" / tiny_split.clips[0].id).exists()
    if method_name == "ground-truth":
        assert torch.equal(frames, read_frames(tiny_split.path(tiny_split.clips[0], "video"), stop=229))


def test_reference_copy_repeats_frame_zero(tmp_path, tiny_split):
    method = registry.build("reference-copy")
    protocol = tiny_split.protocol()
    plan = plan_clip(protocol, tiny_split.clips[1], 100)
    video, _ = generate_clip(method, tiny_split, protocol, plan, tmp_path, "fp", False, torch.device("cpu"))
    frames = read_frames(video)
    reference = tiny_split.load_reference(tiny_split.clips[1])
    assert torch.equal(frames, reference.expand_as(frames))


def test_check_frames_rejects_bad_outputs():
    good = torch.zeros((2, 4, 4, 3), dtype=torch.uint8)
    assert check_frames(good, (2, 4, 4, 3), "c", "chunk 0") is not None
    with pytest.raises(MethodOutputError, match=r"clip 'c'.*shape \(1, 4, 4, 3\)"):
        check_frames(good[:1], (2, 4, 4, 3), "c", "chunk 0")
    with pytest.raises(MethodOutputError, match="NaN"):
        check_frames(torch.full((2, 4, 4, 3), float("nan")), (2, 4, 4, 3), "c", "chunk 0")
    with pytest.raises(MethodOutputError, match="out of range"):
        check_frames(torch.full((2, 4, 4, 3), 256.0), (2, 4, 4, 3), "c", "chunk 0")
    with pytest.raises(MethodOutputError, match="dtype"):
        check_frames(torch.zeros((2, 4, 4, 3)), (2, 4, 4, 3), "c", "chunk 0")
    with pytest.raises(MethodOutputError, match="ndarray"):
        check_frames(np.zeros((2, 4, 4, 3), np.uint8), (2, 4, 4, 3), "c", "chunk 0")


def test_horizon_longer_than_clip_is_refused(tiny_split):
    with pytest.raises(Exception, match="needs 300 frames"):
        plan_clip(tiny_split.protocol(), tiny_split.clips[0], 300)
