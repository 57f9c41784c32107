"""This process's place in a torch.distributed run (rank 0 of 1 when not distributed).

One helper for the data sampler, the MLflow guard and the DDP handler filter, which all need it.
"""

from __future__ import annotations

from typing import Tuple

import torch.distributed as dist

__all__ = ["rank", "world_and_rank"]


def world_and_rank() -> Tuple[int, int]:
    """(world size, rank) of the default process group, (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return world_and_rank()[1]
