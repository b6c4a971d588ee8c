"""A peft LoRA attaches to the transformer's attention q, k, v, o and FFN linears and changes the
output only once its weights are non-zero: what EverAnimate's training builds on."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from tiny_weights import guided_velocity

from methods.wan.presets import tiny_random_backbone


def test_lora_targets_attention_and_ffn_of_every_block():
    backbone = tiny_random_backbone(seed=0)
    backbone.add_lora(rank=4)
    wrapped = {name.rsplit(".lora_A", 1)[0] for name, _ in backbone.transformer.named_modules() if name.endswith("lora_A")}
    for block in range(backbone.transformer.config.num_layers):
        for attention in ("attn1", "attn2"):
            for projection in ("to_q", "to_k", "to_v", "to_out.0"):
                assert f"blocks.{block}.{attention}.{projection}" in wrapped
        assert f"blocks.{block}.ffn.net.0.proj" in wrapped and f"blocks.{block}.ffn.net.2" in wrapped
    assert len(wrapped) == 10 * backbone.transformer.config.num_layers
    assert not any(name.startswith(("face_adapter", "motion_encoder")) for name in wrapped)


def test_lora_changes_the_output_only_when_its_weights_are_nonzero():
    backbone = tiny_random_backbone(seed=0)
    before = guided_velocity(backbone)
    backbone.add_lora(rank=4)
    assert torch.equal(guided_velocity(backbone), before)
    trainable = [name for name, p in backbone.transformer.named_parameters() if "lora_" in name]
    assert trainable
    with torch.no_grad():
        for name, parameter in backbone.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    assert not torch.allclose(guided_velocity(backbone), before, atol=1e-4)
