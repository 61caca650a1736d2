"""torch.distributed for the commands: join torchrun's process group, or run alone.

``torchrun --standalone --nproc_per_node N -m spikeconverter evaluate ...`` starts N processes
with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`process_group` initialises the default
group from them (``nccl`` for CUDA devices, ``gloo`` on the CPU) and tears it down at the end.
Launched without torchrun it does nothing and the command runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_sum", "broadcast_module", "from_rank0", "is_distributed", "launched_by_torchrun",
           "process_group", "rank", "shard_of"]


def launched_by_torchrun() -> bool:
    """Whether the environment names a process group (``torchrun`` sets these variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_distributed() -> bool:
    """Whether a default process group of more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when alone)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shard_of() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` when alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_sum(values: Sequence[float]) -> list[float]:
    """``values`` summed over the ranks (as float64: integer counts up to 2**53 stay exact), or
    ``values`` themselves when alone."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":  # nccl reduces CUDA tensors only
            t = t.cuda()
        dist.all_reduce(t)
    return t.cpu().tolist()


def from_rank0(make: Callable[[], Any]) -> Any:
    """``make()`` run on rank 0 and sent to every rank, so that all use exactly the same value
    (a picklable one); called alone, just ``make()``."""
    if shard_of()[1] == 1:
        return make()
    box = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: torch.nn.Module) -> torch.nn.Module:
    """Give every rank rank 0's parameters and buffers (in place; as DDP does when it wraps a
    model), so that all ranks evaluate the same network even when it was built with random
    weights; does nothing when alone."""
    if shard_of()[1] > 1:
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)
    return module


@contextmanager
def process_group(device: Any = None) -> Iterator[int]:
    """Join torchrun's process group for the duration of the block; yields this rank.

    Parameters
    ----------
    device : torch.device or str, optional
        The device this process works on: CUDA selects ``nccl`` (and makes the device current),
        anything else ``gloo``.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield rank()
        return
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()
