"""A weights file's network settings, kept beside it: ``models/model.pt`` -> ``models/model.json``.

The bundle's configs are the one source of truth for how a network is built and served. A
checkpoint holds tensors only: the network's width can be checked against them when loading, but
not the image size it was trained at (a MUNet trained at 64 px runs at 256 px without any error,
just badly). So training writes, beside the weights, what built them (``network.settings``, from
:func:`munet.networks.build_network`), the image size, and the SHA-256 of the weights; whoever
serves them (MONAI Label, ``munet infer``) calls :func:`check_weights_settings` and refuses
weights whose settings differ from the configs', naming each difference. A sidecar left beside
other weights (its SHA-256 differs) is recognised as stale instead of being believed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from torch import nn

from munet.errors import BadInputError
from munet.utils.hashing import sha256_of

__all__ = ["WeightsMismatchError", "sidecar_path", "network_settings", "write_weights_info", "read_weights_info",
           "copy_weights_info", "check_weights_settings"]


class WeightsMismatchError(BadInputError):
    """Weights trained with other settings than the configs that would serve them (reported in one line)."""


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


def network_settings(network: nn.Module, image_size: int) -> Dict[str, Any]:
    """What must be the same to serve ``network``'s weights: its build settings and the image size."""
    module = getattr(network, "module", network)  # DistributedDataParallel
    settings = getattr(module, "settings", None)
    if not isinstance(settings, Mapping):
        raise ValueError(f"{type(module).__name__} has no build settings: build it with munet.networks.build_network")
    return {**{k: _plain(v) for k, v in settings.items()}, "image_size": int(image_size)}


def write_weights_info(weights: Union[str, Path], network: nn.Module, image_size: int,
                       extra: Optional[Mapping[str, Any]] = None) -> Optional[Path]:
    """Write the sidecar of ``weights``: :func:`network_settings` plus ``extra``; atomic. Returns its
    path, or None on ranks other than 0 or when ``weights`` does not exist (a run that saved none)."""
    if int(os.environ.get("RANK", "0")) != 0 or not Path(weights).is_file():
        return None
    return _write(Path(weights), network_settings(network, image_size), extra)


def copy_weights_info(source: Union[str, Path], weights: Union[str, Path], extra: Optional[Mapping[str, Any]] = None) -> Path:
    """The sidecar of ``weights`` (a copy of ``source``, e.g. published candidate weights) from
    ``source``'s sidecar, with the new file's SHA-256 and ``extra``."""
    info, problem = read_weights_info(source)
    if info is None:
        raise ValueError(f"{source}: {problem}")
    return _write(Path(weights), info["trained_with"], extra)


def _write(weights: Path, trained_with: Mapping[str, Any], extra: Optional[Mapping[str, Any]]) -> Path:
    content: Dict[str, Any] = {
        "weights": weights.name,
        "sha256": sha256_of(weights),
        "trained_with": dict(trained_with),
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
        return None, f"{weights.name} has no {path.name} beside it"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"{path.name} is not readable JSON ({err})"
    if not isinstance(info, dict) or not isinstance(info.get("trained_with"), dict):
        return None, f"{path.name} has no 'trained_with' object"
    if weights.is_file() and info.get("sha256") != sha256_of(weights):
        return None, f"{path.name} describes other weights (SHA-256 differs from {weights.name}): ignored"
    return info, None


def check_weights_settings(weights: Union[str, Path], configured: Mapping[str, Any]) -> Optional[str]:
    """Raise :class:`WeightsMismatchError` when ``weights`` were trained with settings other than
    ``configured`` (:func:`network_settings` of the network the configs build); returns a note
    when nothing can be checked (no sidecar: weights from before sidecars, or copied without it)."""
    if not Path(weights).is_file():
        return None  # nothing to serve (an ensemble serves its members' weights); the loader says so
    info, problem = read_weights_info(weights)
    if info is None:
        note = f"{problem}: its training settings cannot be checked against the configs"
        logging.getLogger("munet").warning(note)
        return note
    trained = info["trained_with"]
    differ = {k: (trained[k], _plain(configured[k])) for k in trained if k in configured and trained[k] != _plain(configured[k])}
    if differ:
        raise WeightsMismatchError(
            f"{Path(weights).name} was trained with " + ", ".join(f"{k} {a!r}" for k, (a, _) in differ.items())
            + "; the bundle's configs say " + ", ".join(f"{k} {b!r}" for k, (_, b) in differ.items())
            + ": serve it with the configs it was trained with (its bundle folder's configs/), or retrain")
    return None
