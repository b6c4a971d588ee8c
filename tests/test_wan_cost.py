"""The 14B cost estimate counts the FLOPs of the code that runs: on the meta device the count equals
the count on real tensors, and the per-chunk plan of each method follows its adapter."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from methods.wan.cost import Shape14B, estimate, method_passes, transformer_pass_flops, vae_flops
from methods.wan.presets import TINY_TRANSFORMER_CONFIG, TINY_VAE_CONFIG, build_transformer, build_vae

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = {**TINY_TRANSFORMER_CONFIG, "image_dim": 8, "added_kv_proj_dim": 24}


def test_meta_device_counts_equal_counts_on_real_tensors():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    real = build_transformer(CONFIG).eval()
    with torch.device("meta"):
        meta = build_transformer(CONFIG)
    counted = transformer_pass_flops(meta, 3, 8, 8, 16)
    # The fused CPU attention kernel is invisible to the counter; the math backend spells attention
    # out as the matrix products that the meta device counts.
    with sdpa_kernel(SDPBackend.MATH):
        assert transformer_pass_flops(real, 3, 8, 8, 16) == counted > 0
    assert transformer_pass_flops(meta, 5, 8, 8, 16) > counted  # more slots, more work

    vae = build_vae("AutoencoderKLWan", TINY_VAE_CONFIG).eval()
    with torch.device("meta"):
        meta_vae = build_vae("AutoencoderKLWan", TINY_VAE_CONFIG)
    encode, decode = vae_flops(meta_vae, 9, 64, 64)
    with sdpa_kernel(SDPBackend.MATH):  # the VAE's middle block attends too
        assert encode > 0 and decode > 0 and (encode, decode) == vae_flops(vae, 9, 64, 64)


def test_each_methods_plan_per_chunk():
    shape = Shape14B()
    plans = method_passes(shape, horizon_s=90.0)
    assert plans["wan-animate"] == {"passes": 20, "slots": 21, "encodes": 2, "decodes": 1}  # pose + temporal guidance
    assert plans["everanimate"] == {"passes": 20, "slots": 21, "encodes": 1, "decodes": 1}  # nothing generated is encoded
    assert plans["everanimate layout=release"]["slots"] == 24  # 4 anchors + 20 latents
    # 2250 frames (564 latents) are 30 chunk-equivalents of 77 frames, and 35 windows of 20 latents
    # overlapping by 4, every window evaluated at each of the 20 steps
    assert plans["unianimate-dit"]["passes"] == pytest.approx(20 * 35 / 30)
    assert plans["unianimate-dit"]["encodes"] == pytest.approx(2250 / 77 / 30)


def test_the_14b_estimate_from_the_meta_device():
    rows = {row["method"]: row for row in estimate()}
    assert rows["wan-animate"]["tokens"] == 21 * 30 * 52
    assert 30 < rows["wan-animate"]["transformer_pflop"] < 40  # 20 passes of ~1.7 PFLOP
    assert rows["everanimate"]["vae_pflop"] < rows["wan-animate"]["vae_pflop"]
    assert rows["everanimate"]["seconds_H100"] < rows["wan-animate"]["seconds_H100"] < rows["everanimate layout=release"]["seconds_H100"]
    assert rows["everanimate"]["seconds_A100"] > rows["everanimate"]["seconds_H100"]
    assert 34 < rows["everanimate"]["memory_gb"] < 45  # 17.3 B bf16 weights and the VAE, plus activations
