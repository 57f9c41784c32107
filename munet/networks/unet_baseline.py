"""The paper's baseline: a plain U-Net with the same classification head and one mask output.

Built from MONAI's BasicUNet blocks (``TwoConv``, ``Down``, ``UpCat``) rather than ``BasicUNet``
itself because the class head must read the bottleneck, which ``BasicUNet`` does not expose. Its
output dict has the same keys as MUNet's (one branch, ``mask_stride1``), so every comparison runs
through the same loss, metrics and training code.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from munet.networks.blocks import LEAKY_RELU
from munet.networks.heads import ClassificationHead, MaskHead, PresenceHead
from munet.networks.munet import branch_keys
from munet.networks.size_check import check_in_channels, check_input

__all__ = ["UNetBaseline"]


class UNetBaseline(nn.Module):
    """Ronneberger's U-Net (4 max-pool stages, widths doubling from ``base_channels``) + class head.

    Args:
        in_channels: image channels, 1 or 3.
        num_classes: class logits.
        base_channels: width of the first level (64 in the original U-Net).
        norm: BatchNorm after each convolution (``False`` for the original, un-normalised U-Net).
        dropout: dropout before the classifier's linear layer.
        presence_head: add MUNet's lesion-presence logit on the bottleneck (``lesion_logit``).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 64, norm: bool = True, dropout: float = 0.2,
        presence_head: bool = False,
    ) -> None:
        super().__init__()
        check_in_channels(in_channels)
        self.in_channels = in_channels
        self.num_classes = num_classes
        f = [base_channels * 2**k for k in range(5)]
        n = "batch" if norm else None
        self.conv_0 = TwoConv(2, in_channels, f[0], LEAKY_RELU, n, not norm)
        self.downs = nn.ModuleList([Down(2, f[k], f[k + 1], LEAKY_RELU, n, not norm) for k in range(4)])
        self.ups = nn.ModuleList(
            [UpCat(2, f[k + 1], f[k], f[k], LEAKY_RELU, n, not norm, halves=True) for k in range(3, -1, -1)]
        )
        self.mask_head = MaskHead(f[0])
        self.class_head = ClassificationHead(f[4], num_classes, dropout)
        self.presence_head = PresenceHead(f[4], dropout) if presence_head else None
        self.branch_key: str = branch_keys([1])[0]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_all(x)

    def forward_all(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every output: the mask logits, the class logits and the mask probabilities."""
        check_input(x, self.in_channels)
        skips: List[torch.Tensor] = [self.conv_0(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        bottleneck = skips[4]
        y = bottleneck
        for i, up in enumerate(self.ups):
            y = up(y, skips[3 - i])
        logits = self.mask_head(y)
        # literal keys: TorchScript cannot read module constants (they equal CLASS_KEY and MASK_KEY)
        outputs = {self.branch_key: logits, "class_logits": self.class_head(bottleneck), "mask": torch.sigmoid(logits)}
        if self.presence_head is not None:
            outputs["lesion_logit"] = self.presence_head(bottleneck)  # PRESENCE_KEY
        return outputs
