"""Networks of the bundle: MUNet (encoders, decoder, heads, fusion) and the U-Net baseline."""

from munet.networks.encoders import PAPER_ENCODER, TESTED_TIMM_BACKBONES, PaperEncoder, TimmEncoder, build_encoder, supported_backbones
from munet.networks.factory import ARCHITECTURES, build_network, place_network
from munet.networks.fusion import FUSION_MODES, BestMaskFusion, area_weights
from munet.networks.heads import CLASS_POOLINGS, lesion_pool
from munet.networks.inference import MUNetInference, UNetBaselineInference
from munet.networks.munet import CLASS_KEY, MASK_KEY, MUNet, branch_keys
from munet.networks.unet_baseline import UNetBaseline

__all__ = [
    "ARCHITECTURES",
    "CLASS_KEY",
    "CLASS_POOLINGS",
    "FUSION_MODES",
    "MASK_KEY",
    "PAPER_ENCODER",
    "TESTED_TIMM_BACKBONES",
    "BestMaskFusion",
    "MUNet",
    "MUNetInference",
    "PaperEncoder",
    "TimmEncoder",
    "UNetBaseline",
    "UNetBaselineInference",
    "area_weights",
    "branch_keys",
    "build_encoder",
    "build_network",
    "lesion_pool",
    "place_network",
    "supported_backbones",
]
