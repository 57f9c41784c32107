"""Input checks shared by every network of the bundle."""

from __future__ import annotations

import torch

from munet.constants import SIZE_MULTIPLE

__all__ = ["check_in_channels", "check_input"]


def check_in_channels(in_channels: int) -> None:
    """The networks take grayscale (1) or RGB (3) ultrasound; anything else is a configuration error."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")


def check_input(x: torch.Tensor, in_channels: int, multiple: int = SIZE_MULTIPLE) -> None:
    """Raise a clear ``ValueError`` for an input the networks cannot take.

    The bundle's transforms pad every image to a multiple of 32 (``DivisiblePadd``); a caller that
    feeds the network directly must do the same.
    """
    if x.dim() != 4:
        raise ValueError(
            "MUNet expects a batch of 2D images shaped [B, C, H, W], got a tensor with shape "
            + str(list(x.shape))
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            "MUNet was built with in_channels="
            + str(in_channels)
            + " but the input has "
            + str(x.shape[1])
            + " channels: convert colour images to grayscale (bundle transforms do) or build the "
            + "network with the matching in_channels"
        )
    h = x.shape[2]
    w = x.shape[3]
    if h % multiple != 0 or w % multiple != 0:
        raise ValueError(
            "MUNet needs height and width that are multiples of "
            + str(multiple)
            + ", got "
            + str(h)
            + "x"
            + str(w)
            + ": pad the image first (e.g. monai.transforms.DivisiblePad(k)); the bundle's "
            + "preprocessing does this and crops predictions back"
        )
