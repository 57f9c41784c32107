"""Helpers for DDP runs (configs/multi_gpu_train.json)."""

from __future__ import annotations

from typing import Any, List, Sequence

from munet.utils.process_group import rank

__all__ = ["rank", "rank_handlers"]


def rank_handlers(handlers: Sequence[Any], every_rank: Sequence[str]) -> List[Any]:
    """All handlers on rank 0; on other ranks only those every rank must run, by class name.

    Rank 0 logs, writes checkpoints and metric files and talks to MLflow; every rank must step
    the LR schedule, run validation (its metric is gathered across ranks) and stop early together.
    Filtering by class name rather than list position (the zoo's ``[:-2]``) keeps working when
    ``--tracking mlflow`` appends handlers.
    """
    if rank() == 0:
        return list(handlers)
    return [h for h in handlers if type(h).__name__ in set(every_rank)]
