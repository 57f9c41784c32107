"""The inferer that returns every MUNet output, whichever network form it is given."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Optional

import torch
from monai.inferers import Inferer

from ..networks.munet import MASK_KEY

__all__ = ["MultiTaskInferer", "autocast_dtype", "PRECISIONS"]

logger = logging.getLogger("munet")

#: precision names of the configs: plain float32, bfloat16 autocast (CPU or GPU), float16 (CUDA only)
PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: Any) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32.

    fp16 is only used on CUDA (where the trainer's GradScaler goes with it); asked for on a CPU
    it falls back to float32 with a warning, since CPU float16 kernels are slower, not faster.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = torch.device(device).type
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device_type == "cuda":
            return torch.float16
        logger.warning("precision fp16 needs CUDA: running in float32 on %s (use bf16 for CPU speed)", device_type)
    return None


class MultiTaskInferer(Inferer):
    """Call the network and return its output dict (best mask, branch masks, class logits).

    Training networks return the dict from ``forward``; the single-tensor inference networks and
    their TorchScript exports keep it behind ``forward_dict``. A network that only returns a mask
    tensor is wrapped as ``{"mask": tensor}``.

    Args:
        precision: ``"fp32"``, ``"bf16"`` (autocast on CPU or GPU) or ``"fp16"`` (CUDA autocast).
            Outputs are returned in float32 so losses and metrics are computed in full precision.
        channels_last: feed the input in channels-last memory format (use with a network moved to
            channels-last: ``network.to(memory_format=torch.channels_last)``).
    """

    def __init__(self, precision: str = "fp32", channels_last: bool = False) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.channels_last = channels_last

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        dtype = autocast_dtype(self.precision, inputs.device)
        context = torch.autocast(inputs.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        forward_dict = getattr(network, "forward_dict", None)
        with context:
            output = forward_dict(inputs) if forward_dict is not None else network(inputs, *args, **kwargs)
        if isinstance(output, torch.Tensor):
            output = {MASK_KEY: output}
        return {k: v.float() if dtype is not None and v.is_floating_point() else v for k, v in output.items()}
