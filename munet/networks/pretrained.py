"""Loading pretrained encoder weights from local files, never from a hub.

Every file is checked against an expected sha256 when one is given (shared weights must be), loaded
with ``torch.load(weights_only=True)`` so that a weights file cannot run code, and adapted to the
encoder's number of input channels (ImageNet stems have 3, grayscale ultrasound has 1).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from munet.utils.hashing import sha256_of

__all__ = ["WeightsError", "load_state_dict_file", "load_encoder_weights", "adapt_state_dict"]

logger = logging.getLogger(__name__)


class WeightsError(ValueError):
    """A weights file that is missing, altered or does not fit the network."""


def load_state_dict_file(path: str | Path, sha256: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``path`` after checking its sha256 (when given), ``weights_only=True``.

    Accepts a bare state dict or a checkpoint dict holding one under ``model``/``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"pretrained weights file not found: {path}")
    if sha256:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise WeightsError(f"sha256 mismatch for {path}: expected {sha256}, file has {actual}; refusing to load")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path} does not hold a state dict")
    return dict(state)


def adapt_state_dict(state: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """Keep the entries that fit ``model``; adapt the stem convolution to the model's input channels.

    A 3-channel (RGB) stem loaded into a 1-channel model is summed over its input channels, as timm's
    ``adapt_input_conv`` does, so grayscale images see the same response as a gray RGB image.
    """
    from timm.models import adapt_input_conv

    target = model.state_dict()
    adapted: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            continue
        wanted = target[key].shape
        if value.shape == wanted:
            adapted[key] = value
        elif value.dim() == 4 and value.shape[0] == wanted[0] and value.shape[2:] == wanted[2:]:
            adapted[key] = adapt_input_conv(wanted[1], value)
        else:
            raise WeightsError(f"weight {key!r} has shape {tuple(value.shape)}, the network needs {tuple(wanted)}")
    return adapted


def load_encoder_weights(model: nn.Module, path: str | Path, sha256: Optional[str] = None) -> None:
    """Load encoder weights from a local file into ``model``; every encoder weight must be present.

    Keys the encoder does not have (a classifier's ``fc``/``classifier`` head) are ignored.
    """
    state = adapt_state_dict(load_state_dict_file(path, sha256), model)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(
            f"{path} lacks {len(missing)} encoder weights (e.g. {missing[:3]}): it was made for another backbone"
        )
    model.load_state_dict(state, strict=False)
    logger.info("loaded %d pretrained encoder tensors from %s", len(state), path)
