"""Networks of the bundle: MUNet (encoders, decoder, heads, fusion) and the U-Net baseline."""

from .encoders import PAPER_ENCODER, TESTED_TIMM_BACKBONES, PaperEncoder, TimmEncoder, build_encoder, supported_backbones
from .factory import ARCHITECTURES, build_network, place_network
from .fusion import FUSION_MODES, BestMaskFusion, area_weights
from .heads import CLASS_POOLINGS, lesion_pool
from .inference import MUNetInference, UNetBaselineInference
from .munet import CLASS_KEY, MASK_KEY, MUNet, branch_keys
from .unet_baseline import UNetBaseline

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
