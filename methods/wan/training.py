"""The training-loop plumbing every training script of this project shares (``train_vae``,
``train_base``): where runs live, the learning-rate schedule, the run folder's checkpoint and
resume, the JSON-lines log, and when a step logs, evaluates or saves.

A run is a function of (seed, step) (:func:`methods.wan.checkpoint.step_generator`) and of the step
count, so a run folder resumed by rerunning the same command continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, save_checkpoint

DEFAULT_ROOT = Path(os.environ.get("EVERANIMATE_BENCH_CACHE", Path.home() / ".cache" / "everanimate-bench")) / "train"

#: Steps averaged into one line of ``train.log``.
LOG_EVERY = 25

CHECKPOINT = "checkpoint"


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, constant, then a linear decay over the last 10% of the steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_start = int(0.9 * total)
    if step < decay_start:
        return peak
    return peak * max(0.05, 1.0 - (step - decay_start) / max(1, total - decay_start))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def log_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON record to a run's log."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def resume_run(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[dict[str, Any], int, list[dict]]:
    """Restore a run folder's checkpoint into ``model``, ``optimizer`` and ``extra`` (in place):
    returns its saved info (empty for a new run), the step to continue from and the evaluation history."""
    info = load_checkpoint(run_dir / CHECKPOINT, model, optimizer, extra=extra) or {}
    return info, int(info.get("step", 0)), list(info.get("history", []))


def save_run(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
    args: argparse.Namespace,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> None:
    """Checkpoint a run folder; ``info`` (the step and history at least) is saved with the command's
    arguments as text, so a checkpoint says how it was made."""
    save_checkpoint(run_dir / CHECKPOINT, model, optimizer, {**info, "args": {k: str(v) for k, v in vars(args).items()}}, extra=extra)


def due(step: int, every: int, total: int, out_of_time: bool) -> bool:
    """Whether a periodic task (evaluation, checkpoint) runs after ``step``: every ``every`` steps, at
    the last step, and before a run stops for lack of time."""
    return step % every == 0 or step == total or out_of_time


def out_of_time(began: float, max_minutes: float | None) -> bool:
    """Whether this invocation has used up ``--max-minutes`` (None: no limit) since ``began`` (``time.time()``)."""
    return max_minutes is not None and (time.time() - began) / 60 >= max_minutes


def record_evaluation(log_path: Path, history: list[dict], record: dict[str, Any]) -> None:
    """Keep a held-out evaluation in the run's history (saved with the checkpoint and the model card)
    and in its log."""
    history.append(record)
    log_line(log_path, {"eval": record})


class LossLog:
    """The training loss averaged over every ``every`` (:data:`LOG_EVERY`) steps, into one line of the
    log (with the learning rate, the speed and the run's minutes) and the progress bar."""

    def __init__(self, path: Path, bar: Any, every: int = LOG_EVERY):
        self.path, self.bar, self.every = path, bar, every
        self.losses: list[float] = []
        self.tick = time.time()

    def add(self, step: int, loss: float, lr: float, minutes: float) -> None:
        """Record the loss of the step that made the run's step count ``step``."""
        self.losses.append(loss)
        if step % self.every:
            return
        rate = len(self.losses) / (time.time() - self.tick)
        self.tick = time.time()
        mean = sum(self.losses) / len(self.losses)
        log_line(self.path, {"step": step, "loss": mean, "lr": lr, "steps_per_s": rate, "minutes": minutes})
        self.bar.set_postfix(loss=f"{mean:.4f}")
        self.losses = []


def parse_lengths(text: str) -> list[tuple[int, float]]:
    """``--lengths 10:0.5,20:0.5`` -> ``[(10, 0.5), (20, 0.5)]``: latent slots per training chunk and their probability."""
    return [(int(slots), float(probability)) for slots, probability in (item.split(":") for item in text.split(","))]


def draw_length(lengths: list[tuple[int, float]], generator: torch.Generator) -> int:
    """One step's chunk length in latent slots, drawn with the given probabilities."""
    weights = torch.tensor([probability for _, probability in lengths])
    return lengths[int(torch.multinomial(weights, 1, generator=generator))][0]
