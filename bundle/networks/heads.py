"""Output heads: one mask head per decoder stage and the classification head on C5."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskHead", "ClassificationHead", "PresenceHead"]


class MaskHead(nn.Module):
    """The 1x1 convolution that turns one decoder stage into one mask (logits, one channel).

    The sigmoid is applied by the fusion and the loss, not here, so the loss can work on logits.
    ``kernel_size=3`` is the "no 1x1 conv" ablation of the paper's Table II.
    """

    def __init__(self, in_channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"mask head kernel_size must be 1 or 3, got {kernel_size}")
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ClassificationHead(nn.Module):
    """Benign/malignant head on the deepest encoder map: global average pool, dropout, linear."""

    def __init__(self, in_channels: int, num_classes: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(x), 1)))


class PresenceHead(nn.Module):
    """Lesion-presence logit on the deepest encoder map: global average pool, dropout, linear -> 1.

    Beyond the paper, which assumes every image holds a lesion. A mask head cannot say "no
    lesion" reliably: its per-image Dice loss gives an empty target no gradient, and a threshold on
    pixel probabilities marks some pixels on most normal images. This image-level logit is trained
    with binary cross-entropy on "the mask has any lesion pixel" and, below a threshold chosen on
    the validation split, empties the predicted mask (``bundle.engines.postprocessing``).
    """

    def __init__(self, in_channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(x), 1)))
