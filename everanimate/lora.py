"""EverAnimate LoRA files: LoRA tensors only, in safetensors, next to a JSON record.

A LoRA folder holds ``lora.safetensors`` (peft's state dict of the adapter, keys as
``get_peft_model_state_dict`` gives them: ``blocks.N.attn1.to_q.lora_A.weight`` ...) and ``lora.json``
(format, the :class:`EverAnimateConfig` it was trained with, the fingerprint of the base weights it
was trained on, the training stage and the training record). No pickles: ``torch.load`` is never
needed, and the base weights are never written.

``python -m everanimate.lora import SRC --out DST`` turns the official EverAnimate checkpoint (one
``.safetensors`` file in the original Wan naming, see :mod:`everanimate.lora_naming`) into such a
folder; ``export`` writes a folder back in the official naming. docs/lora.md describes both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from benchmark.errors import BenchmarkError
from benchmark.files import atomic_write_text, sha256_file, temporary_sibling

from .config import EverAnimateConfig
from .lora_naming import LoraError, official_to_peft, peft_to_official

LORA_FORMAT = "everanimate-bench/lora"
LORA_FORMAT_VERSION = 1
TENSORS_FILE = "lora.safetensors"
RECORD_FILE = "lora.json"


def lora_state(transformer: Any) -> dict[str, torch.Tensor]:
    """The adapter's tensors only (peft's naming), detached on the CPU."""
    from peft import get_peft_model_state_dict

    return {key: value.detach().cpu().contiguous() for key, value in get_peft_model_state_dict(transformer).items()}


def save_lora(folder: str | Path, transformer: Any, config: EverAnimateConfig, record: dict[str, Any]) -> Path:
    return write_lora(folder, lora_state(transformer), config, record)


def write_lora(folder: str | Path, tensors: dict[str, torch.Tensor], config: EverAnimateConfig, record: dict[str, Any]) -> Path:
    """A LoRA folder from tensors in peft's naming; each file is replaced atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with temporary_sibling(folder / TENSORS_FILE) as tmp:
        save_file(tensors, str(tmp))
    document = {"format": LORA_FORMAT, "format_version": LORA_FORMAT_VERSION, "config": config.to_dict(), **record}
    atomic_write_text(folder / RECORD_FILE, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return folder


def read_lora(folder: str | Path) -> tuple[dict[str, torch.Tensor], EverAnimateConfig, dict[str, Any]]:
    """Tensors, config and record of a LoRA folder, checked."""
    folder = Path(folder)
    tensors_path, record_path = folder / TENSORS_FILE, folder / RECORD_FILE
    for path in (tensors_path, record_path):
        if not path.is_file():
            raise LoraError(f"{path} does not exist; a LoRA folder holds {TENSORS_FILE} and {RECORD_FILE}")
    try:
        record = json.loads(record_path.read_text())
    except ValueError as exc:
        raise LoraError(f"{record_path}: not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != LORA_FORMAT or record.get("format_version") != LORA_FORMAT_VERSION:
        raise LoraError(f"{record_path}: not an {LORA_FORMAT} v{LORA_FORMAT_VERSION} record")
    try:
        config = EverAnimateConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LoraError(f"{record_path}: bad config: {exc}") from exc
    try:
        tensors = load_file(str(tensors_path))
    except SafetensorError as exc:
        raise LoraError(f"{tensors_path}: not a readable safetensors file: {exc}") from exc
    return tensors, config, record


def attach_lora(backbone: Any, tensors: dict[str, torch.Tensor], config: EverAnimateConfig) -> None:
    """Add the adapter to the backbone's transformer and load ``tensors`` into it; every tensor must
    be used, every adapter weight given, and each of the shape the transformer needs."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    backbone.add_lora(rank=config.lora_rank, alpha=config.lora_alpha)
    shapes = {key: tuple(value.shape) for key, value in get_peft_model_state_dict(backbone.transformer).items()}
    mismatched = [f"{key} {tuple(tensors[key].shape)} (needs {shapes[key]})" for key in sorted(set(tensors) & set(shapes)) if tuple(tensors[key].shape) != shapes[key]]
    if mismatched:
        raise LoraError(f"LoRA does not fit the transformer, it was made for another backbone: shapes differ for {', '.join(mismatched[:5])}")
    result = set_peft_model_state_dict(backbone.transformer, tensors)
    unexpected = sorted(getattr(result, "unexpected_keys", []) or [])
    missing = sorted(set(shapes) - set(tensors))
    if unexpected or missing:
        raise LoraError(f"LoRA does not fit the transformer: unexpected keys {unexpected[:5]}, missing keys {missing[:5]}")
    backbone.transformer.eval()


def merge_lora(transformer: Any) -> None:
    """Fold the adapter into the base weights (``W + scale B A``) for inference, so a chunk costs what
    the base model's does. The adapter tensors stay readable (:func:`lora_state`); training never merges."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer) and not module.merged:
            module.merge()


# ---- the official naming: import and export ------------------------------------------------------

#: The base model the official LoRA was trained on.
OFFICIAL_BASE = "Wan2.2-Animate-14B"
#: Keys of the safetensors metadata an export writes, so that importing it again restores the config
#: and the record; the official file has neither.
EXPORT_CONFIG_KEY = "everanimate_config"
EXPORT_RECORD_KEY = "everanimate_record"
CARD_FILE = "MODEL_CARD.md"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of a safetensors file on the CPU and its metadata; never unpickles anything."""
    if not path.exists():
        raise LoraError(f"{path} does not exist")
    if not path.is_file():
        raise LoraError(f"{path} is not a file; give the .safetensors file of the LoRA")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise LoraError(f"{path}: not a safetensors file ({exc}); pickled checkpoints (.pt, .bin, .ckpt) are not read") from exc


def _exported_config(metadata: dict[str, str], path: Path) -> tuple[EverAnimateConfig, dict[str, Any]] | None:
    """The config and record an :func:`export_official` file carries, or None for any other file."""
    if EXPORT_CONFIG_KEY not in metadata:
        return None
    try:
        config = EverAnimateConfig.from_dict(json.loads(metadata[EXPORT_CONFIG_KEY]))
        record = json.loads(metadata.get(EXPORT_RECORD_KEY, "{}"))
    except (TypeError, ValueError) as exc:
        raise LoraError(f"{path}: bad {EXPORT_CONFIG_KEY} metadata: {exc}") from exc
    if not isinstance(record, dict):
        raise LoraError(f"{path}: bad {EXPORT_RECORD_KEY} metadata: not a JSON object")
    return config, record


def _check_destination(path: Path, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise LoraError(f"{path} exists and is not a folder; --out names the LoRA folder to write")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise LoraError(f"{path} is not empty; pass --overwrite to replace its LoRA files, or choose another --out")


def import_official(source: str | Path, destination: str | Path, overwrite: bool = False) -> Path:
    """Convert one safetensors file in the official naming into a LoRA folder at ``destination``.

    The config is the release's (:meth:`EverAnimateConfig.release`: ``layout="release"``, the anchor
    latents prepended as extra time slots, K = 4, r = 1, sampling shift 5) with the rank and alpha of
    the file; a file written by :func:`export_official` brings back its own config and record instead."""
    source, destination = Path(source), Path(destination)
    _check_destination(destination, overwrite)
    state, metadata = _read_safetensors(source)
    converted = official_to_peft(state, where=str(source))
    exported = _exported_config(metadata, source)
    if exported is None:
        config = EverAnimateConfig.release(
            lora_rank=converted.rank, lora_alpha=converted.alpha, identity_frames=4, motion_latents=1, sampling_shift=5.0
        )
        record: dict[str, Any] = {"base_model": OFFICIAL_BASE}
    else:
        config, record = exported
        if (config.lora_rank, config.lora_alpha) != (converted.rank, converted.alpha):
            raise LoraError(
                f"{source}: its metadata says rank {config.lora_rank}, alpha {config.lora_alpha}, "
                f"but the tensors give rank {converted.rank}, alpha {converted.alpha}"
            )
    imported = {
        "source": source.name,
        "source_sha256": sha256_file(source),
        "conversion": (
            f"official Wan naming ({converted.naming}) -> peft names of diffusers' WanAnimateTransformer3DModel, "
            f"by diffusers {version('diffusers')} _convert_non_diffusers_wan_lora_to_diffusers (everanimate.lora_naming)"
        ),
        "alpha_in_file": converted.alpha_in_file,
        "blocks": converted.blocks,
    }
    if "imported" in record:
        imported["earlier_import"] = record["imported"]
    record = {key: value for key, value in record.items() if key not in ("format", "format_version", "config")}
    record["imported"] = imported
    write_lora(destination, converted.tensors, config, record)
    atomic_write_text(destination / CARD_FILE, _import_card(destination, config, record))
    return destination


def _import_card(destination: Path, config: EverAnimateConfig, record: dict[str, Any]) -> str:
    imported = record["imported"]
    base = record.get("base_model") or f"the base with weights fingerprint {record.get('base_weights_sha256', 'unknown')}"
    layout = (
        "`release`: trained with the anchor latents prepended as extra time slots. Running this LoRA selects that "
        "layout, and an explicit `layout=paper` is refused."
        if config.layout == "release"
        else f"`{config.layout}`, as it was trained; an explicit `layout=` that differs is refused."
    )
    return f"""# EverAnimate LoRA imported from `{imported["source"]}`

- Source: `{imported["source"]}`, sha256 `{imported["source_sha256"]}`; converted by `python -m everanimate.lora import`
  ({imported["conversion"]}).
- LoRA rank {config.lora_rank}, alpha {config.lora_alpha:g}, {imported["blocks"]} blocks, on q, k, v, o of both attentions and both FFN linears.
- Base: {base}. Run: `python -m benchmark.run --method everanimate --method-arg preset=wan2.2-animate-14b
  --method-arg weights=DIR --method-arg lora={destination} ...`.
- Layout {layout}
- K = {config.identity_frames} identity latents, r = {config.motion_latents} motion latent(s), sampling shift {config.sampling_shift:g}.
"""


def export_official(folder: str | Path, destination: str | Path, overwrite: bool = False) -> Path:
    """Write the LoRA folder ``folder`` as one safetensors file in the official naming
    (``blocks.N.self_attn.q.lora_A.default.weight``, no prefix, no alpha key). When its alpha is not
    its rank, the scale alpha / rank is folded into every ``lora_B``, and the config kept in the file's
    metadata says alpha = rank. Import the file again to get the folder back."""
    folder, destination = Path(folder), Path(destination)
    if destination.suffix != ".safetensors":
        raise LoraError(f"--out {destination}: the file name must end in .safetensors")
    if destination.is_dir():
        raise LoraError(f"--out {destination} is a folder; give a file name ending in .safetensors")
    if destination.exists() and not overwrite:
        raise LoraError(f"{destination} exists; pass --overwrite to replace it, or choose another --out")
    tensors, config, record = read_lora(folder)
    official = peft_to_official(tensors, config.lora_rank, config.lora_alpha, where=str(folder / TENSORS_FILE))
    written = dataclasses.replace(config, lora_alpha=float(config.lora_rank))
    kept = {key: value for key, value in record.items() if key not in ("format", "format_version", "config")}
    metadata = {EXPORT_CONFIG_KEY: json.dumps(written.to_dict(), sort_keys=True), EXPORT_RECORD_KEY: json.dumps(kept, sort_keys=True)}
    destination.parent.mkdir(parents=True, exist_ok=True)
    with temporary_sibling(destination) as tmp:
        save_file(official, str(tmp), metadata=metadata)
    return destination


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m everanimate.lora",
        description=(
            "Convert between the official EverAnimate LoRA (one .safetensors file, original Wan module names with "
            "peft's adapter name: blocks.N.self_attn.q.lora_A.default.weight, cross_attn.*, ffn.0, ffn.2) and this "
            "project's LoRA folders (lora.safetensors in diffusers' WanAnimateTransformer3DModel names plus lora.json). "
            "Every key must be used: an unknown or unmatched key is an error that names it. See docs/lora.md."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{import,export}")
    to_folder = commands.add_parser(
        "import",
        help="official .safetensors -> a LoRA folder for --method-arg lora=DST",
        description=(
            "Convert an official EverAnimate LoRA file into a LoRA folder. Accepts lora_A/lora_B or lora_down/lora_up, "
            "with or without peft's .default and a diffusion_model. prefix, and an optional .alpha per module (none: "
            "alpha = rank). The folder's config is the release's: layout=release (anchor latents prepended as extra "
            "time slots), K=4 identity latents, r=1 motion latent, sampling shift 5, and the rank and alpha of the "
            "file; running it with --method everanimate selects that layout. A file written by 'export' brings back "
            "its own config."
        ),
    )
    to_folder.add_argument("source", metavar="SRC", type=Path, help="the official LoRA, a .safetensors file (pickles are never read)")
    to_folder.add_argument("--out", metavar="DST", type=Path, required=True, help="the LoRA folder to write; must be new or empty")
    to_folder.add_argument("--overwrite", action="store_true", help="replace the LoRA files of a folder that is not empty")
    to_file = commands.add_parser(
        "export",
        help="a LoRA folder -> one .safetensors file in the official naming",
        description=(
            "Write a LoRA folder as one .safetensors file in the official naming (lora_A/lora_B with .default, no "
            "prefix, no alpha key). That naming has no alpha, so when the folder's alpha differs from its rank the "
            "scale alpha/rank is folded into every lora_B (the LoRA's effect is unchanged) and the file says alpha = "
            "rank. The config and record travel in the file's metadata, so 'import' restores them."
        ),
    )
    to_file.add_argument("source", metavar="SRC_FOLDER", type=Path, help="a LoRA folder (lora.safetensors and lora.json)")
    to_file.add_argument("--out", metavar="FILE", type=Path, required=True, help="the file to write, ending in .safetensors")
    to_file.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "import":
            folder = import_official(args.source, args.out, args.overwrite)
            config = json.loads((folder / RECORD_FILE).read_text())["config"]
            print(f"wrote {folder}: rank {config['lora_rank']}, alpha {config['lora_alpha']:g}, layout {config['layout']}")
        else:
            path = export_official(args.source, args.out, args.overwrite)
            print(f"wrote {path}")
    except (BenchmarkError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
