"""MUNet's decoder: four upsampling stages, each upsample + concatenate + three DBL blocks."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from munet.networks.blocks import LEAKY_RELU, dbl

__all__ = ["MUNetDecoder", "default_decoder_channels"]

#: Decoder widths for timm backbones: those of segmentation_models_pytorch / MONAI FlexibleUNet.
STANDARD_DECODER_CHANNELS = (256, 128, 64, 32)


def default_decoder_channels(encoder_channels: Sequence[int], paper_encoder: bool) -> List[int]:
    """The default widths of the four decoder stages.

    With the paper encoder, each stage halves the channels, so its widths are C4..C1's
    (512, 256, 128, 64 at full width): the literal paper decoder. Behind a timm backbone the literal
    rule would start from C5/2 (1024 for ResNet-50) and cost 8.6x the FLOPs of the standard decoder
    (94 vs 11 GFLOPs at 256x256, docs/architecture.md), so
    the default there is the standard (256, 128, 64, 32); ``decoder_channels="literal"`` restores it.
    """
    if paper_encoder:
        return [int(c) for c in list(encoder_channels)[3::-1]]
    return list(STANDARD_DECODER_CHANNELS)


def literal_decoder_channels(encoder_channels: Sequence[int]) -> List[int]:
    """The paper's rule taken literally: each stage has half the channels of the one before, from C5."""
    c5 = int(encoder_channels[4])
    return [c5 // 2, c5 // 4, c5 // 8, c5 // 16]


class MUNetDecoder(nn.Module):
    """Four stages from C5 up to stride 2; stage ``i`` returns the map that mask head ``i`` reads.

    Each stage resizes its input to the exact size of the matching encoder map (so Inception
    backbones, whose maps are not powers of two of the input, align), concatenates that map, and
    applies ``blocks_per_stage`` DBL blocks (3 in the paper) down to its ``decoder_channels`` width.

    ``c5_channels`` optionally first reduces C5 with a 1x1 conv + BN + LeakyReLU (an FPN-style
    lateral reduction): behind ResNet-50 the first stage otherwise convolves 2048 + 1024 input
    channels at stride 16, the single most expensive layer of the decoder.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        blocks_per_stage: int = 3,
        norm: bool = True,
        upsample_mode: str = "nearest",
        c5_channels: Optional[int] = None,
    ) -> None:
        super().__init__()
        if len(encoder_channels) != 5 or len(decoder_channels) != 4:
            raise ValueError("MUNetDecoder needs 5 encoder widths (C1..C5) and 4 decoder widths")
        if blocks_per_stage < 1:
            raise ValueError("blocks_per_stage must be at least 1")
        if upsample_mode not in ("nearest", "bilinear"):
            raise ValueError(f"upsample_mode must be 'nearest' or 'bilinear', got {upsample_mode!r}")
        self.upsample_mode = upsample_mode
        self.out_channels: List[int] = [int(c) for c in decoder_channels]
        stages = []
        previous = int(encoder_channels[4])
        self.reduce: nn.Module = nn.Identity()
        if c5_channels is not None and int(c5_channels) < previous:
            self.reduce = Convolution(
                2, previous, int(c5_channels), kernel_size=1, act=LEAKY_RELU, norm="batch" if norm else None, bias=not norm
            )
            previous = int(c5_channels)
        for i, width in enumerate(self.out_channels):
            skip = int(encoder_channels[3 - i])
            layers = [dbl(previous + skip, width, norm=norm)]
            layers += [dbl(width, width, norm=norm) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*layers))
            previous = width
        self.stages = nn.ModuleList(stages)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        x = self.reduce(features[4])
        outputs: List[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            skip = features[3 - i]
            size: List[int] = [skip.shape[2], skip.shape[3]]
            if self.upsample_mode == "nearest":
                x = F.interpolate(x, size=size, mode="nearest")
            else:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
            outputs.append(x)
        return outputs


def resolve_decoder_channels(
    decoder_channels: Optional[Sequence[int] | str], encoder_channels: Sequence[int], paper_encoder: bool
) -> List[int]:
    """Turn the ``decoder_channels`` argument (None, "literal", "standard" or 4 ints) into 4 widths."""
    if decoder_channels is None:
        return default_decoder_channels(encoder_channels, paper_encoder)
    if decoder_channels == "literal":
        return literal_decoder_channels(encoder_channels)
    if decoder_channels == "standard":
        return list(STANDARD_DECODER_CHANNELS)
    if isinstance(decoder_channels, (str, int)) or len(decoder_channels) != 4:
        raise ValueError(
            f"decoder_channels must be None, 'literal', 'standard' or four ints, got {decoder_channels!r}"
        )
    return [int(c) for c in decoder_channels]
