"""The three Wan methods on their shared base (``methods.wan.method.WanMethod``): each keeps its own
options, defaults and recorded arguments, and the registry still finds every option."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("diffusers")

from benchmark.protocol import Protocol
from methods import registry
from methods.registry import MethodError, option_parameters
from methods.unianimate_dit import UniAnimateDiT
from methods.vae_roundtrip import VaeRoundTrip
from methods.wan.method import WanMethod
from methods.wan.presets import tiny_random_backbone
from methods.wan_animate import WanAnimate


@pytest.fixture(scope="module")
def backbone():
    return tiny_random_backbone(seed=0)


def test_each_method_declares_its_own_options():
    assert {name: p.default for name, p in option_parameters(WanAnimate).items()} == {
        "preset": "synthetic", "weights": None, "steps": None, "refert_num": 1, "shift": 5.0, "prompt": None,
    }
    assert {name: p.default for name, p in option_parameters(VaeRoundTrip).items()} == {"preset": "synthetic", "weights": None, "once": False}
    assert {name: p.default for name, p in option_parameters(UniAnimateDiT).items()} == {
        "preset": "synthetic", "weights": None, "steps": None, "window": None, "overlap": None, "window_batch": 4, "shift": 5.0, "prompt": None,
    }
    with pytest.raises(MethodError, match="is not a concrete"):
        registry.method_class("methods.wan.method:WanMethod")


def test_recorded_arguments_are_each_methods_own(backbone):
    described = [method.describe() for method in (WanAnimate(backbone=backbone), VaeRoundTrip(backbone=backbone, once=True), UniAnimateDiT(backbone=backbone))]
    assert [d["name"] for d in described] == ["wan-animate", "vae-roundtrip", "unianimate-dit"]
    assert [list(d["arguments"].items()) for d in described] == [
        [("preset", "tiny-random"), ("weights", None), ("steps", None), ("refert_num", 1), ("shift", 5.0)],
        [("preset", "tiny-random"), ("weights", None), ("once", True)],
        [("preset", "tiny-random"), ("weights", None), ("steps", None), ("window", None), ("overlap", None), ("shift", 5.0)],
    ]
    assert all(d["weights_sha256"] is None for d in described)  # an injected backbone has no weights files
    assert WanAnimate(backbone=backbone, prompt="a dancer").describe()["arguments"]["prompt"] == "a dancer"


def test_the_base_holds_the_backbone_and_the_steps(backbone):
    protocol = Protocol(64, 96)
    for method in (WanAnimate(backbone=backbone, steps=3), UniAnimateDiT(backbone=backbone, steps=3)):
        assert isinstance(method, WanMethod) and method.backbone is backbone and method.codec is backbone.codec
        assert method.sampling_steps(protocol) == 3
    vae_only = VaeRoundTrip(backbone=backbone)
    assert vae_only.codec is backbone.codec and vae_only.sampling_steps(protocol) == protocol.sampling_steps
    assert vae_only.carry_over_frames(protocol) == 1 and WanAnimate(backbone=backbone, refert_num=5).carry_over_frames(protocol) == 5


def test_shipped_weights_are_fingerprinted_by_the_parts_a_method_loads():
    """``vae-roundtrip`` loads only the VAE, so its fingerprint covers only the VAE's files."""
    full, vae_only = WanAnimate().describe()["weights_sha256"], VaeRoundTrip().describe()["weights_sha256"]
    assert re.fullmatch(r"[0-9a-f]{16}", full) and re.fullmatch(r"[0-9a-f]{16}", vae_only) and full != vae_only
    assert UniAnimateDiT().describe()["weights_sha256"] == full
