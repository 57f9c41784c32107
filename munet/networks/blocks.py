"""Small building blocks shared by the encoders, the decoder and the heads."""

from __future__ import annotations

from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["dbl", "LEAKY_RELU"]

#: LeakyReLU as the paper's DBL block uses it (slope 0.1, as in YOLO's DBL, which the name comes from).
LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.1, "inplace": True})


def dbl(in_channels: int, out_channels: int, stride: int = 1, norm: bool = True) -> nn.Module:
    """A DBL block: 3x3 convolution, BatchNorm, LeakyReLU (MONAI ``Convolution``, order conv-norm-act).

    ``norm=False`` drops the BatchNorm (and gives the convolution a bias): the "no BN" row of the
    paper's Table II ablation.
    """
    return Convolution(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        strides=stride,
        kernel_size=3,
        act=LEAKY_RELU,
        norm="batch" if norm else None,
        bias=not norm,
    )
