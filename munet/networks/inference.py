"""Single-tensor variants of the networks, for inference, export and MONAI Label.

``verify_net_in_out``, ``ckpt_export``/``onnx_export`` and MONAI Label's infer task need a network
that returns one tensor. These subclasses return the fused best mask ([B, 1, H, W], probabilities)
from ``forward`` and keep every output reachable through the exported ``forward_dict``. Being
subclasses (not wrappers), their state dicts have exactly the training network's keys, so the
training checkpoint loads into them unchanged.
"""

from __future__ import annotations

from typing import Dict

import torch

from munet.networks.munet import MUNet
from munet.networks.unet_baseline import UNetBaseline

__all__ = ["MUNetInference", "UNetBaselineInference"]


class MUNetInference(MUNet):
    """MUNet whose ``forward`` returns only the best mask; ``forward_dict`` returns every output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_all(x)["mask"]  # MASK_KEY; TorchScript needs the literal

    @torch.jit.export
    def forward_dict(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_all(x)


class UNetBaselineInference(UNetBaseline):
    """The U-Net baseline whose ``forward`` returns only the mask; ``forward_dict`` returns all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_all(x)["mask"]  # MASK_KEY; TorchScript needs the literal

    @torch.jit.export
    def forward_dict(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_all(x)
