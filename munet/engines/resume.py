"""Resuming an interrupted training from the atomic last-state checkpoint."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader
from monai.transforms import Compose, Randomizable

__all__ = ["RNGState", "attach_resume", "run_unless_finished"]

logger = logging.getLogger("munet")


class RNGState:
    """The random number generators' state, as a checkpointable object (``state_dict``/``load_state_dict``).

    Holds Python's, NumPy's and torch's global generators (CUDA's too when present) and the
    private generators of the random transforms in ``transforms``, so a resumed run continues the
    same random stream. NumPy states are stored as tensors and lists so that the checkpoint still
    loads with ``torch.load(weights_only=True)``.
    """

    def __init__(self, transforms: Optional[Compose] = None) -> None:
        self.transforms = transforms

    def _randomizables(self) -> list:
        if self.transforms is None:
            return []
        flat = self.transforms.flatten().transforms if isinstance(self.transforms, Compose) else self.transforms
        return [t for t in flat if isinstance(t, Randomizable)]

    @staticmethod
    def _numpy_state(state: tuple) -> Dict[str, Any]:
        name, keys, pos, has_gauss, cached = state
        return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                "has_gauss": int(has_gauss), "cached": float(cached)}

    @staticmethod
    def _numpy_tuple(state: Mapping[str, Any]) -> tuple:
        keys = state["keys"].numpy().astype(np.uint32)
        return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {
            "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0],
            "python_gauss": random.getstate()[2],
            "numpy": self._numpy_state(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "transforms": [self._numpy_state(t.R.get_state()) for t in self._randomizables()],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
        np.random.set_state(self._numpy_tuple(state["numpy"]))
        torch.set_rng_state(state["torch"].cpu())
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        for transform, saved in zip(self._randomizables(), state.get("transforms", [])):
            transform.R.set_state(self._numpy_tuple(saved))


def attach_resume(trainer: Engine, checkpoint_path: str, objects: Mapping[str, Any], device: Any = "cpu", enabled: bool = True) -> bool:
    """Restore ``trainer`` and its ``objects`` from ``checkpoint_path`` before ``trainer.run()``.

    Does nothing and returns False unless ``enabled`` (the configs' ``resume``).

    Uses MONAI's ``CheckpointLoader`` (``torch.load(weights_only=True)``) to restore every object
    (model, optimizer, scheduler, trainer epoch, RNG, best score, early stopping); the run then
    continues after the last completed epoch up to the requested ``max_epochs``. Without a
    checkpoint (killed before the first epoch ended) training starts from epoch 1 and says so.
    Loading before ``run`` (not at ``STARTED``) lets every handler see the restored epoch.
    """
    if not enabled:
        return False
    path = Path(checkpoint_path)
    if not path.is_file():
        logger.warning("resume requested but %s does not exist: starting from epoch 1", path)
        return False
    CheckpointLoader(load_path=str(path), load_dict=dict(objects), map_location=device)(trainer)
    logger.info("resuming from %s after epoch %d of %d", path, trainer.state.epoch, trainer.state.max_epochs)
    return True


def run_unless_finished(trainer: Engine) -> None:
    """``trainer.run()``, except when a resumed state already reached ``max_epochs``.

    Ignite restarts a finished engine from epoch 0, which would silently retrain from scratch.
    """
    if trainer.state.epoch >= trainer.state.max_epochs > 0:
        logger.info("training already finished (epoch %d of %d): nothing to do", trainer.state.epoch, trainer.state.max_epochs)
        return
    trainer.run()
