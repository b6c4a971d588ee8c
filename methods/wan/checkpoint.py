"""Training checkpoints as safetensors plus JSON: model weights, optimizer moments and the step, no
pickled objects, so a run resumes with ``weights_only`` safety and files stay inspectable.

A checkpoint folder holds ``model.safetensors``, ``optimizer.safetensors`` and ``state.json``; the JSON
is written last and atomically, so a folder without it is an interrupted save and is ignored.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"{index}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()} for group in state["param_groups"]]
    return tensors, groups


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    restored = [{k: (tuple(v) if k == "betas" else v) for k, v in group.items()} for group in groups]
    optimizer.load_state_dict({"state": state, "param_groups": restored})


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``folder`` (replacing an older checkpoint there) and return it. ``extra`` holds further
    named tensor sets (e.g. an EMA of the weights), each written to ``NAME.safetensors``."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    moments, groups = optimizer_to_flat(optimizer)
    save_file(moments, str(tmp / "optimizer.safetensors"))
    for name, tensors in (extra or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps({**info, "param_groups": groups}, indent=1, sort_keys=True))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> dict[str, Any] | None:
    """Restore ``model`` (and ``optimizer``, and the tensors of every ``extra`` set, in place) from
    ``folder``; returns the saved info, or None if there is no complete checkpoint."""
    folder = Path(folder)
    if not (folder / STATE_FILE).exists():
        old = folder.with_name(folder.name + ".old")
        if not (old / STATE_FILE).exists():
            return None
        folder = old
    info = json.loads((folder / STATE_FILE).read_text())
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    if optimizer is not None:
        optimizer_from_flat(optimizer, load_file(str(folder / "optimizer.safetensors")), info.pop("param_groups"))
    else:
        info.pop("param_groups", None)
    for name, tensors in (extra or {}).items():
        for key, value in load_file(str(folder / f"{name}.safetensors")).items():
            tensors[key].copy_(value)
    return info


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The random stream of one training step: a function of (seed, step, stream) only, so a resumed
    run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)
