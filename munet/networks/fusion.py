"""Best-mask fusion: the paper's area-weighted vote of the branch masks (eq. 1 and 2).

Each branch mask's sigmoid is resized bilinearly to the input size (M'_k). Its soft area
A_k = sum_ij M'_kij and its weight alpha_k = 1 - A_k / (W H), so small masks (details, small
lesions) weigh more. The paper writes M = sum_k alpha_k M'_k, which can exceed 1 (four masks of
weight up to 1 each); we divide by sum_k alpha_k so the best mask stays a probability map in [0, 1]
and 0.5 remains a meaningful threshold. Two other fusions serve the ablation: ``mean`` (equal
weights) and ``finest`` (the stride-2 branch alone).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FUSION_MODES", "BestMaskFusion", "area_weights"]

FUSION_MODES = ("area", "mean", "finest")


def area_weights(probabilities: torch.Tensor) -> torch.Tensor:
    """alpha_k = 1 - A_k / (W H) for masks shaped [B, K, H, W]; returns [B, K]."""
    # A_k / (W H) is the mean; written so, the weight also traces correctly at any input size
    return 1.0 - probabilities.mean(dim=(-2, -1))


class BestMaskFusion(nn.Module):
    """Fuse K branch mask logits (finest last) into one probability map at the given size.

    Args:
        mode: ``"area"`` (paper eq. 1-2, normalised), ``"mean"`` or ``"finest"``.
        eps: floor of each area weight, so that K all-foreground masks (all alpha_k = 0) fall back
            to their mean instead of dividing by zero.
    """

    def __init__(self, mode: str = "area", eps: float = 1e-6) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"unknown fusion {mode!r}: choose one of {', '.join(FUSION_MODES)}")
        self.mode = mode
        self.eps = eps

    def forward(self, branch_logits: List[torch.Tensor], size: List[int]) -> torch.Tensor:
        if self.mode == "finest":
            finest = branch_logits[len(branch_logits) - 1]
            return F.interpolate(torch.sigmoid(finest), size=size, mode="bilinear", align_corners=False)
        resized = [
            F.interpolate(torch.sigmoid(logits), size=size, mode="bilinear", align_corners=False)
            for logits in branch_logits
        ]
        stacked = torch.cat(resized, dim=1)  # [B, K, H, W]
        if self.mode == "mean":
            return stacked.mean(dim=1, keepdim=True)
        alpha = area_weights(stacked).clamp_min(self.eps)  # [B, K]
        weighted = (stacked * alpha[:, :, None, None]).sum(dim=1, keepdim=True)
        return weighted / alpha.sum(dim=1)[:, None, None, None]
