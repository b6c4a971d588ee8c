"""Persistent Latent Propagation (paper Eq. 1-3): memories, the two chunk layouts and the transformer on them."""

from __future__ import annotations

import hashlib

import pytest
import torch

from everanimate import memory
from everanimate.config import EverAnimateConfig
from methods.wan.conditioning import ChunkConditioning, concat_memory

pytestmark = pytest.mark.usefixtures("single_thread")

B, C, H, W = 2, 4, 8, 8


def _latent(slots: int, value: float | None = None, seed: int = 0) -> torch.Tensor:
    if value is not None:
        return torch.full((B, C, slots, H, W), value)
    return torch.randn(B, C, slots, H, W, generator=torch.Generator().manual_seed(seed))


def _numbered_frames(count: int, size: int = 16) -> torch.Tensor:
    """Frame i is filled with the value i, so a frame tells which index it came from."""
    return torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, size, size, 3).contiguous()


# ---- Eq. 1 ----------------------------------------------------------------------------------------


def test_motion_memory_is_the_last_latent_slices():
    chunk = _latent(5)
    assert torch.equal(memory.motion_memory(chunk, 1), chunk[:, :, 4:])
    assert torch.equal(memory.motion_memory(chunk, 2), chunk[:, :, 3:])
    with pytest.raises(ValueError):
        memory.motion_memory(chunk, 6)


def test_identity_memory_encodes_each_frame_on_its_own():
    calls = []

    def encode(frames: torch.Tensor) -> torch.Tensor:
        calls.append(len(frames))
        return torch.full((1, C, 1, 2, 2), float(frames[0, 0, 0, 0]))

    latent = memory.identity_memory(_numbered_frames(4), encode)
    assert calls == [1, 1, 1, 1]
    assert latent.shape == (1, C, 4, 2, 2)
    assert latent[0, 0, :, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_training_identity_frames_are_distinct_sorted_frames_of_the_context_chunk():
    frames = _numbered_frames(20)
    plain = EverAnimateConfig(identity_augment_probability=0.0)
    picked = memory.training_identity_frames(frames, 4, torch.Generator().manual_seed(3), plain)
    indices = picked[:, 0, 0, 0].tolist()
    assert len(set(indices)) == 4 and indices == sorted(indices)
    assert torch.equal(picked, frames[indices])
    again = memory.training_identity_frames(frames, 4, torch.Generator().manual_seed(3), plain)
    assert torch.equal(picked, again)
    with pytest.raises(ValueError):
        memory.training_identity_frames(frames[:3], 4, torch.Generator(), plain)


def test_identity_augmentation_is_one_affine_shared_by_all_frames():
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 24, 24, 3), generator=generator, dtype=torch.uint8)
    identical = memory.identity_affine(frames, torch.Generator().manual_seed(1), (1.0, 1.0), 0.0)
    assert torch.equal(identical, frames)
    together = memory.identity_affine(frames, torch.Generator().manual_seed(1), (0.8, 1.2), 0.1)
    assert together.shape == frames.shape and together.dtype == torch.uint8
    assert not torch.equal(together, frames)
    for i in range(3):
        alone = memory.identity_affine(frames[i : i + 1], torch.Generator().manual_seed(1), (0.8, 1.2), 0.1)
        assert torch.equal(alone[0], together[i])
    config = EverAnimateConfig(identity_augment_probability=1.0)
    augmented = memory.training_identity_frames(frames, 3, torch.Generator().manual_seed(2), config)
    assert not torch.equal(augmented, frames)


def test_inference_identity_depends_only_on_the_clip_id():
    assert memory.clip_seed("clip-7") == int.from_bytes(hashlib.sha256(b"clip-7").digest()[:8], "big")
    first_chunk = _numbered_frames(77)
    references = torch.full((1, 16, 16, 3), 200, dtype=torch.uint8)
    torch.manual_seed(123)
    drawn = memory.inference_identity_frames(references, first_chunk, 4, "clip-7")
    torch.manual_seed(456)
    assert torch.equal(drawn, memory.inference_identity_frames(references, first_chunk, 4, "clip-7"))
    assert len(drawn) == 4 and torch.equal(drawn[-1:], references)
    indices = drawn[:3, 0, 0, 0].tolist()
    assert indices == sorted(indices) and len(set(indices)) == 3 and 0 not in indices

    draws = {clip_id: tuple(memory.inference_identity_indices(clip_id, 77, 3)) for clip_id in ("a", "b", "c", "clip-1", "clip-2")}
    assert len(set(draws.values())) == len(draws)
    small = [memory.inference_identity_indices(f"clip-{i}", 5, 3) for i in range(100)]
    assert all(0 not in draw and all(1 <= i <= 4 for i in draw) for draw in small)
    assert {i for draw in small for i in draw} == {1, 2, 3, 4}


def test_inference_identity_keeps_the_user_references():
    first_chunk = _numbered_frames(10)
    two = torch.full((2, 16, 16, 3), 250, dtype=torch.uint8)
    two[1] = 251
    drawn = memory.inference_identity_frames(two, first_chunk, 4, "x")
    assert len(drawn) == 4 and torch.equal(drawn[2:], two)
    four = _numbered_frames(4) + 100
    assert torch.equal(memory.inference_identity_frames(four, first_chunk, 4, "x"), four)
    with pytest.raises(ValueError):
        memory.inference_identity_frames(_numbered_frames(5), first_chunk, 4, "x")
    repeated = memory.first_chunk_identity_frames(two, 4)
    assert [int(f[0, 0, 0]) for f in repeated] == [250, 251, 250, 251]


# ---- Eq. 2-3 and the layouts ------------------------------------------------------------------------


def test_context_memory_is_motion_then_identity_then_pad():
    motion, identity = _latent(1, 5.0), _latent(4, seed=1)
    latent, mask = memory.context_memory(motion, identity, 7)
    expected_latent, expected_mask = concat_memory([motion, identity], 7)
    assert torch.equal(latent, expected_latent) and torch.equal(mask, expected_mask)
    assert mask[0, :, :, 0, 0].tolist() == [[1.0] * 5 + [0.0] * 2] * 4
    first, first_mask = memory.context_memory(None, identity, 7, motion_slots=1)
    assert torch.equal(first[:, :, :1], torch.zeros(B, C, 1, H, W))
    assert torch.equal(first[:, :, 1:5], identity)
    assert first_mask[0, 0, :, 0, 0].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        memory.context_memory(motion, identity, 4)


def test_paper_layout():
    reference, identity, motion, chunk = _latent(1, 9.0), _latent(4, seed=1), _latent(1, 5.0), _latent(6, seed=2)
    layout = memory.paper_layout(reference, identity, 6, motion)
    assert layout.kind == "paper" and layout.prefix_slots == 1 and layout.num_latents == 6
    assert layout.latent.shape == (B, C, 7, H, W) and layout.mask.shape == (B, 4, 7, H, W)
    assert torch.equal(layout.latent[:, :, 0:1], reference)
    assert torch.equal(layout.latent[:, :, 1:2], motion)
    assert torch.equal(layout.latent[:, :, 2:6], identity)
    assert torch.equal(layout.latent[:, :, 6:], torch.zeros(B, C, 1, H, W))
    assert layout.mask[0, :, :, 0, 0].tolist() == [[1.0] * 6 + [0.0]] * 4
    full = layout.with_prefix(chunk)
    assert torch.equal(full[:, :, :1], reference) and torch.equal(layout.drop_prefix(full), chunk)

    hidden = memory.memory_transformer_input(full, layout)
    assert hidden.shape == (B, 2 * C + 4, 7, H, W)
    assert torch.equal(hidden[:, :C], full) and torch.equal(hidden[:, C : C + 4], layout.mask) and torch.equal(hidden[:, C + 4 :], layout.latent)

    first = memory.paper_layout(reference, identity, 6, None)
    assert torch.equal(first.latent[:, :, 1:2], torch.zeros(B, C, 1, H, W))
    assert first.mask[0, 0, :, 0, 0].tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_release_layout():
    anchors, motion, chunk = _latent(4, seed=1), _latent(1, 5.0), _latent(6, seed=2)
    layout = memory.release_layout(anchors, 6, motion)
    assert layout.kind == "release" and layout.prefix_slots == 4 and layout.num_latents == 6
    assert layout.latent.shape == (B, C, 10, H, W) and layout.mask.shape == (B, 4, 10, H, W)
    assert torch.equal(layout.latent[:, :, :4], anchors)
    assert torch.equal(layout.latent[:, :, 4:5], motion)
    assert torch.equal(layout.latent[:, :, 5:], torch.zeros(B, C, 5, H, W))
    assert layout.mask[1, :, :, 3, 3].tolist() == [[1.0] * 4 + [0.0] * 6] * 4
    full = layout.with_prefix(chunk)
    assert full.shape == (B, C, 10, H, W) and torch.equal(full[:, :, :4], anchors)
    assert torch.equal(layout.drop_prefix(full), chunk)
    first = memory.release_layout(anchors, 6, None)
    assert torch.equal(first.latent[:, :, 4:], torch.zeros(B, C, 6, H, W))
    assert torch.equal(first.mask, layout.mask)


def test_chunk_layout_follows_the_config():
    reference, identity = _latent(1, 9.0), _latent(4, seed=1)
    assert memory.chunk_layout(EverAnimateConfig(), reference, identity, 6).prefix_slots == 1
    release = memory.chunk_layout(EverAnimateConfig.release(), reference, identity, 6)
    assert release.prefix_slots == 4 and torch.equal(release.prefix, identity)


# ---- the transformer on a layout ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def backbone():
    pytest.importorskip("diffusers")
    from methods.wan.presets import tiny_random_backbone

    return tiny_random_backbone(seed=0)


def _inputs(prefix: int, slots: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(B, 2 * C + 4, prefix + slots, H, W, generator=generator),
        "timestep": torch.tensor([250.0, 800.0]),
        "encoder_hidden_states": torch.randn(B, 1, 8, generator=generator),
        "pose_latent": torch.randn(B, C, slots, H, W, generator=generator),
        "face_pixels": torch.rand(B, 3, 4 * (slots - 1) + 1, 16, 16, generator=generator) * 2 - 1,
    }


@torch.no_grad()
def test_prefixed_forward_with_one_slot_is_diffusers_forward(backbone):
    model, inputs = backbone.transformer, _inputs(1)
    ours = memory.prefixed_transformer_forward(model, prefix_slots=1, **inputs)
    theirs = model(
        hidden_states=inputs["hidden_states"],
        timestep=inputs["timestep"],
        encoder_hidden_states=inputs["encoder_hidden_states"],
        pose_hidden_states=inputs["pose_latent"],
        face_pixel_values=inputs["face_pixels"],
        return_dict=False,
    )[0]
    assert torch.equal(ours, theirs)


@torch.no_grad()
def test_prefixed_forward_puts_pose_and_face_after_the_anchors(backbone):
    model, inputs = backbone.transformer, _inputs(4)
    output = memory.prefixed_transformer_forward(model, prefix_slots=4, **inputs)
    assert output.shape == (B, C, 6, H, W)
    tokens = memory.embed_with_pose(model, inputs["hidden_states"], inputs["pose_latent"], 4)
    plain = model.patch_embedding(inputs["hidden_states"]).flatten(2).transpose(1, 2)
    per_slot = (H // 2) * (W // 2)
    assert torch.equal(tokens[:, : 4 * per_slot], plain[:, : 4 * per_slot])
    pose = model.pose_patch_embedding(inputs["pose_latent"]).flatten(2).transpose(1, 2)
    assert torch.allclose(tokens[:, 4 * per_slot :], plain[:, 4 * per_slot :] + pose)
    face = memory.face_motion_tokens(model, inputs["face_pixels"], 4)
    one = memory.face_motion_tokens(model, inputs["face_pixels"], 1)
    assert face.shape[1] == 6 and torch.equal(face[:, :4], torch.zeros_like(face[:, :4]))
    assert torch.equal(face[:, 4:], one[:, 1:])
    with pytest.raises(ValueError, match="pose slots"):
        memory.prefixed_transformer_forward(model, prefix_slots=3, **inputs)


@torch.no_grad()
def test_sampling_a_layout(backbone):
    reference, identity, motion = _latent(1, 0.5)[:1], _latent(4, seed=1)[:1], _latent(1, 0.2)[:1]
    pose, face = torch.randn(1, C, 5, H, W), torch.rand(1, 3, 17, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match="do not fit"):
        memory.paper_layout(reference, identity, 4, motion)
    paper = memory.paper_layout(reference, identity, 5, motion)
    ours = memory.sample_layout(backbone, paper, pose, face, torch.Generator().manual_seed(5), steps=2)
    conditioning = ChunkConditioning(paper.latent, paper.mask, pose, face)
    assert torch.equal(ours, backbone.sample(conditioning, torch.Generator().manual_seed(5), steps=2))

    pose, face = pose[:, :, :3], face[:, :, :9]
    release = memory.release_layout(identity, 3, motion)
    velocity = memory.layout_velocity(backbone, release, torch.randn(1, C, 7, H, W), 0.5, pose, face)
    assert velocity.shape == (1, C, 7, H, W) and velocity.dtype == torch.float32
    sampled = memory.sample_layout(backbone, release, pose, face, torch.Generator().manual_seed(5), steps=2)
    assert sampled.shape == (1, C, 3, H, W) and torch.isfinite(sampled).all()
