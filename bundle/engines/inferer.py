"""The inferer that returns every MUNet output, whichever network form it is given."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import Inferer

from ..networks.munet import CLASS_KEY, MASK_KEY

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
        scales: multi-scale inference: relative sizes to predict at (e.g. ``[0.75, 1.0, 1.25]``);
            ``[1.0]`` is a single prediction.
        flips: also predict on the horizontally flipped image and average.
    """

    def __init__(
        self,
        precision: str = "fp32",
        channels_last: bool = False,
        scales: Sequence[float] = (1.0,),
        flips: bool = False,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not scales or any(float(s) <= 0 for s in scales):
            raise ValueError(f"scales must be positive, got {scales!r}")
        self.precision = precision
        self.channels_last = channels_last
        self.scales = [float(s) for s in scales]
        self.flips = flips

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        if self.scales == [1.0] and not self.flips:
            return self._forward(inputs, network, *args, **kwargs)
        return self._multi_scale(inputs, network, *args, **kwargs)

    def _forward(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
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

    def _multi_scale(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        """Paper's multi-scale inference: predict at every scale (and flipped), bring the best masks
        back to the input size and average them with the class probabilities.

        Each scaled size is rounded to a multiple of 32. Returns ``mask`` and ``class_logits``
        (the log of the averaged probabilities, so a softmax gives them back); branch masks, which
        differ in size per scale, are not returned.
        """
        height, width = inputs.shape[-2:]
        masks: List[torch.Tensor] = []
        probs: List[torch.Tensor] = []
        for scale in self.scales:
            size = [max(32, math.floor(height * scale / 32 + 0.5) * 32), max(32, math.floor(width * scale / 32 + 0.5) * 32)]
            scaled = inputs if size == [height, width] else F.interpolate(inputs, size=size, mode="bilinear", align_corners=False)
            for flip in ([False, True] if self.flips else [False]):
                view = torch.flip(scaled, dims=[-1]) if flip else scaled
                out = self._forward(view, network, *args, **kwargs)
                mask = torch.flip(out[MASK_KEY], dims=[-1]) if flip else out[MASK_KEY]
                masks.append(F.interpolate(mask, size=[height, width], mode="bilinear", align_corners=False))
                if CLASS_KEY in out:
                    probs.append(torch.softmax(out[CLASS_KEY], dim=1))
        result = {MASK_KEY: torch.stack(masks).mean(dim=0)}
        if probs:
            result[CLASS_KEY] = torch.log(torch.stack(probs).mean(dim=0).clamp_min(1e-8))
        return result
