"""Backbone presets and loading.

- ``wan2.2-animate-14b``: ``Wan-AI/Wan2.2-Animate-14B-Diffusers`` (or a local copy of that folder),
  bf16 transformer on CUDA, 832x480, umT5 prompt embedding and CLIP reference embedding.
- ``synthetic``: the small backbone trained by this project for the synthetic split, shipped in
  ``methods/wan/weights/synthetic`` (``python -m methods.wan.train_vae`` then ``train_base``).
- ``tiny-random``: TEST ONLY. Random weights of tiny configs of the same classes; never a benchmark number.

A weights folder has the layout of the diffusers repository: ``vae/``, ``transformer/`` (config.json
plus safetensors), optionally ``text_encoder/``, ``tokenizer/``, ``image_encoder/``, ``image_processor/``,
and, for project-trained folders, ``backbone.json`` (fixed text embedding, sampler shift).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchmarkError

from .backbone import LatentCodec, WanBackbone

WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"
SYNTHETIC_WEIGHTS = WEIGHTS_ROOT / "synthetic"
HUB_14B = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
#: The prompt Wan-Animate's animate task uses ("the person in the video is doing actions").
DEFAULT_PROMPT_14B = "视频中的人在做动作"
BACKBONE_FILE = "backbone.json"
BACKBONE_FORMAT = "everanimate-bench/wan-backbone"
TRAIN_COMMAND = "python -m methods.wan.train_vae && python -m methods.wan.train_base --export"


class MissingWeightsError(BenchmarkError, FileNotFoundError):
    """A preset's weights are not available; the message says where they should be and how to get them."""


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    description: str
    resolution: tuple[int, int] | None  # width x height the weights were made for
    test_only: bool = False


PRESETS: dict[str, Preset] = {
    "wan2.2-animate-14b": Preset("wan2.2-animate-14b", HUB_14B, "Wan2.2-Animate-14B, diffusers format", (832, 480)),
    "synthetic": Preset("synthetic", str(SYNTHETIC_WEIGHTS), "small backbone trained on synthetic-train", (64, 96)),
    "tiny-random": Preset("tiny-random", "", "TEST ONLY: tiny random weights", None, test_only=True),
}

# ---- configs ----------------------------------------------------------------------------------

#: Tiny ``AutoencoderKLWan``: 4x spatial, 4x temporal, 4 latent channels.
TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 8,
    "z_dim": 4,
    "dim_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "temperal_downsample": [True, True],
    "latents_mean": [0.0] * 4,
    "latents_std": [1.0] * 4,
    "scale_factor_spatial": 4,
    "scale_factor_temporal": 4,
}

#: Tiny ``WanAnimateTransformer3DModel`` for a 4-channel latent and 16x16 face crops.
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 12,
    "latent_channels": 4,
    "out_channels": 4,
    "text_dim": 8,
    "freq_dim": 16,
    "ffn_dim": 32,
    "num_layers": 2,
    "image_dim": None,
    "rope_max_seq_len": 64,
    "motion_encoder_channel_sizes": {"16": 8, "8": 8, "4": 8},
    "motion_encoder_size": 16,
    "motion_style_dim": 8,
    "motion_dim": 4,
    "motion_encoder_dim": 8,
    "face_encoder_hidden_dim": 8,
    "face_encoder_num_heads": 2,
    "inject_face_latents_blocks": 2,
}

#: The synthetic preset's transformer: 16-channel latents, 32x32 face crops (the synthetic split's size).
SYNTHETIC_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "in_channels": 36,
    "latent_channels": 16,
    "out_channels": 16,
    "text_dim": 16,
    "freq_dim": 64,
    "ffn_dim": 384,
    "num_layers": 4,
    "image_dim": None,
    "rope_max_seq_len": 256,
    "motion_encoder_channel_sizes": {"32": 16, "16": 16, "8": 16, "4": 16},
    "motion_encoder_size": 32,
    "motion_style_dim": 16,
    "motion_dim": 4,
    "motion_encoder_dim": 16,
    "face_encoder_hidden_dim": 16,
    "face_encoder_num_heads": 2,
    "inject_face_latents_blocks": 2,
}

#: The synthetic preset's VAE (the project's own, see small_vae.py and docs/backbone.md).
SYNTHETIC_VAE_CONFIG: dict[str, Any] = {
    "z_dim": 16,
    "spatial_factor": 4,
    "hidden_channels": 64,
    "latent_channels": 96,
    "num_res_blocks": 2,
    "refine_channels": 24,
    "latents_mean": [0.0] * 16,
    "latents_std": [1.0] * 16,
    "scale_factor_temporal": 4,
    "scale_factor_spatial": 4,
}

# ---- building ---------------------------------------------------------------------------------


def build_vae(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    """``kind`` is ``"AutoencoderKLWan"`` or ``"SmallCausalVAE"``."""
    if kind == "AutoencoderKLWan":
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan(**config)
    if kind == "SmallCausalVAE":
        from .small_vae import SmallCausalVAE

        return SmallCausalVAE(**config)
    raise ValueError(f"unknown VAE class {kind!r}")


def build_transformer(config: dict[str, Any]) -> torch.nn.Module:
    from diffusers import WanAnimateTransformer3DModel

    return WanAnimateTransformer3DModel(**config)


def tiny_random_backbone(seed: int = 0, vae: str = "AutoencoderKLWan", device: str | torch.device = "cpu") -> WanBackbone:
    """TEST ONLY: a tiny backbone with random weights (seeded). Its frames mean nothing."""
    torch.manual_seed(seed)
    if vae == "AutoencoderKLWan":
        vae_model = build_vae(vae, TINY_VAE_CONFIG)
    else:
        vae_model = build_vae(vae, {"z_dim": 4, "hidden_channels": 16, "latent_channels": 16, "num_res_blocks": 1, "refine_channels": 8, "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4})
    transformer = build_transformer(TINY_TRANSFORMER_CONFIG)
    return WanBackbone(vae_model, transformer, device=device, name="tiny-random")


def save_backbone(backbone: WanBackbone, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write a weights folder (safetensors + JSON) that :func:`load_backbone` reads."""
    folder = Path(folder)
    backbone.vae.save_pretrained(folder / "vae", safe_serialization=True)
    backbone.transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    description = {
        "format": BACKBONE_FORMAT,
        "shift": backbone.shift,
        "text_embedding": {"kind": "zeros", "tokens": int(backbone.text_embeds.shape[1])},
        **(meta or {}),
    }
    (folder / BACKBONE_FILE).write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
    return folder


# ---- loading ----------------------------------------------------------------------------------


def _is_local(source: str) -> bool:
    return Path(source).exists()


def vae_class_name(source: str) -> str:
    config_path = Path(source) / "vae" / "config.json"
    if _is_local(source) and config_path.exists():
        return json.loads(config_path.read_text()).get("_class_name", "AutoencoderKLWan")
    return "AutoencoderKLWan"


def load_vae(source: str | Path) -> torch.nn.Module:
    """The ``vae/`` of a weights folder or hub repository, of the class its config names, in float32."""
    if vae_class_name(str(source)) == "SmallCausalVAE":
        from .small_vae import SmallCausalVAE as vae_class
    else:
        from diffusers import AutoencoderKLWan as vae_class
    return vae_class.from_pretrained(source, subfolder="vae", torch_dtype=torch.float32)


def check_weights_folder(source: str, preset: str, parts: tuple[str, ...] = ("vae", "transformer")) -> None:
    folder = Path(source)
    missing = [str(folder / part / "config.json") for part in parts if not (folder / part / "config.json").exists()]
    weights = [part for part in parts if not list((folder / part).glob("*.safetensors"))]
    if missing or weights:
        how = (
            f"train them with `{TRAIN_COMMAND}`"
            if preset == "synthetic"
            else f"download {HUB_14B} (huggingface-cli download {HUB_14B} --local-dir DIR) and pass weights=DIR"
        )
        raise MissingWeightsError(
            f"backbone weights for preset {preset!r} are missing in {folder} "
            f"(no {', '.join(missing) or 'safetensors in ' + ', '.join(weights)}); {how}"
        )


def _encode_prompt(source: str, prompt: str, device: torch.device, dtype: torch.dtype, max_length: int = 512) -> torch.Tensor:
    """umT5 embedding of the prompt, zero past its length as Wan pipelines pad it; the encoder is dropped after."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
    encoder = UMT5EncoderModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype).to(device).eval()
    tokens = tokenizer([prompt], padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
    length = int(tokens.attention_mask.sum())
    hidden[:, length:] = 0
    del encoder
    return hidden.to(dtype)


def load_codec(preset: str = "synthetic", weights: str | Path | None = None, device: str | torch.device = "cpu") -> LatentCodec:
    """Only the VAE of a preset (for methods that never run the transformer), with the same checks and
    errors as :func:`load_backbone`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown backbone preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    if PRESETS[preset].test_only:
        raise ValueError(f"preset {preset!r} is for tests only; build it with methods.wan.presets.tiny_random_backbone()")
    source = str(weights) if weights is not None else PRESETS[preset].source
    if _is_local(source) or preset == "synthetic" or weights is not None:
        check_weights_folder(source, preset, parts=("vae",))
    try:
        return LatentCodec(load_vae(source), device)
    except OSError as exc:
        raise MissingWeightsError(f"cannot load the VAE of preset {preset!r} from {source}: {exc}. Pass weights=FOLDER with a local copy.") from exc


def load_backbone(
    preset: str = "synthetic",
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    prompt: str | None = None,
) -> WanBackbone:
    """Load a preset's backbone, from ``weights`` (a local folder) when given, else from the preset's source.

    Raises :class:`MissingWeightsError` naming the folder and how to obtain the weights; it never falls
    back to random weights. ``tiny-random`` is refused here: tests build it with :func:`tiny_random_backbone`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown backbone preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    spec = PRESETS[preset]
    if spec.test_only:
        raise ValueError(f"preset {preset!r} is for tests only; build it with methods.wan.presets.tiny_random_backbone()")
    source = str(weights) if weights is not None else spec.source
    device = torch.device(device)
    if _is_local(source) or preset == "synthetic" or weights is not None:
        check_weights_folder(source, preset)
    dtype = torch.bfloat16 if (preset == "wan2.2-animate-14b" and device.type == "cuda") else torch.float32

    from diffusers import WanAnimateTransformer3DModel

    try:
        vae = load_vae(source)
        transformer = WanAnimateTransformer3DModel.from_pretrained(source, subfolder="transformer", torch_dtype=dtype)
    except OSError as exc:
        raise MissingWeightsError(f"cannot load preset {preset!r} from {source}: {exc}. Pass weights=FOLDER with a local copy.") from exc

    description_path = Path(source) / BACKBONE_FILE
    description = json.loads(description_path.read_text()) if description_path.exists() else {}
    text_spec = description.get("text_embedding", {"kind": "encoder"})
    if text_spec["kind"] == "zeros":
        text_embeds = torch.zeros(1, int(text_spec["tokens"]), int(transformer.config.text_dim))
    else:
        text_embeds = _encode_prompt(source, prompt if prompt is not None else DEFAULT_PROMPT_14B, device, dtype)

    image_encoder = image_processor = None
    if transformer.config.image_dim is not None:
        from transformers import CLIPImageProcessor, CLIPVisionModel

        image_encoder = CLIPVisionModel.from_pretrained(source, subfolder="image_encoder", torch_dtype=dtype)
        image_processor = CLIPImageProcessor.from_pretrained(source, subfolder="image_processor")
    return WanBackbone(
        vae,
        transformer,
        text_embeds=text_embeds,
        image_encoder=image_encoder,
        image_processor=image_processor,
        device=device,
        shift=float(description.get("shift", 5.0)),
        name=preset,
    )
