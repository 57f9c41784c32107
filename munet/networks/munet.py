"""MUNet: encoder -> decoder -> four mask heads + a class head -> best-mask fusion.

Implements section III of Zhang, Cheng and Gan, "MUNet: A Multi-scale U-Net Framework for Medical
Image Segmentation" (IJCNN 2020). The choices the paper leaves open are constructor arguments and
are listed in docs/architecture.md.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from munet.networks.decoder import MUNetDecoder, resolve_decoder_channels
from munet.networks.encoders import PAPER_ENCODER, build_encoder
from munet.networks.fusion import BestMaskFusion
from munet.networks.heads import ClassificationHead, MaskHead, PresenceHead
from munet.networks.size_check import check_in_channels, check_input

__all__ = ["MUNet", "CLASS_KEY", "MASK_KEY", "PRESENCE_KEY", "branch_keys"]

#: Output key of the fused best mask (probabilities, [B, 1, H, W]).
MASK_KEY = "mask"
#: Output key of the class logits ([B, num_classes]).
CLASS_KEY = "class_logits"
#: Output key of the lesion-presence logit ([B, 1]), present when the network has a presence head.
PRESENCE_KEY = "lesion_logit"
#: Prefix of the branch mask logits keys, e.g. ``mask_stride16``.
BRANCH_PREFIX = "mask_stride"


def branch_keys(strides: Sequence[int]) -> List[str]:
    """Output keys of the branch mask logits for the given nominal strides."""
    return [f"{BRANCH_PREFIX}{s}" for s in strides]


class MUNet(nn.Module):
    """Multi-scale U-Net that segments a lesion and classifies it.

    Args:
        in_channels: image channels, 1 (grayscale ultrasound) or 3.
        num_classes: class logits (2: benign, malignant).
        backbone: ``"munet"`` for the paper's encoder, or a timm model name (e.g. ``"resnet50"``,
            ``"efficientnet_lite0"``, ``"inception_v3"``); an unknown name lists the valid ones.
        base_channels: width of C1 in the paper encoder (64 in the paper; 16 or 32 for CPUs/tests).
        convs_per_block: DBL blocks per paper-encoder block, the first one strided.
        decoder_channels: widths of the 4 decoder stages; ``None`` picks the default documented in
            docs/architecture.md, ``"literal"`` halves from C5 as the paper writes.
        blocks_per_stage: DBL blocks per decoder stage (3 in the paper).
        norm: BatchNorm in the DBL blocks (the "BN" of Table II).
        head_kernel_size: 1 for the paper's 1x1 mask heads, 3 for the Table II ablation.
        fusion: ``"area"`` (eq. 1-2), ``"mean"`` or ``"finest"``.
        dropout: dropout before the classifier's linear layer.
        upsample_mode: decoder upsampling, ``"nearest"`` or ``"bilinear"``.
        c5_channels: reduce C5 to this many channels (1x1 conv) before the decoder; None keeps it.
        pretrained: path of a local weights file for the encoder (never downloaded).
        pretrained_sha256: expected sha256 of that file, checked before loading.
        presence_head: add a lesion-presence logit (``lesion_logit``) on C5 (beyond the paper: says
            "no lesion" on normal images, see :class:`PresenceHead`).
        class_pooling: ``"global"`` (the paper's class head) or ``"global+lesion"``, which also pools
            C5 inside the fused mask (beyond the paper, see :class:`ClassificationHead`).

    ``forward`` returns a dict: the four branch mask logits (``mask_stride16`` ... ``mask_stride2``,
    coarse to fine), ``class_logits`` and the fused probability map ``mask`` at the input size.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        backbone: str = PAPER_ENCODER,
        base_channels: int = 64,
        convs_per_block: int = 2,
        decoder_channels: Optional[Sequence[int] | str] = None,
        blocks_per_stage: int = 3,
        norm: bool = True,
        head_kernel_size: int = 1,
        fusion: str = "area",
        dropout: float = 0.2,
        upsample_mode: str = "nearest",
        c5_channels: Optional[int] = None,
        pretrained: Optional[str] = None,
        pretrained_sha256: Optional[str] = None,
        presence_head: bool = False,
        class_pooling: str = "global",
    ) -> None:
        super().__init__()
        check_in_channels(in_channels)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.backbone = backbone
        self.encoder = build_encoder(
            backbone, in_channels, base_channels, convs_per_block, norm, pretrained, pretrained_sha256
        )
        enc_channels = list(self.encoder.out_channels)
        widths = resolve_decoder_channels(decoder_channels, enc_channels, backbone == PAPER_ENCODER)
        self.decoder = MUNetDecoder(enc_channels, widths, blocks_per_stage, norm, upsample_mode, c5_channels)
        self.mask_heads = nn.ModuleList([MaskHead(w, head_kernel_size) for w in widths])
        self.class_head = ClassificationHead(enc_channels[4], num_classes, dropout, class_pooling)
        self.fusion = BestMaskFusion(fusion)
        self.presence_head = PresenceHead(enc_channels[4], dropout) if presence_head else None
        self.branch_keys: List[str] = branch_keys([16, 8, 4, 2])

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_all(x)

    def forward_all(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every output: the branch mask logits, the class logits and the fused mask."""
        check_input(x, self.in_channels)
        features = self.encoder(x)
        stages = self.decoder(features)
        outputs: Dict[str, torch.Tensor] = {}
        logits: List[torch.Tensor] = []
        for i, head in enumerate(self.mask_heads):
            branch = head(stages[i])
            logits.append(branch)
            outputs[self.branch_keys[i]] = branch
        fused = self.fusion(logits, [x.shape[2], x.shape[3]])
        # literal keys: TorchScript cannot read module constants (they equal CLASS_KEY and MASK_KEY)
        outputs["class_logits"] = self.class_head(features[4], fused)  # the mask only for lesion pooling
        if self.presence_head is not None:
            outputs["lesion_logit"] = self.presence_head(features[4])  # PRESENCE_KEY
        outputs["mask"] = fused
        return outputs
