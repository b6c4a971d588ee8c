"""EverAnimate training on a tiny random backbone: the pair bank, the two stages' losses, and
checkpoints that hold the LoRA only."""

from __future__ import annotations

import pytest
import torch

from everanimate.config import EverAnimateConfig
from everanimate.train import build_bank, build_parser, context_start, initial_lora, prepare_backbone, training_batch, training_loss, variant_name
from methods.wan.checkpoint import load_checkpoint, save_checkpoint
from methods.wan.data import ClipArrays
from methods.wan.presets import tiny_random_backbone

pytestmark = pytest.mark.usefixtures("single_thread")

CHUNK = 21  # 6 latent slots


@pytest.fixture(scope="module")
def clips():
    from conftest import render_tiny_clip

    out = []
    for index in range(2):
        data = render_tiny_clip(index, num_frames=60, width=32, height=32)
        out.append(ClipArrays(f"c{index}", torch.from_numpy(data["rgb"]), torch.from_numpy(data["pose"]), torch.from_numpy(data["face"])))
    return out


def _bank(clips, config, perturbed_draws=0):
    return build_bank(tiny_random_backbone(seed=0), clips, config, stride=13, identity_draws=2, perturbed_draws=perturbed_draws, seed=0, chunk_frames=CHUNK)


def test_pairs_follow_the_rollout(clips):
    config = EverAnimateConfig(lora_rank=4, lora_alpha=4.0)
    assert context_start(73, config) == 0 and context_start(146, config) == 73
    bank = _bank(clips, config)
    # Per clip: the first chunk, then targets from 17 (= 21 - 4) every 13 frames while a chunk fits in 60.
    starts = [0, 17, 30]
    assert bank.first.tolist() == [True, False, False] * 2
    assert bank.target.shape[:3] == (6, 4, 6) and bank.identity.shape[:4] == (6, 2, 4, 4)
    assert torch.count_nonzero(bank.motion[bank.first]) == 0 and torch.count_nonzero(bank.motion[~bank.first]) > 0
    # The motion memory of the pair starting at 17 is the last latent of the chunk starting at 0.
    backbone = tiny_random_backbone(seed=0)
    context = backbone.encode(clips[0].video[0:CHUNK])[:, :, -1:]
    assert torch.allclose(bank.motion[1].float(), context[0].half().float())
    assert starts[1] == CHUNK - config.overlap_frames


def test_stage_losses_train_the_lora_only_and_checkpoints_hold_it_alone(clips, tmp_path):
    config = EverAnimateConfig(lora_rank=4, lora_alpha=4.0, first_chunk_probability=0.5)
    bank = _bank(clips, config, perturbed_draws=1)
    backbone = tiny_random_backbone(seed=1)
    base = {k: v.clone() for k, v in backbone.transformer.state_dict().items()}
    lora = prepare_backbone(backbone, config, None)
    optimizer = torch.optim.AdamW(lora.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for stage_batch in (training_batch(bank, 2, 6, generator, config), {**training_batch(bank, 2, 6, generator, config), "perturbed": None}):
        loss = training_loss(backbone, stage_batch, config, generator)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        trainable = [n for n, p in backbone.transformer.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n for n in trainable)
        assert all(p.grad is None for n, p in backbone.transformer.named_parameters() if "lora_" not in n)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.parameters())
        optimizer.step()
    after = {k.replace(".base_layer", ""): v for k, v in backbone.transformer.state_dict().items() if "lora_" not in k}
    assert after.keys() == base.keys() and all(torch.equal(after[k], v) for k, v in base.items())
    lora_b = [v for k, v in backbone.transformer.state_dict().items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # peft starts B at zero: it moved
    save_checkpoint(tmp_path / "ckpt", lora, optimizer, {"step": 2})
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert saved and all("lora_A" in k or "lora_B" in k for k in saved)
    restored_backbone = tiny_random_backbone(seed=1)
    restored = prepare_backbone(restored_backbone, config, None)
    assert load_checkpoint(tmp_path / "ckpt", restored, torch.optim.AdamW(restored.parameters(), lr=1e-2))["step"] == 2
    assert all(torch.equal(a, b) for a, b in zip(lora.parameters(), restored.parameters()))


def test_stage_two_batches_carry_the_perturbed_chunk_and_first_chunks_have_no_motion(clips):
    config = EverAnimateConfig(lora_rank=4, lora_alpha=4.0, first_chunk_probability=1.0)
    bank = _bank(clips, config, perturbed_draws=2)
    assert bank.perturbed.shape[:2] == (6, 2)
    batch = training_batch(bank, 3, 6, torch.Generator().manual_seed(0), config)
    assert batch["first"].all() and batch["perturbed"].shape == batch["clean"].shape
    stage_one = training_batch(_bank(clips, config), 3, 6, torch.Generator().manual_seed(0), config)
    assert stage_one["perturbed"] is None


def test_image_carry_pairs_hold_the_guidance_of_the_carried_frame(clips):
    """Without PLP the conditioning is Wan-Animate's: the target's first frame (the previous chunk's
    last) encoded as temporal guidance, exactly as ``WanBackbone.temporal_guidance`` builds it."""
    config = EverAnimateConfig(lora_rank=4, lora_alpha=4.0, carry="image", overlap_frames=1)
    bank = _bank(clips, config, perturbed_draws=1)
    backbone = tiny_random_backbone(seed=0)
    # Per clip: the first chunk, then targets from 20 (= 21 - 1 frame of overlap) every 13 frames.
    assert bank.first.tolist() == [True, False, False] * 2
    start = 21 - 1
    expected, _ = backbone.temporal_guidance(clips[0].video[start : start + 1], 6, 32, 32)
    assert torch.allclose(bank.motion[1].float(), expected[0].half().float())
    blank, _ = backbone.temporal_guidance(None, 6, 32, 32)
    assert torch.allclose(bank.motion[0].float(), blank[0].half().float())
    batch = training_batch(bank, 2, 4, torch.Generator().manual_seed(0), config)
    assert batch["motion"].shape[2] == 4  # guidance sliced to the chunk, no noise added
    prepare_backbone(backbone, config, None)
    assert torch.isfinite(training_loss(backbone, batch, config, torch.Generator().manual_seed(0)))


def test_variant_names_and_where_each_stage_starts():
    parse = build_parser().parse_args
    assert variant_name(parse(["--stage", "1"])) == "stage1" and initial_lora(parse(["--stage", "1"])) is None
    assert variant_name(parse(["--stage", "2"])) == "stage2" and initial_lora(parse(["--stage", "2"])).name == "stage1"
    assert variant_name(parse(["--stage", "1", "--layout", "release"])) == "stage1-release"
    image = parse(["--stage", "2", "--carry", "image", "--init", "none"])
    assert variant_name(image) == "stage2-image-carry" and initial_lora(image) is None
    assert initial_lora(parse(["--stage", "2", "--carry", "image"])).name == "stage1-image-carry"
