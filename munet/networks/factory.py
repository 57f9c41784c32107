"""One factory so that configs pick the architecture by name: ``munet`` or the ``unet`` baseline."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from munet.networks.inference import MUNetInference, UNetBaselineInference
from munet.networks.munet import MUNet
from munet.networks.unet_baseline import UNetBaseline

__all__ = ["ARCHITECTURES", "build_network", "place_network"]

#: arch name -> (training network returning a dict, inference network returning the mask tensor)
ARCHITECTURES = {"munet": (MUNet, MUNetInference), "unet": (UNetBaseline, UNetBaselineInference)}

_UNET_ARGS = {"in_channels", "num_classes", "base_channels", "norm", "dropout", "presence_head"}


def build_network(arch: str = "munet", output: str = "dict", **kwargs: Any) -> nn.Module:
    """Build ``arch`` ("munet" or "unet") returning a dict (``output="dict"``) or the mask (``"mask"``).

    MUNet-only arguments (backbone, fusion, decoder_channels, ...) are ignored for the U-Net
    baseline, so one config can switch architecture with a single value; a lesion-pooled class head
    (``class_pooling`` other than ``"global"``) raises instead, because it would be recorded with the
    weights without being built.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if output not in ("dict", "mask"):
        raise ValueError(f"output must be 'dict' or 'mask', got {output!r}")
    cls = ARCHITECTURES[arch][0 if output == "dict" else 1]
    if arch == "unet" and kwargs.get("class_pooling", "global") != "global":
        raise ValueError(f"class_pooling {kwargs['class_pooling']!r} is a MUNet option (it pools inside MUNet's fused mask); "
                         "the U-Net baseline has the paper's global class head: use class_pooling 'global' with arch 'unet'")
    if arch == "unet":
        kwargs = {k: v for k, v in kwargs.items() if k in _UNET_ARGS}
    network = cls(**kwargs)
    # what the weights were built with (pretrained files only start training): the weights' sidecar
    # records it so that a config that builds another network is refused (munet.engines.weights_info)
    network.settings = {"arch": arch, **{k: v for k, v in kwargs.items() if not k.startswith("pretrained")}}
    return network


def place_network(network: nn.Module, device: Any, channels_last: bool = False, sync_batchnorm: bool = False) -> nn.Module:
    """``network`` on ``device``, in channels-last memory format when asked (configs' ``network``).

    ``sync_batchnorm`` first converts its BatchNorm layers to ``SyncBatchNorm`` (multi-GPU runs,
    configs/multi_gpu_train.json), so that small per-GPU batches normalise with the global statistics.
    """
    if sync_batchnorm:
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return network.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
