"""Process-group helpers for sharding clips across processes started by ``torchrun``.

Every helper works without ``torch.distributed`` being initialised (one process: rank 0 of 1), so
the same code path runs on a laptop and on a multi-GPU node. Clips are sharded round-robin and every
reported number is computed from records gathered back in a caller-given order, so the process count
never changes a result.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend_for(device: str) -> str:
    """NCCL for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group described by torchrun's environment (``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``). Returns True when running distributed.

    A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) initialises nothing. On CUDA, each
    process takes the GPU of its ``LOCAL_RANK``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if str(device).startswith("cuda"):
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend_for(device), init_method="env://")
    return is_distributed()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def first_error(message: str | None) -> str | None:
    """Agree on failure. Every process passes its own error message (or None) and gets the first one in
    rank order, so a check that fails on one process stops every process at the same point instead of
    leaving the others waiting in a collective."""
    if not is_distributed():
        return message
    gathered: list[str | None] = [None] * world_size()
    dist.all_gather_object(gathered, message)
    return next((m for m in gathered if m is not None), None)


def main_process_first(step: Callable[[bool], T], errors: tuple[type[Exception], ...]) -> tuple[T | None, str | None]:
    """Run ``step(is_main)`` on the first process and then, once it has succeeded, on the others.

    For work that only the first process may do (verify a split, claim an output folder) and that the
    others must wait for. Returns ``(value, error)``: an exception from ``errors`` on any process becomes
    the same error message on every process, and ``value`` is None then.
    """
    value, error = None, None
    for main_turn in (True, False):
        if error is None and (rank() == 0) == main_turn:
            try:
                value = step(main_turn)
            except errors as exc:
                error = str(exc)
        error = first_error(error)
    return (None if error else value), error


def shutdown() -> None:
    """Leave the process group once every process has reached this point. A process that exits while
    another still uses the group makes gloo abort at exit; one that waits here exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def shard(items: Sequence[T]) -> list[T]:
    """This process's share of ``items``: ``items[rank::world_size]``."""
    return list(items)[rank() :: world_size()]


def gather_objects(items: Sequence[T], key: Callable[[T], Any]) -> list[T]:
    """Concatenate every process's ``items`` (picklable) on every process, sorted by ``key``.

    The sort makes the result independent of how the items were sharded.
    """
    if not is_distributed():
        return sorted(items, key=key)
    gathered: list[list[T] | None] = [None] * world_size()
    dist.all_gather_object(gathered, list(items))
    return sorted((item for part in gathered for item in (part or [])), key=key)


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` in place over all processes (integer tensors sum exactly)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
