"""Print a markdown table of MUNet's size and cost per backbone (and of two reference networks).

For each network: parameters, forward FLOPs on one 1-channel image, and how much of that the
decoder (decoder stages + mask heads, i.e. everything between the encoder and the fusion) costs.
FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as 2
FLOPs and counts convolutions and matrix products only (BatchNorm, activations, interpolation and
the fusion are not counted).

    python -m research.model_table                # 256x256, prints the table
    python -m research.model_table --size=384 --out=/tmp/model_table.md
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from typing import Dict, List, Optional, Sequence

import fire
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from munet.networks import TESTED_TIMM_BACKBONES, MUNet, UNetBaseline

BACKBONES = TESTED_TIMM_BACKBONES

#: top-level children that make up the decoder side (decoder stages + mask heads), per network class
DECODER_PARTS = {
    "MUNet": ("decoder", "mask_heads"),
    "UNetBaseline": ("ups", "mask_head"),
    "FlexibleUNet": ("decoder", "segmentation_head"),
}


def _count_params(modules: Sequence[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _module_flops(counts: Dict[str, int], name: str) -> int:
    """FLOPs of module ``name``; a container never called itself (ModuleList) sums its children."""
    if name in counts:
        return counts[name]
    depth = name.count(".") + 1
    children = {".".join(k.split(".")[: depth + 1]) for k in counts if k.startswith(name + ".")}
    return sum(_module_flops(counts, child) for child in children)


def _flops_by_child(model: nn.Module, x: torch.Tensor) -> Dict[str, int]:
    """Total forward FLOPs (key ``""``) and the FLOPs of each top-level child module."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    root = type(model).__name__
    counts = {name: sum(c.values()) for name, c in counter.get_flop_counts().items()}
    result = {"": counter.get_total_flops()}
    for child, _ in model.named_children():
        result[child] = _module_flops(counts, f"{root}.{child}")
    covered = sum(v for k, v in result.items() if k)
    if covered != result[""]:
        raise RuntimeError(f"{root}: per-module FLOPs add up to {covered}, the total is {result['']}")
    return result


def _describe(model: nn.Module) -> str:
    if isinstance(model, MUNet):
        return f"{model.encoder.out_channels} / {model.decoder.out_channels}"
    if isinstance(model, UNetBaseline):
        widths = [up.convs.conv_0.conv.out_channels for up in model.ups]
        return f"{[model.conv_0.conv_0.conv.out_channels] + [d.convs.conv_0.conv.out_channels for d in model.downs]} / {widths}"
    return "MONAI defaults"


def _row(label: str, model: nn.Module, x: torch.Tensor) -> List[str]:
    model.eval()
    decoder_names = DECODER_PARTS[type(model).__name__]
    flops = _flops_by_child(model, x)
    total = flops[""]
    decoder = sum(flops.get(n, 0) for n in decoder_names)
    params = _count_params([model])
    decoder_params = _count_params([getattr(model, n) for n in decoder_names])
    return [
        label,
        _describe(model),
        f"{params / 1e6:.1f}",
        f"{decoder_params / 1e6:.1f}",
        f"{total / 1e9:.1f}",
        f"{decoder / 1e9:.1f}",
        f"{100.0 * decoder / total:.0f}%",
    ]


def main(size: int = 256, out: Optional[str] = None, threads: int = 2) -> None:
    """Build every network, count parameters and FLOPs at 1x1x``size``x``size``, print the table."""
    torch.set_num_threads(threads)
    x = torch.randn(1, 1, size, size)
    header = [
        "network",
        "encoder C1..C5 / decoder widths",
        "params (M)",
        "decoder+heads params (M)",
        f"GFLOPs at 1x1x{size}x{size}",
        "decoder+heads GFLOPs",
        "decoder share",
    ]
    specs = [("MUNet, paper encoder (base_channels=64)", lambda: MUNet(base_channels=64))]
    specs += [(f"MUNet, {b}", lambda b=b: MUNet(backbone=b)) for b in BACKBONES]
    specs += [
        ('MUNet, resnet50, decoder_channels="literal"', lambda: MUNet(backbone="resnet50", decoder_channels="literal")),
        ("U-Net baseline (base_channels=64)", lambda: UNetBaseline(base_channels=64)),
    ]

    def flexible_unet() -> nn.Module:
        from monai.networks.nets import FlexibleUNet

        return FlexibleUNet(in_channels=1, out_channels=1, backbone="resnet50", pretrained=False, spatial_dims=2)

    specs.append(("MONAI FlexibleUNet, resnet50 (reference)", flexible_unet))

    rows = []
    for label, build in specs:
        start = time.time()
        torch.manual_seed(0)
        rows.append(_row(label, build(), x))
        print(f"{label}: {time.time() - start:.1f} s", file=sys.stderr)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append(
        "FLOPs from torch.utils.flop_counter.FlopCounterMode: a multiply-add counts as 2 FLOPs; only "
        "convolutions and matrix products are counted. Decoder+heads = decoder stages and mask heads "
        "(MUNet), up-path and mask head (U-Net), decoder and segmentation head (FlexibleUNet). "
        "Class head and encoder make up the rest."
    )
    table = "\n".join(lines) + "\n"
    if out:
        Path(out).write_text(table)
    print(table)


if __name__ == "__main__":
    fire.Fire(main)
