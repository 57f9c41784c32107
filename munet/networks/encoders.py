"""Encoders that give MUNet its five feature maps C1..C5 (strides 2, 4, 8, 16, 32).

Two kinds are offered, both with the same contract (``out_channels`` and ``forward -> List[Tensor]``):

- :class:`PaperEncoder`, the MUNet paper's own encoder: five blocks, each opening with a stride-2
  3x3 convolution (padding 1) in place of max pooling, channels doubling per block.
- :class:`TimmEncoder`, any timm model that offers the five levels through ``features_only=True``
  (ResNet, DenseNet, Inception, EfficientNet, ...), built with ``pretrained=False`` so that timm
  never tries to download; ImageNet weights come from a local file checked by sha256.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from munet.networks.blocks import dbl
from munet.networks.efficientnet_lite import IMAGENET, load_package_encoder_weights
from munet.networks.pretrained import load_encoder_weights

__all__ = [
    "PAPER_ENCODER",
    "TESTED_TIMM_BACKBONES",
    "PaperEncoder",
    "TimmEncoder",
    "build_encoder",
    "supported_backbones",
]

#: Name of the paper's own encoder in ``backbone=`` arguments.
PAPER_ENCODER = "munet"

#: timm backbones this project tests (any other timm model with five levels at strides 2..32 works too).
TESTED_TIMM_BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "densenet121",
    "inception_v3",
    "inception_v4",
    "inception_resnet_v2",
    "efficientnet_b0",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)

_REDUCTIONS = [2, 4, 8, 16, 32]


def supported_backbones() -> List[str]:
    """The backbone names offered in errors and docs: the paper encoder and the tested timm models."""
    return [PAPER_ENCODER, *TESTED_TIMM_BACKBONES]


class PaperEncoder(nn.Module):
    """The MUNet paper's encoder (section III): no pooling, stride-2 3x3 convolutions instead.

    Block ``k`` (k = 1..5) is a stride-2 DBL (3x3 conv, BN, LeakyReLU) from the previous width to
    ``base_channels * 2**(k-1)`` followed by ``convs_per_block - 1`` stride-1 DBLs. At the paper's
    full width (``base_channels=64``) a 256x256 input gives C1 128x128x64 ... C5 8x8x1024.
    The paper does not say how many convolutions follow the strided one; two per block (as in
    U-Net's double convolution) is our default, see docs/architecture.md.
    """

    def __init__(
        self, in_channels: int = 1, base_channels: int = 64, convs_per_block: int = 2, norm: bool = True
    ) -> None:
        super().__init__()
        if base_channels < 1 or convs_per_block < 1:
            raise ValueError("base_channels and convs_per_block must be positive")
        self.out_channels: List[int] = [base_channels * 2**k for k in range(5)]
        blocks = []
        previous = in_channels
        for width in self.out_channels:
            layers = [dbl(previous, width, stride=2, norm=norm)]
            layers += [dbl(width, width, norm=norm) for _ in range(convs_per_block - 1)]
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        features: List[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class TimmEncoder(nn.Module):
    """Any timm model with five feature levels at strides 2, 4, 8, 16, 32 (``features_only=True``).

    Inception models use unpadded convolutions, so their maps are a few pixels smaller than
    ``input / stride``; the decoder aligns them by resizing to each skip's own size.
    """

    def __init__(
        self,
        name: str,
        in_channels: int = 1,
        pretrained: Optional[str] = None,
        pretrained_sha256: Optional[str] = None,
    ) -> None:
        super().__init__()
        import timm  # imported here: the paper encoder must not pay timm's import time

        if name not in timm.list_models():
            raise ValueError(
                f"unknown backbone {name!r}: valid backbones are {', '.join(supported_backbones())}, "
                "or any other timm model name (timm.list_models()) that has five feature levels"
            )
        try:
            self.model = timm.create_model(
                name, features_only=True, pretrained=False, in_chans=in_channels, out_indices=(0, 1, 2, 3, 4)
            )
        except (RuntimeError, ValueError, IndexError, AssertionError) as err:
            raise ValueError(f"backbone {name!r} cannot give five feature levels: {err}") from err
        reductions = list(self.model.feature_info.reduction())
        if reductions != _REDUCTIONS:
            raise ValueError(
                f"backbone {name!r} gives feature levels at strides {reductions}, MUNet needs {_REDUCTIONS}"
            )
        self.out_channels: List[int] = list(self.model.feature_info.channels())
        self.name = name
        if pretrained == IMAGENET:
            load_package_encoder_weights(self.model, name)
        elif pretrained:
            load_encoder_weights(self.model, pretrained, pretrained_sha256)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.model(x)


def build_encoder(
    backbone: str = PAPER_ENCODER,
    in_channels: int = 1,
    base_channels: int = 64,
    convs_per_block: int = 2,
    norm: bool = True,
    pretrained: Optional[str] = None,
    pretrained_sha256: Optional[str] = None,
) -> nn.Module:
    """Build the encoder named ``backbone``: ``"munet"`` (the paper's) or a timm model name."""
    if not isinstance(backbone, str) or not backbone:
        raise ValueError(f"backbone must be a name, one of {', '.join(supported_backbones())}")
    if backbone == PAPER_ENCODER:
        encoder = PaperEncoder(in_channels, base_channels, convs_per_block, norm)
        if pretrained == IMAGENET:
            raise ValueError("pretrained 'imagenet' needs an EfficientNet-Lite backbone; the paper encoder has no ImageNet weights")
        if pretrained:
            load_encoder_weights(encoder, pretrained, pretrained_sha256)
        return encoder
    return TimmEncoder(backbone, in_channels, pretrained, pretrained_sha256)

