"""The ``everanimate`` method on the 14B preset's code path: tiny random models saved in the layout of
Wan-AI/Wan2.2-Animate-14B-Diffusers (VAE, transformer with CLIP image input, umT5, CLIP), a LoRA
folder trained for them, loaded from local folders exactly as the real weights are, and run through
the runner's command line."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from tiny_weights import make_tiny_14b_folder

from benchmark import run as run_cli
from benchmark.protocol import Protocol
from everanimate.config import EverAnimateConfig
from everanimate.lora import lora_state, save_lora
from methods.everanimate import EverAnimate
from methods.wan.presets import load_backbone
from methods.wan.random_clip import random_clip_context

pytestmark = pytest.mark.usefixtures("single_thread")

PRESET = "wan2.2-animate-14b"
PROTOCOL = Protocol(width=32, height=32, chunk_frames=21, sampling_steps=2, carry_over=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_14b_folder(tmp_path_factory.mktemp("wan-animate-14b"))


def _lora_folder(weights, folder, layout: str, seed: int = 0):
    """A LoRA for the tiny 14B-shaped transformer with non-zero weights, in this project's format."""
    backbone = load_backbone(PRESET, weights=weights)
    backbone.add_lora(rank=4, alpha=4.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in backbone.transformer.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return save_lora(folder, backbone.transformer, EverAnimateConfig(lora_rank=4, lora_alpha=4.0, layout=layout), {"stage": 1})


@pytest.mark.parametrize("layout", ["paper", "release"])
def test_the_14b_preset_runs_everanimate_with_a_lora_from_local_folders(weights, tmp_path, layout):
    lora = _lora_folder(weights, tmp_path / "lora", layout)
    method = EverAnimate(device="cpu", preset=PRESET, weights=str(weights), lora=str(lora), steps=2)
    described = method.describe()
    assert described["arguments"]["preset"] == PRESET and described["weights_sha256"] and described["lora_sha256"]
    assert described["config"]["layout"] == layout

    clip = random_clip_context(PROTOCOL, 40, face_size=16)
    state = method.start(clip)
    backbone = method.backbone
    assert backbone.name == PRESET and backbone.image_encoder is not None and backbone.text_embeds.shape == (1, 512, 8)
    assert state["image_embeds"].shape == (1, 17, 8)  # the CLIP embedding of the reference, every chunk
    assert json.loads((lora / "lora.json").read_text())["stage"] == 1
    saved = lora_state(method.backbone.transformer)
    assert saved and all("lora_A" in key or "lora_B" in key for key in saved)

    outputs = []
    for index in range(2):
        start = index * (PROTOCOL.chunk_frames - method.carry_over_frames(PROTOCOL))
        frames, state = method.generate_chunk(state, clip.read_controls(start, start + PROTOCOL.chunk_frames, index))
        assert frames.shape == (21, 32, 32, 3) and frames.dtype == torch.uint8
        outputs.append(frames)
    assert "motion" in state and state["identity_complete"]

    base = EverAnimate(device="cpu", preset=PRESET, weights=str(weights), lora="none", steps=2, layout=layout)
    frames, _ = base.generate_chunk(base.start(clip), clip.read_controls(0, PROTOCOL.chunk_frames, 0))
    assert not torch.equal(frames, outputs[0])  # the LoRA is applied


def test_shipped_synthetic_loras_are_refused_on_the_14b_preset(weights):
    with pytest.raises(ValueError, match="synthetic preset; give lora=PATH"):
        EverAnimate(preset=PRESET, weights=str(weights), lora="stage2")


def test_the_runner_command_line_runs_the_14b_preset_with_a_lora(weights, tiny_split_dir, tmp_path, capsys):
    lora = _lora_folder(weights, tmp_path / "lora", "paper", seed=1)
    out = tmp_path / "run"
    args = [
        "--method", "everanimate", "--method-arg", f"preset={PRESET}", "--method-arg", f"weights={weights}",
        "--method-arg", f"lora={lora}", "--method-arg", "steps=2", "--split", str(tiny_split_dir),
        "--horizon", "4", "--limit", "1", "--metrics", "psnr,ssim", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert run_cli.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    method = results["method"]
    assert method["arguments"]["preset"] == PRESET and method["arguments"]["lora"] == str(lora)
    assert method["lora_sha256"] and method["weights_sha256"]
    assert (out / "videos" / "tiny00.mkv").is_file()

    capsys.readouterr()
    missing = ["--method", "everanimate", "--method-arg", f"preset={PRESET}", "--method-arg", f"weights={tmp_path / 'absent'}",
               "--method-arg", f"lora={lora}", "--split", str(tiny_split_dir), "--out", str(tmp_path / "run2")]  # fmt: skip
    assert run_cli.main(missing) == 2
    error = capsys.readouterr().err
    assert "huggingface-cli download" in error and "Traceback" not in error
