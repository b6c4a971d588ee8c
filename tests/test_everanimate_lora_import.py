"""Import and export of the official EverAnimate LoRA naming, on tiny random backbones.

The real official checkpoint is not available here: the official key set is built from a tiny
backbone's adapter, renamed by the hand-written table below (independent of ``everanimate.lora_naming``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

pytest.importorskip("peft")

from tiny_weights import guided_velocity

from benchmark.files import sha256_file
from benchmark.protocol import Protocol
from everanimate.config import EverAnimateConfig
from everanimate.lora import LoraError, attach_lora, export_official, import_official, lora_state, main, read_lora, save_lora
from everanimate.lora_naming import official_to_peft
from methods.everanimate import EverAnimate
from methods.wan.presets import tiny_random_backbone
from methods.wan.random_clip import random_clip_context

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
RANK = 4

#: diffusers module (inside ``blocks.N.``) -> the official checkpoint's module, written out by hand.
OFFICIAL_MODULE = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}


def _official_name(peft_key: str, down: str = "lora_A.default", up: str = "lora_B.default", prefix: str = "") -> str:
    """``blocks.3.attn2.to_out.0.lora_B.weight`` -> ``{prefix}blocks.3.cross_attn.o.{up}.weight``."""
    _, block, rest = peft_key.split(".", 2)
    module, matrix = rest.removesuffix(".weight").rsplit(".", 1)
    return f"{prefix}blocks.{block}.{OFFICIAL_MODULE[module]}.{down if matrix == 'lora_A' else up}.weight"


def _adapted_backbone(rank: int = RANK, alpha: float | None = None, seed: int = 1):
    """A tiny backbone with a LoRA whose A and B are random and non-zero, so it changes the output."""
    backbone = tiny_random_backbone(seed=0)
    backbone.add_lora(rank=rank, alpha=alpha)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in backbone.transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    backbone.transformer.eval()
    return backbone


def _attached(tensors, rank: int, alpha: float):
    backbone = tiny_random_backbone(seed=0)
    attach_lora(backbone, tensors, EverAnimateConfig(lora_rank=rank, lora_alpha=alpha))
    return backbone


@pytest.fixture(scope="module")
def adapted():
    backbone = _adapted_backbone()
    return lora_state(backbone.transformer), guided_velocity(backbone)


@pytest.fixture()
def official_file(adapted, tmp_path):
    state, _ = adapted
    path = tmp_path / "everanimate_lora.safetensors"
    save_file({_official_name(key): value for key, value in state.items()}, str(path))
    return path


# ---- the key mapping ---------------------------------------------------------------------------------


def test_the_official_naming_converts_with_every_key_used_and_gives_the_same_model(adapted):
    state, velocity = adapted
    assert torch.count_nonzero(velocity - guided_velocity(tiny_random_backbone(seed=0))) > 0, "the LoRA must change the output"
    official = {_official_name(key): value for key, value in state.items()}
    assert "blocks.0.self_attn.q.lora_A.default.weight" in official and "blocks.1.ffn.2.lora_B.default.weight" in official

    converted = official_to_peft(official)
    assert set(converted.tensors) == set(state) == set(lora_state(_attached(state, RANK, RANK).transformer))
    assert all(torch.equal(converted.tensors[key], state[key]) for key in state)
    assert (converted.rank, converted.alpha, converted.blocks, converted.alpha_in_file) == (RANK, float(RANK), 2, "none")
    assert torch.equal(guided_velocity(_attached(converted.tensors, converted.rank, converted.alpha)), velocity)


def test_lora_down_up_naming_with_a_prefix_and_one_alpha_keeps_the_alpha():
    backbone = _adapted_backbone(rank=RANK, alpha=8.0)
    state, velocity = lora_state(backbone.transformer), guided_velocity(backbone)
    official = {_official_name(key, "lora_down", "lora_up", "diffusion_model."): value for key, value in state.items()}
    for key in list(official):
        if key.endswith("lora_down.weight"):
            official[key.removesuffix("lora_down.weight") + "alpha"] = torch.tensor(8.0)

    converted = official_to_peft(official)
    assert (converted.naming, converted.rank, converted.alpha, converted.alpha_in_file) == ("lora_down/lora_up", RANK, 8.0, "uniform")
    assert all(torch.equal(converted.tensors[key], state[key]) for key in state)
    assert torch.equal(guided_velocity(_attached(converted.tensors, RANK, converted.alpha)), velocity)


def test_alphas_that_differ_per_module_are_folded_into_the_weights(adapted):
    state, velocity = adapted
    official, generator = {}, torch.Generator().manual_seed(3)
    for key, value in state.items():
        official[_official_name(key, "lora_down", "lora_up")] = value
    for key in [k for k in official if k.endswith("lora_up.weight")]:
        alpha = float(torch.randint(1, 16, (1,), generator=generator))
        official[key] = official[key] * RANK / alpha  # (alpha / rank) B' A = B A
        official[key.removesuffix("lora_up.weight") + "alpha"] = torch.tensor(alpha)

    converted = official_to_peft(official)
    assert converted.alpha == float(RANK) and converted.alpha_in_file == "per-module, folded into the weights"
    torch.testing.assert_close(guided_velocity(_attached(converted.tensors, RANK, converted.alpha)), velocity, rtol=1e-4, atol=1e-5)


def _official(state) -> dict[str, torch.Tensor]:
    return {_official_name(key): value for key, value in state.items()}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.update({"blocks.0.self_attn.q.lora_magnitude.default.weight": torch.ones(24)}), "blocks.0.self_attn.q.lora_magnitude.default.weight"),
        (lambda s: s.update({"blocks.1.cross_attn.k_img.lora_A.default.weight": torch.ones(RANK, 24)}), "blocks.1.cross_attn.k_img.lora_A.default.weight"),
        (lambda s: s.update({"head.head.lora_A.default.weight": torch.ones(RANK, 24)}), "head.head.lora_A.default.weight"),
        (lambda s: s.update({"model.blocks.0.ffn.0.lora_A.default.weight": torch.ones(RANK, 24)}), "model.blocks.0.ffn.0.lora_A.default.weight"),
        (lambda s: s.pop("blocks.1.ffn.2.lora_B.default.weight"), "blocks.1.ffn.2.lora_A.default.weight has no lora_B"),
        (lambda s: s.pop("blocks.0.cross_attn.v.lora_A.default.weight"), "blocks.0.cross_attn.v.lora_B.default.weight has no lora_A"),
        (lambda s: s.update({"blocks.0.self_attn.k.lora_A.default.weight": torch.ones(RANK + 1, 24)}), "blocks.0.self_attn.k (lora_A (5, 24)"),
        (lambda s: [s.pop(f"blocks.1.cross_attn.o.lora_{m}.default.weight") for m in "AB"], "no LoRA for blocks.1.cross_attn.o"),
        (lambda s: s.update({"blocks.0.ffn.0.lora_A.weight": torch.ones(RANK, 24)}), "blocks.0.ffn.0.lora_A.default.weight and blocks.0.ffn.0.lora_A.weight"),
        (lambda s: s.update({"blocks.0.ffn.0.alpha": torch.ones(2)}), "blocks.0.ffn.0.alpha (alpha must be one positive finite number, got [1.0, 1.0])"),
        (lambda s: s.update({"blocks.0.ffn.0.alpha": torch.tensor(-1.0)}), "blocks.0.ffn.0.alpha (alpha must be one positive finite number, got [-1.0])"),
    ],
    ids=["unknown-suffix", "not-a-target", "head", "unknown-prefix", "no-lora-B", "no-lora-A", "rank-mismatch", "module-missing", "given-twice", "alpha-not-scalar", "alpha-negative"],
)
def test_a_key_that_cannot_be_used_is_an_error_naming_it(adapted, change, named):
    official = _official(adapted[0])
    change(official)
    with pytest.raises(LoraError) as error:
        official_to_peft(official, where="the-file.safetensors")
    assert named in str(error.value) and "the-file.safetensors" in str(error.value) and "\n" not in str(error.value)


def test_modules_that_disagree_on_the_rank_and_mixed_naming_are_refused():
    small, large = lora_state(_adapted_backbone(rank=2).transformer), lora_state(_adapted_backbone(rank=3).transformer)
    mixed_rank = _official(small) | {_official_name(k): v for k, v in large.items() if k.startswith("blocks.1.")}
    with pytest.raises(LoraError, match=r"disagree on the rank \(rank 2: blocks\.0\..*rank 3: blocks\.1\."):
        official_to_peft(mixed_rank)
    mixed_naming = {(_official_name(k, "lora_down", "lora_up") if k.startswith("blocks.1.") else _official_name(k)): v for k, v in small.items()}
    with pytest.raises(LoraError, match="mixes lora_A/lora_B and lora_down/lora_up"):
        official_to_peft(mixed_naming)
    with pytest.raises(LoraError, match="holds no tensors"):
        official_to_peft({})


def test_a_lora_for_another_width_converts_but_does_not_attach(adapted):
    official = _official(adapted[0])
    official["blocks.0.self_attn.q.lora_A.default.weight"] = torch.ones(RANK, 30)
    converted = official_to_peft(official)
    with pytest.raises(LoraError, match=r"made for another backbone: shapes differ for blocks\.0\.attn1\.to_q\.lora_A\.weight \(4, 30\) \(needs \(4, 24\)\)"):
        _attached(converted.tensors, RANK, float(RANK))


# ---- files: import, export, the round trip -----------------------------------------------------------


def test_import_writes_a_release_layout_folder_with_its_provenance(official_file, adapted, tmp_path):
    folder = import_official(official_file, tmp_path / "imported")
    tensors, config, record = read_lora(folder)
    assert all(torch.equal(tensors[key], adapted[0][key]) for key in adapted[0]) and set(tensors) == set(adapted[0])
    assert config == EverAnimateConfig.release(lora_rank=RANK, lora_alpha=float(RANK))
    assert (config.layout, config.identity_frames, config.motion_latents, config.sampling_shift) == ("release", 4, 1, 5.0)
    assert record["base_model"] == "Wan2.2-Animate-14B"
    imported = record["imported"]
    assert imported["source"] == official_file.name and imported["source_sha256"] == sha256_file(official_file)
    assert "_convert_non_diffusers_wan_lora_to_diffusers" in imported["conversion"] and imported["blocks"] == 2
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Layout `release`" in card and "layout=paper` is refused" in card and imported["source_sha256"] in card


def _official_file_keys(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


def test_export_then_import_is_the_identity(adapted, tmp_path):
    state = adapted[0]
    backbone = _attached(state, RANK, float(RANK))
    config = EverAnimateConfig(lora_rank=RANK, lora_alpha=float(RANK), layout="paper", identity_frames=3)
    record = {"stage": 2, "step": 17, "base_weights_sha256": "0123456789abcdef"}
    original = save_lora(tmp_path / "ours", backbone.transformer, config, record)

    exported = export_official(original, tmp_path / "official.safetensors")
    tensors, _ = _official_file_keys(exported)
    assert set(tensors) == {_official_name(key) for key in state}, "export must write the official names"
    assert all(torch.equal(tensors[_official_name(key)], value) for key, value in state.items())
    assert not any("alpha" in key or key.startswith("diffusion_model.") for key in tensors)

    back = import_official(exported, tmp_path / "back")
    tensors_back, config_back, record_back = read_lora(back)
    assert set(tensors_back) == set(state) and all(torch.equal(tensors_back[key], state[key]) for key in state)
    assert config_back == config
    assert {key: record_back[key] for key in record} == record and record_back["imported"]["source"] == "official.safetensors"


def test_export_folds_alpha_over_rank_into_lora_b(tmp_path):
    backbone = _adapted_backbone(rank=RANK, alpha=2.0)
    state, velocity = lora_state(backbone.transformer), guided_velocity(backbone)
    folder = save_lora(tmp_path / "ours", backbone.transformer, EverAnimateConfig(lora_rank=RANK, lora_alpha=2.0), {"stage": 1})
    tensors, metadata = _official_file_keys(export_official(folder, tmp_path / "official.safetensors"))
    key_b = "blocks.0.attn1.to_q.lora_B.weight"
    assert torch.equal(tensors[_official_name(key_b)], state[key_b] * 0.5)
    assert json.loads(metadata["everanimate_config"])["lora_alpha"] == float(RANK)

    _, config, _ = read_lora(import_official(tmp_path / "official.safetensors", tmp_path / "back"))
    assert config.lora_alpha == float(RANK)
    reimported, _, _ = read_lora(tmp_path / "back")
    torch.testing.assert_close(guided_velocity(_attached(reimported, RANK, config.lora_alpha)), velocity, rtol=1e-5, atol=1e-6)


# ---- the command line --------------------------------------------------------------------------------


def _run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "everanimate.lora", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_command_line_imports_and_a_bad_file_exits_2_with_one_line(official_file, tmp_path):
    done = _run_module("import", str(official_file), "--out", str(tmp_path / "dst"))
    assert done.returncode == 0, done.stderr
    assert f"rank {RANK}, alpha {RANK}, layout release" in done.stdout
    assert read_lora(tmp_path / "dst")[1].layout == "release"

    bad = dict(_official_file_keys(official_file)[0])
    bad["blocks.0.norm3.lora_A.default.weight"] = torch.ones(RANK, 24)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    failed = _run_module("import", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "other"))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0 and "blocks.0.norm3.lora_A.default.weight" in failed.stderr
    assert not (tmp_path / "other").exists()


def test_the_command_line_exports_and_refuses_bad_input(official_file, tmp_path, capsys):
    assert main(["import", str(official_file), "--out", str(tmp_path / "dst")]) == 0
    assert main(["export", str(tmp_path / "dst"), "--out", str(tmp_path / "again.safetensors")]) == 0
    assert set(_official_file_keys(tmp_path / "again.safetensors")[0]) == set(_official_file_keys(official_file)[0])
    capsys.readouterr()

    torch.save({"blocks.0.self_attn.q.lora_A.default.weight": torch.ones(2, 2)}, tmp_path / "lora.pt")
    (tmp_path / "dst" / "extra").mkdir()
    cases = [
        (["import", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "a")], "does not exist"),
        (["import", str(tmp_path / "lora.pt"), "--out", str(tmp_path / "b")], "not a safetensors file"),
        (["import", str(official_file), "--out", str(tmp_path / "dst")], "is not empty; pass --overwrite"),
        (["import", str(official_file), "--out", str(official_file)], "is not a folder"),
        (["export", str(tmp_path / "dst"), "--out", str(tmp_path / "again.safetensors")], "exists; pass --overwrite"),
        (["export", str(tmp_path / "dst"), "--out", str(tmp_path / "file.pt")], "must end in .safetensors"),
        (["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "new.safetensors")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "new.safetensors").exists()
    assert main(["import", str(official_file), "--out", str(tmp_path / "dst"), "--overwrite"]) == 0
    assert main(["export", str(tmp_path / "dst"), "--out", str(tmp_path / "again.safetensors"), "--overwrite"]) == 0


def test_help_explains_the_naming_and_the_layout(capsys):
    for argv in (["--help"], ["import", "--help"], ["export", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
    text = capsys.readouterr().out
    assert "blocks.N.self_attn.q.lora_A.default.weight" in text and "layout=release" in text and "alpha/rank" in text


# ---- the everanimate method --------------------------------------------------------------------------


def test_the_method_runs_the_imported_lora_in_the_release_layout_and_refuses_the_paper_layout(official_file, adapted, tmp_path):
    folder = import_official(official_file, tmp_path / "imported")
    backbone = tiny_random_backbone(seed=0)
    method = EverAnimate(backbone=backbone, lora=str(folder))
    assert method.config.layout == "release" and method.describe()["config"]["layout"] == "release"
    assert EverAnimate(backbone=tiny_random_backbone(seed=0), lora=str(folder), layout="release").config.layout == "release"
    with pytest.raises(ValueError, match=r"layout=paper contradicts lora=.*imported, which was trained with layout=release"):
        EverAnimate(backbone=tiny_random_backbone(seed=0), lora=str(folder), layout="paper")

    protocol = Protocol(width=32, height=32, chunk_frames=21, sampling_steps=2, carry_over=4)
    clip = random_clip_context(protocol, 40, face_size=16, clip_id="imported-lora")
    state = method.start(clip)
    frames, _ = method.generate_chunk(state, clip.read_controls(0, 21, 0))
    assert frames.shape == (21, 32, 32, 3)
    assert torch.equal(lora_state(backbone.transformer)["blocks.1.ffn.net.2.lora_B.weight"], adapted[0]["blocks.1.ffn.net.2.lora_B.weight"])


def test_the_runner_exits_2_on_a_layout_that_contradicts_the_lora(official_file, tmp_path, capsys):
    from benchmark.run import main as run_main

    folder = import_official(official_file, tmp_path / "imported")
    code = run_main(["--method", "everanimate", "--method-arg", f"lora={folder}", "--method-arg", "layout=paper", "--split", str(tmp_path / "no-split"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "layout=paper contradicts" in err and "layout=release" in err and err.count("\n") == 1
