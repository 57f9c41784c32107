"""This process's place in a torch.distributed run (rank 0 of 1 when not distributed).

One helper for the data sampler, the MLflow guard and the DDP handler filter, which all need it.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = ["rank", "world_and_rank", "default_device", "default_backend", "local_device", "device_ids", "start", "quiet_other_ranks"]


def world_and_rank() -> Tuple[int, int]:
    """(world size, rank) of the default process group, (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return world_and_rank()[1]


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU (train.json's ``device``)."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def default_backend() -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def local_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK``, set by torchrun), or the CPU."""
    return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}") if torch.cuda.is_available() else torch.device("cpu")


def device_ids(device: torch.device) -> Optional[List[torch.device]]:
    """``DistributedDataParallel``'s ``device_ids``: the one GPU, or None on the CPU."""
    return [device] if device.type == "cuda" else None


def start(backend: str, device: torch.device) -> None:
    """Join the process group torchrun describes (once) and select this process's GPU."""
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)


def quiet_other_ranks() -> None:
    """Log warnings only on ranks other than 0, so a run prints one progress report."""
    if rank() > 0:
        logging.getLogger().setLevel(logging.WARNING)
