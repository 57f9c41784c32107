"""The inferer that returns every MUNet output, whichever network form it is given."""

from __future__ import annotations

from typing import Any, Dict

import torch
from monai.inferers import Inferer

from ..networks.munet import MASK_KEY

__all__ = ["MultiTaskInferer"]


class MultiTaskInferer(Inferer):
    """Call the network and return its output dict (best mask, branch masks, class logits).

    Training networks return the dict from ``forward``; the single-tensor inference networks and
    their TorchScript exports keep it behind ``forward_dict``. A network that only returns a mask
    tensor is wrapped as ``{"mask": tensor}``.
    """

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        forward_dict = getattr(network, "forward_dict", None)
        output = forward_dict(inputs) if forward_dict is not None else network(inputs, *args, **kwargs)
        if isinstance(output, torch.Tensor):
            return {MASK_KEY: output}
        return dict(output)
