"""The three baselines on a tiny random backbone under the common protocol: the reference sink, the
image-space carry-over, exact resume, the round-trip counts and the window fusion."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("diffusers")

from benchmark.protocol import Protocol
from methods.base import ChunkMethod, VideoMethod, state_from_disk, state_to_disk
from methods.registry import method_class
from methods.unianimate_dit import UniAnimateDiT, fusion_weights, scaled_overlap, window_face_frames, window_starts
from methods.vae_roundtrip import VaeRoundTrip, round_trip_table, trips_for_chunk
from methods.wan.presets import MissingWeightsError, tiny_random_backbone
from methods.wan.random_clip import random_clip_context
from methods.wan_animate import WanAnimate

PROTOCOL = Protocol(width=32, height=32, chunk_frames=13, sampling_steps=2)
LATENT_CHANNELS = 4


@pytest.fixture(scope="module")
def backbone():
    return tiny_random_backbone(seed=0)


def _run(method: ChunkMethod, clip, chunks: int, state=None, first: int = 0):
    state = method.start(clip) if state is None else state
    carry = method.carry_over_frames(clip.protocol)
    outputs = []
    for index in range(first, first + chunks):
        start = index * (clip.protocol.chunk_frames - carry)
        frames, state = method.generate_chunk(state, clip.read_controls(start, start + clip.protocol.chunk_frames, index))
        assert frames.shape == (clip.protocol.chunk_frames, clip.height, clip.width, 3) and frames.dtype == torch.uint8
        outputs.append(frames)
    return outputs, state


class TransformerSpy:
    """Records the ``hidden_states`` of every transformer call."""

    def __init__(self, backbone):
        self.calls: list[torch.Tensor] = []
        self.handle = backbone.transformer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls.append(kwargs["hidden_states"].detach().clone())

    def close(self):
        self.handle.remove()


def test_registry_names_the_baselines():
    assert method_class("wan-animate") is WanAnimate
    assert method_class("vae-roundtrip") is VaeRoundTrip
    assert method_class("unianimate-dit") is UniAnimateDiT
    assert issubclass(UniAnimateDiT, VideoMethod) and issubclass(WanAnimate, ChunkMethod)


@pytest.mark.parametrize("cls", [WanAnimate, VaeRoundTrip, UniAnimateDiT])
def test_missing_weights_fail_with_folder_and_training_command(tmp_path, cls):
    with pytest.raises(MissingWeightsError) as error:
        cls(preset="synthetic", weights=str(tmp_path / "absent"))
    assert str(tmp_path / "absent") in str(error.value) and "python -m methods.wan.train_vae" in str(error.value)


def test_tiny_random_preset_is_not_a_benchmark_option():
    with pytest.raises(ValueError, match="tests only"):
        WanAnimate(preset="tiny-random")


def test_wan_animate_keeps_the_reference_sink_in_slot_0_of_every_chunk(backbone):
    clip = random_clip_context(PROTOCOL, 60)
    method = WanAnimate(backbone=backbone)
    spy = TransformerSpy(backbone)
    try:
        _, state = _run(method, clip, 3)
    finally:
        spy.close()
    assert len(spy.calls) == 3 * PROTOCOL.sampling_steps
    reference = backbone.encode(clip.references[0].unsqueeze(0))
    for hidden in spy.calls:
        assert torch.allclose(hidden[:, LATENT_CHANNELS + 4 :, 0:1], reference)
        assert hidden[:, LATENT_CHANNELS : LATENT_CHANNELS + 4, 0].eq(1).all()
    first, later = spy.calls[0], spy.calls[-1]
    assert first[:, LATENT_CHANNELS : LATENT_CHANNELS + 4, 1:].eq(0).all()  # chunk 0 has no guidance
    assert later[:, LATENT_CHANNELS : LATENT_CHANNELS + 4, 1].eq(1).all()  # one carried frame fills slot 1
    assert later[:, LATENT_CHANNELS : LATENT_CHANNELS + 4, 2:].eq(0).all()


@pytest.mark.parametrize("refert_num", [1, 5])
def test_wan_animate_re_encodes_the_decoded_tail(backbone, refert_num):
    clip = random_clip_context(PROTOCOL, 60)
    method = WanAnimate(backbone=backbone, refert_num=refert_num)
    assert method.carry_over_frames(PROTOCOL) == refert_num
    chunk0, state = _run(method, clip, 1)
    assert torch.equal(state["carry_frames"], chunk0[0][-refert_num:])
    encoded = []
    original = backbone.encode

    def spy(frames):
        encoded.append(frames.clone())
        return original(frames)

    backbone.encode = spy
    try:
        _run(method, clip, 1, state=state, first=1)
    finally:
        del backbone.encode
    guidance = [video for video in encoded if video.dtype != torch.uint8 and video.shape[2] == PROTOCOL.chunk_frames]
    assert len(guidance) == 1
    expected = chunk0[0][-refert_num:].permute(3, 0, 1, 2).float() / 127.5 - 1
    assert torch.allclose(guidance[0][0, :, :refert_num], expected)
    assert guidance[0][0, :, refert_num:].eq(0).all()


def test_wan_animate_rejects_other_carry_lengths(backbone):
    with pytest.raises(ValueError, match="refert_num"):
        WanAnimate(backbone=backbone, refert_num=3)


def test_wan_animate_resumes_exactly_from_a_saved_state(backbone, tmp_path):
    clip = random_clip_context(PROTOCOL, 60)
    straight, _ = _run(WanAnimate(backbone=backbone), clip, 3)
    head, state = _run(WanAnimate(backbone=backbone), clip, 1)
    tensors, scalars = state_to_disk(state)
    save_file(tensors, str(tmp_path / "state.safetensors"))
    restored = state_from_disk(load_file(str(tmp_path / "state.safetensors")), scalars)
    fresh = WanAnimate(backbone=backbone)
    fresh.start(clip)
    tail, _ = _run(fresh, clip, 2, state=restored, first=1)
    for a, b in zip(straight, head + tail):
        assert torch.equal(a, b)


def test_chunks_not_4k_plus_1_long_are_padded_and_cut(backbone):
    protocol = Protocol(width=32, height=32, chunk_frames=11, sampling_steps=1)
    clip = random_clip_context(protocol, 40)
    outputs, _ = _run(WanAnimate(backbone=backbone), clip, 2)
    assert all(frames.shape[0] == 11 for frames in outputs)


def test_round_trip_count_grows_one_per_chunk(backbone):
    clip = random_clip_context(PROTOCOL, 60)
    assert [trips_for_chunk(k, once=False) for k in range(4)] == [1, 2, 3, 4]
    assert [trips_for_chunk(k, once=True) for k in range(4)] == [1, 1, 1, 1]
    for once, expected in ((False, [1, 2, 3]), (True, [1, 1, 1])):
        counts = []
        original = backbone.codec.round_trip

        def spy(frames):
            counts[-1] += 1
            return original(frames)

        method = VaeRoundTrip(backbone=backbone, once=once)
        state = method.start(clip)
        backbone.codec.round_trip = spy
        try:
            for index in range(3):
                counts.append(0)
                start = index * (PROTOCOL.chunk_frames - 1)
                frames, state = method.generate_chunk(state, clip.read_controls(start, start + PROTOCOL.chunk_frames, index))
                assert state["last_trips"] == expected[index]
        finally:
            del backbone.codec.round_trip
        assert counts == expected


def test_round_trip_output_is_the_ground_truth_through_the_vae(backbone):
    clip = random_clip_context(PROTOCOL, 60)
    method = VaeRoundTrip(backbone=backbone)
    state = method.start(clip)
    frames, _ = method.generate_chunk(state, clip.read_controls(12, 25, 1))
    truth = clip.read_ground_truth(12, 25)
    assert torch.equal(frames, backbone.round_trip(backbone.round_trip(truth)))
    table = round_trip_table(backbone.codec, [truth], 3)
    assert [trips for trips, _ in table] == [1, 2, 3]


def test_windows_cover_every_latent_and_fusion_weights_sum_to_one():
    assert scaled_overlap(21) == 4 and scaled_overlap(20) == 4 and scaled_overlap(4) == 1
    for num_latents, window, overlap in ((563, 20, 4), (20, 20, 4), (45, 20, 4), (7, 3, 1), (2, 20, 4)):
        starts = window_starts(num_latents, window, overlap)
        width = min(window, num_latents)
        weights = fusion_weights(starts, width, num_latents)
        assert torch.allclose(weights.sum(dim=0), torch.ones(num_latents))
        assert starts[0] == 0 and starts[-1] + width == num_latents
        assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))
        overlapped = (weights > 0).sum(dim=0)
        assert torch.allclose(weights[weights > 0], (1.0 / overlapped.float()).expand_as(weights)[weights > 0])
    assert window_face_frames(0, 4) == slice(0, 13) and window_face_frames(3, 4) == slice(12, 25)


def test_unianimate_denoises_all_windows_jointly_with_the_reference_sink(backbone):
    clip = random_clip_context(PROTOCOL, 60)
    method = UniAnimateDiT(backbone=backbone, window_batch=2)
    num_latents, window, overlap = method.plan(45, PROTOCOL.chunk_frames)
    assert (num_latents, window, overlap) == (12, 4, 1)
    windows = len(window_starts(num_latents, window, overlap))
    written = []
    spy = TransformerSpy(backbone)
    try:
        method.generate_video(clip, 45, written.append)
    finally:
        spy.close()
    video = torch.cat(written)
    assert video.shape == (45, 32, 32, 3) and video.dtype == torch.uint8
    assert sum(hidden.shape[0] for hidden in spy.calls) == windows * PROTOCOL.sampling_steps
    reference = backbone.encode(clip.references[0].unsqueeze(0))
    for hidden in spy.calls:
        assert hidden.shape[2] == window + 1
        assert torch.allclose(hidden[:, LATENT_CHANNELS + 4 :, 0:1], reference.expand(hidden.shape[0], -1, -1, -1, -1))
        assert hidden[:, LATENT_CHANNELS : LATENT_CHANNELS + 4, 1:].eq(0).all()


def _unianimate_video(backbone, clip, window_batch: int) -> torch.Tensor:
    written = []
    UniAnimateDiT(backbone=backbone, window_batch=window_batch).generate_video(clip, 45, written.append)
    return torch.cat(written)


def test_unianimate_window_batch_changes_only_how_many_windows_share_a_transformer_call(backbone):
    """With the transformer evaluated one window at a time, the fusion gives the same video to the
    bit for any ``window_batch``: it only groups windows into calls."""
    clip = random_clip_context(PROTOCOL, 60)
    original = backbone.velocity

    def one_window_at_a_time(noisy, sigma, cond, mask, pose, face, text_embeds=None, image_embeds=None):
        rows = [original(noisy[i : i + 1], sigma, cond[i : i + 1], mask[i : i + 1], pose[i : i + 1], face[i : i + 1], text_embeds, image_embeds) for i in range(len(noisy))]
        return torch.cat(rows)

    backbone.velocity = one_window_at_a_time
    try:
        videos = [_unianimate_video(backbone, clip, window_batch) for window_batch in (1, 2, 5)]
    finally:
        del backbone.velocity
    assert torch.equal(videos[0], videos[1]) and torch.equal(videos[0], videos[2])


def test_unianimate_batched_transformer_calls_differ_only_by_rounding(backbone):
    """A batch of windows through the real transformer is not the same windows one at a time to the
    bit (CPU kernels sum in a batch-dependent order); the difference stays a rounding difference,
    and a non-default ``window_batch`` is recorded with the results."""
    clip = random_clip_context(PROTOCOL, 60)
    batched = _unianimate_video(backbone, clip, 5)
    assert torch.equal(batched, _unianimate_video(backbone, clip, 5))
    assert (batched.int() - _unianimate_video(backbone, clip, 2).int()).abs().max() <= 1
    assert "window_batch" not in UniAnimateDiT(backbone=backbone).describe()["arguments"]
    assert UniAnimateDiT(backbone=backbone, window_batch=2).describe()["arguments"]["window_batch"] == 2


def test_wan_animate_through_the_runner_resumes_to_the_same_video(backbone, tiny_split, tmp_path):
    """An interrupted run of the real runner, resumed with a fresh method, writes the same video."""
    from conftest import check_resume_matches

    protocol = tiny_split.protocol(chunk_frames=13, sampling_steps=2, carry_over=1)
    check_resume_matches(lambda: WanAnimate(backbone=backbone), tiny_split, protocol, 40, tmp_path)


def _state_bytes(state) -> dict[str, int]:
    return {key: value.numel() * value.element_size() for key, value in state.items() if isinstance(value, torch.Tensor)}


@pytest.mark.parametrize("make", [lambda b: WanAnimate(backbone=b, refert_num=5), lambda b: VaeRoundTrip(backbone=b)], ids=["wan-animate", "vae-roundtrip"])
def test_autoregressive_state_does_not_grow_with_the_chunk_index(backbone, make):
    """What an autoregressive method keeps between chunks is the same after every chunk: why its
    memory stays flat over a long rollout (the figure itself: ``python -m methods.perf``)."""
    method = make(backbone)
    clip = random_clip_context(PROTOCOL, 60)
    state = method.start(clip)
    sizes = []
    carry = method.carry_over_frames(PROTOCOL)
    for index in range(4):
        start = index * (PROTOCOL.chunk_frames - carry)
        _, state = method.generate_chunk(state, clip.read_controls(start, start + PROTOCOL.chunk_frames, index))
        sizes.append(_state_bytes(state))
    assert sizes == [sizes[0]] * 4


def test_perf_runs_every_baseline_the_way_the_runner_does():
    """The perf command's bookkeeping; the time and memory figures it prints are measurements, not
    something a test on a shared machine can bound."""
    from methods.perf import run

    records = run(["everanimate", "wan-animate", "vae-roundtrip", "unianimate-dit"], "tiny-random", None, 1, 1.0, 4.0, torch.device("cpu"))
    assert [r.method for r in records] == ["everanimate", "wan-animate", "vae-roundtrip", "unianimate-dit"]
    assert [r.chunks for r in records] == [2, 2, 2, 2]  # 100 frames: chunks at 0 and 73 (carry-over 4), 76 (1), or 77
    assert records[0].seconds_last_chunk is not None and records[3].seconds_last_chunk is None
