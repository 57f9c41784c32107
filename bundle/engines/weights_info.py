"""A weights file's training settings, kept beside it: ``models/model_interactive.pt`` -> ``models/model_interactive.json``.

A checkpoint holds tensors only. The network's width can be checked against them when loading,
but not the image size it was trained at: a MUNet trained at 64 px runs at 256 px without any
error, just badly. The sidecar records the values that must be the same at inference
(:data:`NETWORK_KEYS`, ``image_size`` included) and the SHA-256 of the weights it describes, so a
sidecar left beside other weights is recognised as stale instead of being believed.

Written by the interactive training (``configs/train_interactive.json``, ``finalize``) and by the
MONAI Label trainers when they publish weights; read by the MONAI Label infer tasks, which serve
the weights with these values and say so. Rank 0 writes; nothing here imports MONAI Label.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ..sharing.checksums import sha256_of

__all__ = ["NETWORK_KEYS", "sidecar_path", "write_weights_info", "read_weights_info"]

#: config values that must match between training and inference for a weights file
NETWORK_KEYS = (
    "arch", "backbone", "base_channels", "decoder_channels", "fusion", "norm", "head_kernel_size",
    "presence_head", "class_pooling", "in_channels", "guidance", "num_classes", "class_names", "image_size",
)


def sidecar_path(weights: Union[str, Path]) -> Path:
    """``models/model.pt`` -> ``models/model.json``."""
    return Path(weights).with_suffix(".json")


def _plain(value: Any) -> Any:
    """Config values as JSON: tuples to lists, tensors/numpy scalars to numbers."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_weights_info(weights: Union[str, Path], values: Mapping[str, Any], extra: Optional[Mapping[str, Any]] = None) -> Optional[Path]:
    """Write the sidecar of ``weights`` from the training config ``values`` (only :data:`NETWORK_KEYS`
    are kept) plus ``extra``; atomic. Returns its path, or None on ranks other than 0 or when
    ``weights`` does not exist (a run that saved no checkpoint)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    weights = Path(weights)
    if not weights.is_file():
        return None
    content: Dict[str, Any] = {
        "weights": weights.name,
        "sha256": sha256_of(weights),
        "trained_with": {key: _plain(values[key]) for key in NETWORK_KEYS if key in values},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    content.update(dict(extra or {}))
    target = sidecar_path(weights)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(content, stream, indent=1)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def read_weights_info(weights: Union[str, Path]) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(info, None)`` for a sidecar that describes these very weights; ``(None, why)`` otherwise
    (none, unreadable, or written for other weights: its SHA-256 differs)."""
    weights = Path(weights)
    path = sidecar_path(weights)
    if not path.is_file():
        return None, f"{weights.name} has no {path.name} beside it: the settings it was trained with are unknown"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"{path.name} is not readable JSON ({err})"
    if not isinstance(info, dict) or not isinstance(info.get("trained_with"), dict):
        return None, f"{path.name} has no 'trained_with' object"
    if weights.is_file() and info.get("sha256") != sha256_of(weights):
        return None, f"{path.name} describes other weights (SHA-256 differs from {weights.name}): ignored"
    return info, None
