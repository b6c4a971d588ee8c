"""EverAnimate LoRA files: LoRA tensors only, in safetensors, next to a JSON record.

A LoRA folder holds ``lora.safetensors`` (peft's state dict of the adapter, keys as
``get_peft_model_state_dict`` gives them: ``blocks.N.attn1.to_q.lora_A.weight`` ...) and ``lora.json``
(format, the :class:`EverAnimateConfig` it was trained with, the fingerprint of the base weights it
was trained on, the training stage and the training record). No pickles: ``torch.load`` is never
needed, and the base weights are never written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from benchmark.errors import BenchmarkError
from benchmark.files import atomic_write_text, temporary_sibling

from .config import EverAnimateConfig

LORA_FORMAT = "everanimate-bench/lora"
LORA_FORMAT_VERSION = 1
TENSORS_FILE = "lora.safetensors"
RECORD_FILE = "lora.json"


class LoraError(BenchmarkError):
    """A LoRA folder that is missing, malformed or does not fit the backbone."""


def lora_state(transformer: Any) -> dict[str, torch.Tensor]:
    """The adapter's tensors only (peft's naming), detached on the CPU."""
    from peft import get_peft_model_state_dict

    return {key: value.detach().cpu().contiguous() for key, value in get_peft_model_state_dict(transformer).items()}


def save_lora(folder: str | Path, transformer: Any, config: EverAnimateConfig, record: dict[str, Any]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with temporary_sibling(folder / TENSORS_FILE) as tmp:
        save_file(lora_state(transformer), str(tmp))
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
    return load_file(str(tensors_path)), config, record


def attach_lora(backbone: Any, tensors: dict[str, torch.Tensor], config: EverAnimateConfig) -> None:
    """Add the adapter to the backbone's transformer and load ``tensors`` into it; every tensor must
    be used and every adapter weight given."""
    from peft import set_peft_model_state_dict

    backbone.add_lora(rank=config.lora_rank, alpha=config.lora_alpha)
    result = set_peft_model_state_dict(backbone.transformer, tensors)
    unexpected = sorted(getattr(result, "unexpected_keys", []) or [])
    expected = set(lora_state(backbone.transformer))
    missing = sorted(expected - set(tensors))
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
