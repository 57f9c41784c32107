"""The inferer that returns every MUNet output, whichever network form it is given."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer

from munet.networks.munet import CLASS_KEY, MASK_KEY, PRESENCE_KEY

__all__ = ["MultiTaskInferer", "autocast_dtype", "resolve_precision", "cpu_capability", "set_cudnn_benchmark", "PRECISIONS", "VIEW_AGREEMENT_KEY",
           "view_agreement"]

#: per image, how far the test-time views agree on the mask (see view_agreement)
VIEW_AGREEMENT_KEY = "view_agreement"

logger = logging.getLogger("munet")

#: precision names of the configs: plain float32, bfloat16 autocast (CPU or GPU), float16 (CUDA only),
#: and "auto": the fastest of these that the device runs natively (see ``resolve_precision``)
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def cpu_capability() -> Dict[str, Any]:
    """What this CPU offers torch: its kernel level (e.g. AVX2, AVX512) and native bfloat16 support.

    Native bf16 means AVX512-BF16 or AMX instructions; without them torch emulates bf16 and CPU
    autocast is several times slower than float32 (measured 10x on an AVX2-only machine).
    """
    native = False
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                native = native or bool(check())
            except RuntimeError:
                pass
    return {"capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native}


def resolve_precision(precision: str, device: Any) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) for ``precision`` on ``device``.

    ``auto`` picks by measured capability, never by name: on CUDA bf16 where the GPU supports it
    (Ampere and later), else fp16; on a CPU bf16 only with native bf16 instructions, else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device_type = torch.device(device).type
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "cpu" and cpu_capability()["native_bf16"]:
        return "bf16"
    return "fp32"


def autocast_dtype(precision: str, device: Any) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32.

    fp16 is only used on CUDA (where the trainer's GradScaler goes with it); asked for on a CPU
    it falls back to float32 with a warning, since CPU float16 kernels are slower, not faster.
    """
    precision = resolve_precision(precision, device)
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
        precision: ``"fp32"``, ``"bf16"`` (autocast on CPU or GPU), ``"fp16"`` (CUDA autocast) or
            ``"auto"`` (:func:`resolve_precision`).
            Outputs are returned in float32 so losses and metrics are computed in full precision.
        channels_last: feed the input in channels-last memory format (use with a network moved to
            channels-last: ``network.to(memory_format=torch.channels_last)``).
        scales: multi-scale inference: relative sizes to predict at (e.g. ``[0.75, 1.0, 1.25]``);
            ``[1.0]`` is a single prediction.
        flips: also predict on the horizontally flipped image and average.
        scale_image_heads: average the class and presence probabilities over the scales too (the
            paper averages every output). ``False`` takes them from the input-size prediction
            (and its flip) only and averages only the masks over scales: the heads that judge the
            whole image were trained at one size, and on BUSI validation images the multi-scale
            class average lost malignancy AUC while the multi-scale mask gained Dice
            (docs/results.md, "Recommended model"). ``False`` needs ``1.0`` among ``scales``.
    """

    def __init__(
        self,
        precision: str = "fp32",
        channels_last: bool = False,
        scales: Sequence[float] = (1.0,),
        flips: bool = False,
        scale_image_heads: bool = True,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not scales or any(float(s) <= 0 for s in scales):
            raise ValueError(f"scales must be positive, got {scales!r}")
        if not scale_image_heads and 1.0 not in [float(s) for s in scales]:
            raise ValueError(f"scale_image_heads=False takes the class and presence from scale 1.0, which scales {scales!r} lacks")
        self.precision = precision
        self.channels_last = channels_last
        self.scales = [float(s) for s in scales]
        self.flips = flips
        self.scale_image_heads = scale_image_heads

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        if self.scales == [1.0] and not self.flips:
            return self._forward(inputs, network, *args, **kwargs)
        return self._multi_scale(inputs, network, *args, **kwargs)

    def _forward(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        # The network gets a plain tensor: a MetaTensor sends every layer through
        # MetaTensor.__torch_function__ (measured 2-8 % of a training step); the batch dict keeps
        # the MetaTensor with its metadata for Invertd.
        if isinstance(inputs, MetaTensor):
            inputs = inputs.as_tensor()
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
        back to the input size and average them with the class probabilities (those of scale 1.0
        only when ``scale_image_heads`` is False).

        Each scaled size is rounded to a multiple of 32. Returns ``mask``, ``class_logits``
        (the log of the averaged probabilities, so a softmax gives them back) and ``view_agreement``
        (:func:`view_agreement`); branch masks, which differ in size per scale, are not returned.
        """
        height, width = inputs.shape[-2:]
        masks: List[torch.Tensor] = []
        probs: List[torch.Tensor] = []
        presence: List[torch.Tensor] = []
        for scale in self.scales:
            size = [max(32, math.floor(height * scale / 32 + 0.5) * 32), max(32, math.floor(width * scale / 32 + 0.5) * 32)]
            scaled = inputs if size == [height, width] else F.interpolate(inputs, size=size, mode="bilinear", align_corners=False)
            for flip in ([False, True] if self.flips else [False]):
                view = torch.flip(scaled, dims=[-1]) if flip else scaled
                out = self._forward(view, network, *args, **kwargs)
                mask = torch.flip(out[MASK_KEY], dims=[-1]) if flip else out[MASK_KEY]
                masks.append(F.interpolate(mask, size=[height, width], mode="bilinear", align_corners=False))
                if not self.scale_image_heads and scale != 1.0:
                    continue
                if CLASS_KEY in out:
                    probs.append(torch.softmax(out[CLASS_KEY], dim=1))
                if PRESENCE_KEY in out:
                    presence.append(torch.sigmoid(out[PRESENCE_KEY]))
        result = {MASK_KEY: torch.stack(masks).mean(dim=0)}
        result[VIEW_AGREEMENT_KEY] = view_agreement(torch.stack(masks), result[MASK_KEY])
        if probs:
            result[CLASS_KEY] = torch.log(torch.stack(probs).mean(dim=0).clamp_min(1e-8))
        if presence:
            result[PRESENCE_KEY] = torch.logit(torch.stack(presence).mean(dim=0), eps=1e-6)
        return result


def view_agreement(views: torch.Tensor, mean: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """How far the test-time views (scales, flips) agree on the lesion: per image, the mean IoU of
    each view's mask with the averaged mask (1.0 where all are empty). ``views``: [V, B, 1, H, W]
    probabilities; returns [B]. A low value is one of the review signals (:mod:`.review`)."""
    each, agreed = views >= threshold, (mean >= threshold)[None]
    inter = (each & agreed).flatten(2).sum(-1).float()
    union = (each | agreed).flatten(2).sum(-1).float()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return iou.mean(dim=0)


def set_cudnn_benchmark(enabled: bool) -> None:
    """cuDNN autotuning on a GPU (one input size trains faster); nothing on a machine without CUDA."""
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(enabled)
