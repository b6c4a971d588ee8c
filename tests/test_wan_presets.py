"""Presets load from a local folder through ``from_pretrained``, the 14B preset's code path included,
and missing weights fail loudly instead of falling back to random weights."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from tiny_weights import make_tiny_14b_folder

from methods.wan.presets import (
    MissingWeightsError,
    load_backbone,
    save_backbone,
    tiny_random_backbone,
)


def _velocity(backbone, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (5, 32, 32, 3), generator=generator, dtype=torch.uint8)
    reference = backbone.encode(frames[:1])
    slots, mask = backbone.temporal_guidance(None, 2, 32, 32)
    faces = torch.randint(0, 256, (5, 16, 16, 3), generator=generator, dtype=torch.uint8)
    conditioning = backbone.chunk_conditioning(reference, slots, mask, frames, faces, image_embeds=backbone.image_embedding(frames[0]))
    noise = torch.randn(1, backbone.latent_channels, 3, 8, 8, generator=generator)
    with torch.no_grad():
        return backbone.conditioned_velocity(noise, 0.5, conditioning)


def test_saved_backbone_loads_from_a_local_folder(tmp_path):
    backbone = tiny_random_backbone(seed=1)
    save_backbone(backbone, tmp_path / "weights")
    assert (tmp_path / "weights" / "vae" / "diffusion_pytorch_model.safetensors").exists()
    assert not list((tmp_path / "weights").rglob("*.bin")) and not list((tmp_path / "weights").rglob("*.pt"))
    loaded = load_backbone("synthetic", weights=tmp_path / "weights")
    assert torch.equal(_velocity(backbone), _velocity(loaded))
    assert torch.equal(loaded.text_embeds, backbone.text_embeds)


def test_the_vae_alone_loads_without_a_transformer(tmp_path):
    from methods.wan.presets import load_codec

    backbone = tiny_random_backbone(seed=3)
    backbone.vae.save_pretrained(tmp_path / "w" / "vae")
    codec = load_codec("synthetic", weights=tmp_path / "w")
    frames = torch.randint(0, 256, (5, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert torch.equal(codec.round_trip(frames), backbone.round_trip(frames))
    with pytest.raises(MissingWeightsError, match="transformer"):
        load_backbone("synthetic", weights=tmp_path / "w")


def test_small_vae_backbone_round_trips_through_a_folder(tmp_path):
    backbone = tiny_random_backbone(seed=2, vae="SmallCausalVAE")
    save_backbone(backbone, tmp_path / "w")
    assert json.loads((tmp_path / "w" / "vae" / "config.json").read_text())["_class_name"] == "SmallCausalVAE"
    loaded = load_backbone("synthetic", weights=tmp_path / "w")
    assert type(loaded.vae).__name__ == "SmallCausalVAE"
    assert torch.equal(_velocity(backbone), _velocity(loaded))


@pytest.mark.parametrize("preset", ["synthetic", "wan2.2-animate-14b"])
def test_missing_weights_name_the_folder_and_the_fix(tmp_path, preset):
    with pytest.raises(MissingWeightsError) as error:
        load_backbone(preset, weights=tmp_path / "nothing-here")
    message = str(error.value)
    assert str(tmp_path / "nothing-here") in message
    assert ("train_vae" in message) if preset == "synthetic" else ("huggingface-cli download" in message)


def test_tiny_random_is_never_loaded_as_a_preset():
    with pytest.raises(ValueError, match="tests only"):
        load_backbone("tiny-random")


def test_14b_preset_code_path_on_a_tiny_local_copy(tmp_path):
    folder = make_tiny_14b_folder(tmp_path / "wan-animate-14b")
    backbone = load_backbone("wan2.2-animate-14b", weights=folder)
    assert backbone.text_embeds.shape == (1, 512, 8)
    assert backbone.text_embeds[:, 2:].abs().sum() == 0  # zero past the prompt's tokens, as Wan pads it
    reference = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8)
    image_embeds = backbone.image_embedding(reference)
    assert image_embeds.shape == (1, 17, 8)
    assert _velocity(backbone).shape == (1, 4, 3, 8, 8)
    other = load_backbone("wan2.2-animate-14b", weights=folder, prompt="dance")
    assert not torch.equal(other.text_embeds, backbone.text_embeds)


def test_results_name_the_weights_a_method_ran(tmp_path):
    from methods.vae_roundtrip import VaeRoundTrip
    from methods.wan_animate import WanAnimate

    save_backbone(tiny_random_backbone(seed=4), tmp_path / "weights")
    first = WanAnimate(weights=tmp_path / "weights").describe()["weights_sha256"]
    assert first == WanAnimate(weights=tmp_path / "weights").describe()["weights_sha256"]
    vae_only = VaeRoundTrip(weights=tmp_path / "weights").describe()["weights_sha256"]
    assert vae_only != first

    save_backbone(tiny_random_backbone(seed=5), tmp_path / "weights")
    assert WanAnimate(weights=tmp_path / "weights").describe()["weights_sha256"] != first
    assert WanAnimate(backbone=tiny_random_backbone()).describe()["weights_sha256"] is None
