"""The ``everanimate`` method on a tiny random backbone: latent carry, the identity memory, LoRA
files, and resume through the runner."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.protocol import Protocol
from everanimate.config import EverAnimateConfig
from everanimate.lora import LoraError, lora_state, read_lora, save_lora
from everanimate.memory import inference_identity_indices
from methods.everanimate import EverAnimate
from methods.registry import method_class
from methods.wan.presets import tiny_random_backbone
from methods.wan.random_clip import random_clip_context

pytestmark = pytest.mark.usefixtures("single_thread")

# 21 frames = 6 latent slots: room for the motion latent and K = 4 identity latents in the paper layout.
PROTOCOL = Protocol(width=32, height=32, chunk_frames=21, sampling_steps=2, carry_over=4)
STRIDE = 21 - 4


def _backbone(seed: int = 0):
    return tiny_random_backbone(seed=seed)


def _rollout(method, clip, chunks: int, state=None, first: int = 0):
    state = method.start(clip) if state is None else state
    outputs = []
    for index in range(first, first + chunks):
        start = index * (clip.protocol.chunk_frames - method.carry_over_frames(clip.protocol))
        frames, state = method.generate_chunk(state, clip.read_controls(start, start + clip.protocol.chunk_frames, index))
        assert frames.shape == (21, 32, 32, 3) and frames.dtype == torch.uint8
        outputs.append(frames)
    return outputs, state


class EncodeSpy:
    """Records every video the VAE encodes, as uint8 frames when it is given frames."""

    def __init__(self, backbone):
        self.inputs: list[torch.Tensor] = []
        original = backbone.encode

        def encode(frames):
            self.inputs.append(frames.detach().clone())
            return original(frames)

        backbone.encode = encode


def _contains(pool: torch.Tensor, frame: torch.Tensor) -> bool:
    return any(torch.equal(frame, other) for other in pool)


def test_registry_and_carry_over():
    assert method_class("everanimate") is EverAnimate
    method = EverAnimate(backbone=_backbone(), lora="none")
    protocol = method.effective_protocol(Protocol(64, 96))
    assert protocol.carry_over == 4 and protocol.sampling_steps == 20
    assert method.effective_protocol(Protocol(64, 96)).hash != EverAnimate(backbone=_backbone(), lora="none", steps=4).effective_protocol(Protocol(64, 96)).hash


def test_the_vae_never_encodes_a_generated_frame_except_the_identity_completion():
    backbone = _backbone()
    method = EverAnimate(backbone=backbone, lora="none")
    clip = random_clip_context(PROTOCOL, 90, face_size=16, clip_id="spy-clip")
    spy = EncodeSpy(backbone)
    outputs, _ = _rollout(method, clip, 4)
    pose = torch.cat([clip.read_controls(i * STRIDE, i * STRIDE + 21, i).pose for i in range(4)])
    identity_picks = outputs[0][inference_identity_indices("spy-clip", 21, 3)]
    encoded_picks = 0
    for encoded in spy.inputs:
        assert encoded.dtype == torch.uint8, "the VAE was given something other than input frames"
        for frame in encoded:
            if _contains(identity_picks, frame):
                assert len(encoded) == 1  # each identity frame is encoded on its own
                encoded_picks += 1
            else:
                assert _contains(clip.references, frame) or _contains(pose, frame), "a generated frame was encoded"
    assert encoded_picks == 3  # K - m = 3 frames of the first chunk, once each


def test_motion_memory_is_the_last_latent_and_changes_the_next_chunk():
    backbone = _backbone()
    method = EverAnimate(backbone=backbone, lora="none")
    clip = random_clip_context(PROTOCOL, 60, face_size=16)
    _, state = _rollout(method, clip, 1)
    assert state["motion"].shape[2] == 1 and state["identity"].shape[2] == 4
    frames, _ = method.generate_chunk(state, clip.read_controls(STRIDE, STRIDE + 21, 1))
    altered = {**state, "motion": state["motion"] + 3.0}
    changed, _ = method.generate_chunk(altered, clip.read_controls(STRIDE, STRIDE + 21, 1))
    assert not torch.equal(frames, changed)


def test_identity_memory_is_fixed_after_the_first_chunk_and_depends_on_the_clip_id_only():
    backbone = _backbone()
    method = EverAnimate(backbone=backbone, lora="none")
    clip = random_clip_context(PROTOCOL, 90, face_size=16, clip_id="clip-a")
    _, after_one = _rollout(method, clip, 1)
    _, after_three = _rollout(method, clip, 2, state=after_one, first=1)
    assert torch.equal(after_one["identity"], after_three["identity"]) and after_three["identity_complete"]
    before = method.start(clip)
    assert not torch.equal(before["identity"], after_one["identity"])
    # The first chunk's memory is the reference repeated K times.
    assert torch.equal(before["identity"][:, :, 0], before["identity"][:, :, 3])
    assert inference_identity_indices("clip-a", 21, 3) == inference_identity_indices("clip-a", 21, 3)
    assert len({tuple(inference_identity_indices(f"clip-{i}", 77, 3)) for i in range(8)}) > 1


def test_lora_files_hold_lora_keys_only_and_round_trip(tmp_path):
    trained = _backbone()
    config = EverAnimateConfig(lora_rank=4, lora_alpha=4.0)
    trained.add_lora(rank=4, alpha=4.0)
    base = {k: v.clone() for k, v in trained.transformer.state_dict().items() if "lora" not in k}
    with torch.no_grad():
        for name, parameter in trained.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    save_lora(tmp_path / "lora", trained.transformer, config, {"stage": 1})
    tensors, loaded_config, record = read_lora(tmp_path / "lora")
    assert tensors and all("lora_A" in k or "lora_B" in k for k in tensors)
    assert loaded_config == config and record["stage"] == 1
    after = {k: v for k, v in trained.transformer.state_dict().items() if "lora" not in k}
    assert base.keys() == after.keys() and all(torch.equal(base[k], after[k]) for k in base)
    method = EverAnimate(backbone=_backbone(), lora=str(tmp_path / "lora"))
    clip = random_clip_context(PROTOCOL, 60, face_size=16)
    method.start(clip)
    loaded = lora_state(method.backbone.transformer)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with_lora, _ = _rollout(method, clip, 1)
    without, _ = _rollout(EverAnimate(backbone=_backbone(), lora="none"), clip, 1)
    assert not torch.equal(with_lora[0], without[0])


def test_the_method_merges_its_lora_and_predicts_what_the_unmerged_adapter_does():
    from everanimate.lora import attach_lora, merge_lora
    from peft.tuners.tuners_utils import BaseTunerLayer

    config = EverAnimateConfig(lora_rank=4, lora_alpha=4.0)
    trained = _backbone()
    trained.add_lora(rank=4, alpha=4.0)
    with torch.no_grad():
        for name, parameter in trained.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    tensors = lora_state(trained.transformer)
    backbone = _backbone()
    attach_lora(backbone, tensors, config)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(1, 4, 3, 4, 4, generator=generator), 0.7, torch.randn(1, 4, 3, 4, 4, generator=generator), torch.ones(1, 4, 3, 4, 4)]
    pose, face = torch.randn(1, 4, 2, 4, 4, generator=generator), torch.rand(1, 3, 5, 16, 16, generator=generator) * 2 - 1
    unmerged = backbone.velocity(*inputs, pose, face)
    merge_lora(backbone.transformer)
    layers = [m for m in backbone.transformer.modules() if isinstance(m, BaseTunerLayer)]
    assert layers and all(m.merged for m in layers)
    assert torch.allclose(backbone.velocity(*inputs, pose, face), unmerged, atol=1e-5)
    assert not torch.allclose(_backbone().velocity(*inputs, pose, face), unmerged, atol=1e-3)


def test_bad_lora_folders_are_refused(tmp_path):
    with pytest.raises(LoraError, match="does not exist"):
        EverAnimate(backbone=_backbone(), lora=str(tmp_path / "absent"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "lora.safetensors").write_bytes(b"")
    (tmp_path / "bad" / "lora.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(LoraError, match="not an everanimate-bench/lora"):
        EverAnimate(backbone=_backbone(), lora=str(tmp_path / "bad"))


@pytest.mark.parametrize("layout", ["paper", "release"])
def test_resume_through_the_runner_gives_the_same_video(tiny_split, tmp_path, layout):
    from conftest import check_resume_matches

    backbone = _backbone()
    protocol = tiny_split.protocol(chunk_frames=21, sampling_steps=2, carry_over=4)
    check_resume_matches(lambda: EverAnimate(backbone=backbone, lora="none", layout=layout), tiny_split, protocol, 60, tmp_path)


def test_the_shipped_stage_one_lora_loads_on_the_synthetic_preset():
    from methods.everanimate import SHIPPED_LORAS

    tensors, config, record = read_lora(SHIPPED_LORAS / "stage1")
    assert record["stage"] == 1 and config.layout == "paper"
    method = EverAnimate(lora="stage1", steps=2)
    assert method.describe()["lora_sha256"] and method.effective_protocol(Protocol(64, 96)).carry_over == 4
    protocol = Protocol(width=64, height=96, chunk_frames=21, sampling_steps=2, carry_over=4)
    clip = random_clip_context(protocol, 40, face_size=32)
    frames, state = method.generate_chunk(method.start(clip), clip.read_controls(0, 21, 0))
    loaded = lora_state(method.backbone.transformer)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert frames.shape == (21, 96, 64, 3) and state["identity_complete"]


def test_a_variant_that_is_not_shipped_says_where_its_command_is(tmp_path, monkeypatch):
    import methods.everanimate as adapter

    monkeypatch.setattr(adapter, "SHIPPED_LORAS", tmp_path)
    with pytest.raises(ValueError, match=r"lora=stage2: no such LoRA is shipped.*docs/everanimate.md \(shipped: none, or give lora=PATH\)"):
        EverAnimate(backbone=_backbone(), lora="stage2")
    with pytest.raises(ValueError, match="carry must be one of"):
        EverAnimate(backbone=_backbone(), lora="none", carry="pixels")


def test_image_carry_without_a_lora_is_wan_animate_frame_for_frame():
    """The ablation without PLP runs Wan-Animate's conditioning: with no LoRA it must be ``wan-animate``."""
    from methods.wan_animate import WanAnimate

    backbone = _backbone()
    ours = EverAnimate(backbone=backbone, lora="none", carry="image")
    theirs = WanAnimate(backbone=backbone, refert_num=1)
    assert ours.carry_over_frames(PROTOCOL) == theirs.carry_over_frames(PROTOCOL) == 1
    clip = random_clip_context(PROTOCOL, 60, face_size=16, clip_id="carry")
    spy = EncodeSpy(backbone)
    a, _ = _rollout(ours, clip, 3)
    b, _ = _rollout(theirs, clip, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # It does re-encode generated frames: the carried frame of every chunk after the first, as the first
    # frame of a float guidance video in [-1, 1].
    guides = [((video[0, :, 0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8) for video in spy.inputs if video.dtype != torch.uint8]
    assert [_contains(torch.stack(guides), chunk[-1]) for chunk in a[:2]] == [True, True]


def test_no_carry_controls_condition_every_chunk_as_a_first_chunk():
    """``wan-animate refert_num=0`` and ``everanimate carry=none`` carry nothing: a later chunk is what a
    first chunk with the same controls would be."""
    from methods.wan_animate import WanAnimate

    backbone = _backbone()
    clip = random_clip_context(PROTOCOL, 60, face_size=16, clip_id="control")
    for method in (WanAnimate(backbone=backbone, refert_num=0), EverAnimate(backbone=backbone, lora="none", carry="none", identity_frames=1)):
        carry = method.carry_over_frames(PROTOCOL)
        stride = PROTOCOL.chunk_frames - carry
        _, state = _rollout(method, clip, 1)
        controls = lambda: clip.read_controls(stride, stride + 21, 1)  # noqa: E731
        later, _ = method.generate_chunk(state, controls())
        fresh, _ = method.generate_chunk(method.start(clip), controls())
        assert torch.equal(later, fresh), method.name
    assert WanAnimate(backbone=backbone, refert_num=0).carry_over_frames(PROTOCOL) == 0
    with pytest.raises(ValueError, match="refert_num must be one of"):
        WanAnimate(backbone=backbone, refert_num=2)


def test_latent_carry_differs_from_image_carry_and_from_no_carry():
    backbone = _backbone()
    clip = random_clip_context(PROTOCOL, 60, face_size=16, clip_id="carry")
    latent, _ = _rollout(EverAnimate(backbone=backbone, lora="none"), clip, 2)
    image, _ = _rollout(EverAnimate(backbone=backbone, lora="none", carry="image"), clip, 2)
    none, _ = _rollout(EverAnimate(backbone=backbone, lora="none", carry="none"), clip, 2)
    assert not torch.equal(latent[1], image[1]) and not torch.equal(latent[1], none[1])
    # The first chunk has no motion memory in either, so it is the same.
    assert torch.equal(latent[0], none[0])
