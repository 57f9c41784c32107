"""Output heads: one mask head per decoder stage and the classification head on C5."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLASS_POOLINGS", "MaskHead", "ClassificationHead", "PresenceHead", "lesion_pool"]

#: how the class head pools C5: the paper's global average, or that concatenated with a lesion-weighted average
CLASS_POOLINGS = ("global", "global+lesion")


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
    """Benign/malignant head on the deepest encoder map: pool, dropout, linear.

    Args:
        in_channels: channels of the pooled map (C5).
        num_classes: class logits.
        dropout: dropout before the linear layer.
        pooling: ``"global"``, the paper's global average pool; or ``"global+lesion"`` (beyond the
            paper), that average concatenated with the map's average inside the predicted lesion
            (:func:`lesion_pool`), because the malignancy cues (margins, shape, echo pattern) sit at
            the lesion while a global average mixes them with the surrounding tissue.
    """

    def __init__(self, in_channels: int, num_classes: int = 2, dropout: float = 0.2, pooling: str = "global") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        if pooling not in CLASS_POOLINGS:
            raise ValueError(f"unknown class_pooling {pooling!r}: choose one of {', '.join(CLASS_POOLINGS)}")
        self.pooling = pooling
        self.lesion_pooling = pooling == "global+lesion"
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels * (2 if self.lesion_pooling else 1), num_classes)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Class logits of the map ``x``; ``mask`` (the fused lesion probabilities, any size) is
        needed by ``"global+lesion"`` pooling and ignored by ``"global"``."""
        pooled = torch.flatten(self.pool(x), 1)
        if self.lesion_pooling:
            if mask is None:
                raise ValueError("class_pooling 'global+lesion' needs the predicted lesion mask")
            pooled = torch.cat([pooled, lesion_pool(x, mask).to(pooled.dtype)], dim=1)
        return self.linear(self.dropout(pooled))


def lesion_pool(features: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Average of ``features`` [B, C, h, w] weighted by ``mask`` [B, 1, H, W] -> [B, C].

    The mask (lesion probabilities) is detached, so the class loss does not reshape the
    segmentation, and area-pooled to the feature map's size, so a C5 cell weighs by the share of
    its receptive patch predicted as lesion. Sigmoid probabilities are never exactly zero, so the
    result is a weighted mean even on a normal image; ``eps`` (1e-12, far below the summed
    probabilities of any mask a sigmoid gives in float32) only guards an all-zero mask (-> 0).
    Computed in float32: under bf16 autocast the weighted sums would otherwise round.
    """
    weights = F.adaptive_avg_pool2d(mask.detach().float(), [features.shape[2], features.shape[3]])
    weighted = (features.float() * weights).sum(dim=(2, 3))
    return weighted / weights.sum(dim=(2, 3)).clamp_min(eps)


class PresenceHead(nn.Module):
    """Lesion-presence logit on the deepest encoder map: global average pool, dropout, linear -> 1.

    Beyond the paper, which assumes every image holds a lesion. A mask head cannot say "no
    lesion" reliably: its per-image Dice loss gives an empty target no gradient, and a threshold on
    pixel probabilities marks some pixels on most normal images. This image-level logit is trained
    with binary cross-entropy on "the mask has any lesion pixel" and, below a threshold chosen on
    the validation split, empties the predicted mask (``munet.engines.postprocessing``).
    """

    def __init__(self, in_channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(x), 1)))
