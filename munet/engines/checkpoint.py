"""Checkpoints that a kill during a save cannot break: temp file in the same folder, then rename."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, List, Mapping, Optional

import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from munet.utils.process_group import rank

__all__ = ["AtomicDiskSaver", "AtomicCheckpointSaver", "MODEL_SELECTIONS", "atomic_copy", "atomic_torch_save", "attach_on_rank0",
           "remove_stale_temp_files", "select_served_weights"]

#: which weights a training serves as its model file
MODEL_SELECTIONS = ("best_validation_score", "last_epoch")

logger = logging.getLogger("munet")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, then ``os.replace`` onto ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so readers see the old file or the new one,
    never a half-written one. The file gets the usual 0o644-minus-umask permissions (ignite's own
    atomic mode leaves temp files 0o600, which is why MONAI turns it off).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temp_files(directory: str | Path, filename: str) -> List[Path]:
    """Delete the temp files :func:`atomic_torch_save` left beside ``<directory>/<filename>`` when a
    process was killed mid-save (SIGKILL, OOM killer, a node lost): no ``except`` runs then, and each
    one is a whole checkpoint that a resumed run would otherwise keep forever. Returns what it removed."""
    removed = sorted(Path(directory).glob(f".{glob.escape(filename)}.*.tmp"))
    for stale in removed:
        stale.unlink(missing_ok=True)
    return removed


class AtomicDiskSaver(DiskSaver):
    """An Ignite save handler writing through :func:`atomic_torch_save`, optionally to a fixed name.

    With a fixed filename ``remove`` does nothing: Ignite removes the old checkpoint before writing
    the new one, which with one fixed name would leave a moment with no checkpoint at all; the
    atomic replace overwrites it instead. A fixed-name saver also deletes, when built, the temp
    files that a killed earlier save of that name left (:func:`remove_stale_temp_files`).
    """

    def __init__(self, dirname: str, filename: Optional[str] = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=False, create_dir=True)
        self.filename = filename
        if filename is not None:
            for stale in remove_stale_temp_files(dirname, filename):
                logger.info("removed %s, left by a save that was killed before it finished", stale)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Optional[Mapping] = None) -> None:
        atomic_torch_save(checkpoint, Path(self.dirname) / (self.filename or filename))

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic writes, and a fixed name for the interval checkpoint.

    Args:
        last_filename: fixed file name of the interval ("last state") checkpoint, e.g.
            ``checkpoint_last.pt``; requires ``n_saved=1``. Other arguments are MONAI's.
    """

    def __init__(self, *args: Any, last_filename: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if last_filename is not None and kwargs.get("n_saved", 1) not in (None, 1):
            raise ValueError("a fixed last_filename keeps exactly one checkpoint: use n_saved=1")
        key_metric_filename = kwargs.get("key_metric_filename")
        for checkpoint, fixed in (
            (self._final_checkpoint, self._final_filename),
            (self._key_metric_checkpoint, key_metric_filename),
            (self._interval_checkpoint, last_filename),
        ):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(self.save_dir, fixed)


def select_served_weights(served: str | Path, last_checkpoint: str | Path, model_selection: str) -> Optional[Path]:
    """At the end of training, make ``served`` (models/model.pt) the weights ``model_selection`` names.

    ``best_validation_score``: the best-score checkpoint already is (nothing to do).
    ``last_epoch``: the ``model`` entry of ``last_checkpoint`` (checkpoint_last.pt); the best-score weights stay beside
    it as ``model_best_val.pt``. Why the recommended recipe serves the last epoch: with a cosine
    schedule run to its end the learning rate is zero there, and on BUSI's 68 validation images the
    Dice + AUC score picked an early epoch (11 of 20) whose test Dice was 0.03 below the last one's.
    Rank 0 only; returns the served file when it was replaced.
    """
    if model_selection not in MODEL_SELECTIONS:
        raise ValueError(f"unknown model_selection {model_selection!r}: choose one of {', '.join(MODEL_SELECTIONS)}")
    if model_selection == "best_validation_score" or rank() != 0:
        return None
    served, last = Path(served), Path(last_checkpoint)
    if not last.is_file():
        raise FileNotFoundError(f"model_selection last_epoch: {last} not found")
    state = torch.load(last, map_location="cpu", weights_only=True)
    if served.is_file():
        os.replace(served, served.with_name(f"{served.stem}_best_val.pt"))
    atomic_torch_save(state["model"], served)
    logger.info("serving the last epoch's weights as %s (best-score weights: model_best_val.pt)", served)
    return served


def attach_on_rank0(saver: Any, engine: Any) -> None:
    """Attach a checkpoint saver on rank 0 only: the other ranks of a DDP run hold the same weights."""
    if rank() == 0:
        saver.attach(engine)


def atomic_copy(source: str | Path, target: str | Path) -> None:
    """Copy through a temp file in the target's folder and rename: readers never see half a file."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.copying")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
