"""Tests of the networks: MUNet (paper encoder and timm backbones), fusion, U-Net baseline, export.

Small widths (base_channels=8) keep the paper-encoder tests fast; the large timm backbones are
marked ``slow`` (they still run by default; ``-m "not slow"`` skips them).
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from munet.losses import MUNetLoss
from munet.networks import (
    BestMaskFusion,
    MUNet,
    MUNetInference,
    PaperEncoder,
    UNetBaseline,
    UNetBaselineInference,
    build_network,
    lesion_pool,
)

BRANCH_KEYS = ["mask_stride16", "mask_stride8", "mask_stride4", "mask_stride2"]
STRIDES = [16, 8, 4, 2]
BASE = 8  # paper-encoder width used in the tests (64 in the paper)


@functools.lru_cache(maxsize=None)
def _model(backbone: str, in_channels: int = 1) -> MUNet:
    """One eval-mode MUNet per backbone, shared by the tests of this module."""
    torch.manual_seed(0)
    return MUNet(in_channels=in_channels, backbone=backbone, base_channels=BASE).eval()


def _check_outputs(out: dict, x: torch.Tensor, num_classes: int = 2, exact_branches: bool = True) -> None:
    b, _, h, w = x.shape
    assert list(out) == BRANCH_KEYS + ["class_logits", "mask"]
    sizes = [tuple(out[k].shape[-2:]) for k in BRANCH_KEYS]
    for key in BRANCH_KEYS:
        assert out[key].shape[:2] == (b, 1)
    if exact_branches:
        assert sizes == [(h // s, w // s) for s in STRIDES]
    else:  # coarse to fine, each map strictly larger than the one before
        for coarse, fine in zip(sizes, sizes[1:]):
            assert coarse[0] < fine[0] and coarse[1] < fine[1], sizes
        assert sizes[-1][0] <= h and sizes[-1][1] <= w
    assert out["class_logits"].shape == (b, num_classes)
    assert out["mask"].shape == (b, 1, h, w)
    mask = out["mask"]
    assert torch.isfinite(mask).all()
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


# --------------------------------------------------------------------------- shapes


SIZES = [(256, 256), (384, 512)]
BACKBONES = [
    "munet",
    pytest.param("resnet50", marks=pytest.mark.slow),
    pytest.param("densenet121", marks=pytest.mark.slow),
    pytest.param("inception_v3", marks=pytest.mark.slow),
    "efficientnet_lite0",
]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_shapes(backbone: str, size: tuple) -> None:
    model = _model(backbone)
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        out = model(x)
    _check_outputs(out, x, exact_branches=backbone != "inception_v3")


def test_forward_batch_of_two() -> None:
    x = torch.randn(2, 1, 256, 256)
    with torch.no_grad():
        out = _model("munet")(x)
    _check_outputs(out, x)


@pytest.mark.parametrize("size", [(256, 384), (640, 256)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_non_square_sizes(size: tuple) -> None:
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        out = _model("munet")(x)
    _check_outputs(out, x)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_in_channels(in_channels: int) -> None:
    x = torch.randn(1, in_channels, 64, 64)
    with torch.no_grad():
        out = _model("munet", in_channels)(x)
    _check_outputs(out, x)


# --------------------------------------------------------------------------- errors


def test_wrong_channel_count_raises() -> None:
    with pytest.raises(ValueError, match="channels"):
        _model("munet", 1)(torch.randn(1, 3, 64, 64))


def test_size_not_multiple_of_32_raises() -> None:
    with pytest.raises(ValueError, match="pad"):
        _model("munet")(torch.randn(1, 1, 250, 256))


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        MUNet(backbone="resnet5")
    assert "resnet50" in str(info.value) and "efficientnet_lite0" in str(info.value)


def test_in_channels_two_raises() -> None:
    with pytest.raises(ValueError, match="in_channels"):
        MUNet(in_channels=2, base_channels=BASE)


def test_unknown_fusion_raises() -> None:
    with pytest.raises(ValueError, match="fusion"):
        MUNet(base_channels=BASE, fusion="max")


# --------------------------------------------------------------------------- gradients


def test_loss_gradients_reach_every_head_and_the_stem() -> None:
    torch.manual_seed(1)
    model = MUNet(base_channels=BASE).train()
    x = torch.randn(2, 1, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 10:40, 12:30] = 1.0
    mask[1, :, 30:60, 5:50] = 1.0
    loss = MUNetLoss()(model(x), {"mask": mask, "class": torch.tensor([0, 1])})
    loss.backward()
    weights = {f"mask_heads.{i}": head.conv.weight for i, head in enumerate(model.mask_heads)}
    weights["class_head"] = model.class_head.linear.weight
    weights["encoder stem"] = model.encoder.blocks[0][0].conv.weight
    for name, weight in weights.items():
        assert weight.grad is not None, name
        assert float(weight.grad.norm()) > 0.0, name


# --------------------------------------------------------------------------- fusion


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


FUSION_SIZE = (64, 64)
BRANCH_SIZES = [(4, 4), (8, 8), (16, 16), (32, 32)]  # strides 16, 8, 4, 2 of a 64x64 input


def test_area_fusion_constant_masks_by_hand() -> None:
    values = [-2.0, -0.5, 0.7, 3.0]  # one constant logit per branch
    logits = [torch.full((1, 1, *s), v) for v, s in zip(values, BRANCH_SIZES)]
    fused = BestMaskFusion("area")(logits, list(FUSION_SIZE))
    p = _sigmoid(np.array(values))  # a constant map stays constant under bilinear resizing
    alpha = 1.0 - p  # A_k / (W H) = p_k
    expected = float((alpha * p).sum() / alpha.sum())
    assert fused.shape == (1, 1, *FUSION_SIZE)
    np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-6)
    mean = BestMaskFusion("mean")(logits, list(FUSION_SIZE))
    np.testing.assert_allclose(mean.numpy(), p.mean(), rtol=1e-6)
    finest = BestMaskFusion("finest")(logits, list(FUSION_SIZE))
    np.testing.assert_allclose(finest.numpy(), p[-1], rtol=1e-6)


def _half_filled(size: tuple, hi: float, lo: float) -> torch.Tensor:
    """Logits ``hi`` on the left half of the columns, ``lo`` on the right half."""
    t = torch.full((1, 1, *size), lo)
    t[..., : size[1] // 2] = hi
    return t


def test_area_fusion_half_filled_masks_by_hand() -> None:
    his = [6.0, 4.0, 5.0, 3.0]
    los = [-6.0, -3.0, -4.0, -5.0]
    logits = [_half_filled(s, hi, lo) for s, hi, lo in zip(BRANCH_SIZES, his, los)]
    fused = BestMaskFusion("area")(logits, list(FUSION_SIZE))[0, 0].numpy().astype(np.float64)

    p_hi, p_lo = _sigmoid(np.array(his)), _sigmoid(np.array(los))
    # Resizing a centred step map bilinearly (align_corners=False) keeps its point symmetry, so the
    # mean of each resized map is still (p_hi + p_lo) / 2, i.e. A_k / (W H).
    alpha = 1.0 - (p_hi + p_lo) / 2.0
    # Far from the step every resized map equals its constant: the first 8 and last 8 columns
    # (the 4x4 map's step ramps over columns 24..39 at scale 16).
    left = (alpha * p_hi).sum() / alpha.sum()
    right = (alpha * p_lo).sum() / alpha.sum()
    np.testing.assert_allclose(fused[:, :8], left, rtol=1e-5)
    np.testing.assert_allclose(fused[:, -8:], right, rtol=1e-5)

    # every pixel: resize with interpolate only, then weight and normalise by hand in numpy
    resized = np.stack(
        [
            F.interpolate(torch.sigmoid(t), size=FUSION_SIZE, mode="bilinear", align_corners=False)[0, 0].double().numpy()
            for t in logits
        ]
    )
    alpha_px = 1.0 - resized.sum(axis=(1, 2)) / (FUSION_SIZE[0] * FUSION_SIZE[1])
    np.testing.assert_allclose(alpha_px, alpha, rtol=1e-5)
    expected = (alpha_px[:, None, None] * resized).sum(axis=0) / alpha_px.sum()
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)

    # the paper's unnormalised sum (eq. 1) exceeds 1 here; the normalised map stays in [0, 1]
    unnormalised = (alpha_px[:, None, None] * resized).sum(axis=0)
    assert unnormalised.max() > 1.5
    assert fused.min() >= 0.0 and fused.max() <= 1.0

    mean = BestMaskFusion("mean")(logits, list(FUSION_SIZE))[0, 0].numpy()
    np.testing.assert_allclose(mean, resized.mean(axis=0), rtol=1e-5, atol=1e-6)
    finest = BestMaskFusion("finest")(logits, list(FUSION_SIZE))[0, 0].numpy()
    np.testing.assert_allclose(finest, resized[-1], rtol=1e-5, atol=1e-6)


def test_area_fusion_all_foreground_falls_back_to_mean() -> None:
    logits = [torch.full((1, 1, *s), 40.0) for s in BRANCH_SIZES]  # sigmoid == 1 exactly: every alpha is 0
    fused = BestMaskFusion("area")(logits, list(FUSION_SIZE))
    mean = BestMaskFusion("mean")(logits, list(FUSION_SIZE))
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, mean)
    torch.testing.assert_close(fused, torch.ones_like(fused))


def test_fusion_weights_each_sample_separately() -> None:
    a = [torch.full((1, 1, *s), v) for v, s in zip([-2.0, -0.5, 0.7, 3.0], BRANCH_SIZES)]
    b = [torch.full((1, 1, *s), v) for v, s in zip([1.0, 2.0, -1.0, 0.0], BRANCH_SIZES)]
    fusion = BestMaskFusion("area")
    both = fusion([torch.cat([x, y]) for x, y in zip(a, b)], list(FUSION_SIZE))
    torch.testing.assert_close(both[0:1], fusion(a, list(FUSION_SIZE)))
    torch.testing.assert_close(both[1:2], fusion(b, list(FUSION_SIZE)))


# --------------------------------------------------------------------------- decoder widths


def test_decoder_channels_defaults_and_literal() -> None:
    paper = _model("munet")
    assert paper.decoder.out_channels == [8 * BASE, 4 * BASE, 2 * BASE, BASE]
    assert paper.decoder.out_channels == paper.encoder.out_channels[3::-1]  # C4..C1
    assert [head.conv.in_channels for head in paper.mask_heads] == paper.decoder.out_channels
    assert MUNet(backbone="resnet50").decoder.out_channels == [256, 128, 64, 32]
    assert MUNet(backbone="resnet50", decoder_channels="literal").decoder.out_channels == [1024, 512, 256, 128]
    assert MUNet(base_channels=BASE, decoder_channels=[32, 16, 8, 4]).decoder.out_channels == [32, 16, 8, 4]


@pytest.mark.parametrize("bad", ["wide", [64, 32, 16]])
def test_decoder_channels_bad_value_raises(bad) -> None:
    with pytest.raises(ValueError, match="decoder_channels"):
        MUNet(base_channels=BASE, decoder_channels=bad)


# --------------------------------------------------------------------------- U-Net baseline


def test_unet_baseline_outputs() -> None:
    x = torch.randn(2, 1, 64, 96)
    for model in (UNetBaseline(base_channels=BASE), build_network("unet", base_channels=BASE, backbone="resnet50")):
        assert isinstance(model, UNetBaseline)
        with torch.no_grad():
            out = model.eval()(x)
        assert list(out) == ["mask_stride1", "class_logits", "mask"]
        assert out["mask_stride1"].shape == (2, 1, 64, 96)
        assert out["mask"].shape == (2, 1, 64, 96)
        assert out["class_logits"].shape == (2, 2)
        torch.testing.assert_close(out["mask"], torch.sigmoid(out["mask_stride1"]))


# --------------------------------------------------------------------------- export


@pytest.mark.filterwarnings("ignore:.*torch.jit.*is deprecated:FutureWarning")
@pytest.mark.parametrize("cls", [MUNetInference, UNetBaselineInference])
def test_script_matches_eager_and_round_trips(cls, tmp_path) -> None:
    torch.manual_seed(0)
    model = cls(base_channels=BASE).eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        eager = model(x)
        eager_dict = model.forward_dict(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), eager, atol=1e-5, rtol=0)
        scripted_dict = scripted.forward_dict(x)
        assert list(scripted_dict) == list(eager_dict)
        torch.testing.assert_close(scripted_dict["mask"], eager, atol=1e-5, rtol=0)
        path = tmp_path / "net.ts"
        torch.jit.save(scripted, str(path))
        loaded = torch.jit.load(str(path))
        torch.testing.assert_close(loaded(x), eager, atol=1e-5, rtol=0)
        torch.testing.assert_close(loaded.forward_dict(x)["class_logits"], eager_dict["class_logits"], atol=1e-5, rtol=0)
    assert eager.shape == (1, 1, 64, 96)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:.*torch.jit.*is deprecated:FutureWarning")
def test_trace_generalises_across_sizes() -> None:
    torch.manual_seed(0)
    model = MUNetInference(backbone="resnet18").eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 1, 256, 256))
        x = torch.randn(1, 1, 320, 384)
        eager = model(x)
        out = traced(x)
    assert out.shape == (1, 1, 320, 384)
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=0)


def test_build_network_mask_output_loads_training_checkpoint() -> None:
    kwargs = {"base_channels": BASE, "fusion": "area"}
    torch.manual_seed(0)
    train_net = build_network("munet", output="dict", **kwargs)
    infer_net = build_network("munet", output="mask", **kwargs)
    infer_net.load_state_dict(train_net.state_dict(), strict=True)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        mask = infer_net.eval()(x)
        expected = train_net.eval()(x)["mask"]
    assert isinstance(mask, torch.Tensor)
    torch.testing.assert_close(mask, expected)
    with pytest.raises(ValueError, match="arch"):
        build_network("segformer")


# --------------------------------------------------------------------------- pretrained weights


def _randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)


def test_pretrained_paper_encoder_checked_by_sha256(tmp_path) -> None:
    torch.manual_seed(2)
    source = PaperEncoder(in_channels=1, base_channels=BASE)
    _randomise(source)
    path = tmp_path / "encoder.pt"
    torch.save(source.state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()

    model = MUNet(base_channels=BASE, pretrained=str(path), pretrained_sha256=sha)
    loaded = model.encoder.state_dict()
    assert set(loaded) == set(source.state_dict())
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)

    with pytest.raises(ValueError, match="sha256"):
        MUNet(base_channels=BASE, pretrained=str(path), pretrained_sha256="0" * 64)
    missing = tmp_path / "nope.pt"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        MUNet(base_channels=BASE, pretrained=str(missing))


def test_pretrained_rgb_stem_summed_for_grayscale(tmp_path) -> None:
    import timm

    torch.manual_seed(3)
    source = timm.create_model("resnet18", features_only=True, in_chans=3, pretrained=False)
    _randomise(source)
    path = tmp_path / "resnet18_rgb.pt"
    torch.save(source.state_dict(), path)
    model = MUNet(backbone="resnet18", in_channels=1, pretrained=str(path))
    saved = source.state_dict()
    loaded = model.encoder.model.state_dict()
    assert loaded["conv1.weight"].shape == (64, 1, 7, 7)
    torch.testing.assert_close(loaded["conv1.weight"], saved["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(loaded["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"], rtol=0, atol=0)
    torch.testing.assert_close(loaded["bn1.running_var"], saved["bn1.running_var"], rtol=0, atol=0)


# --------------------------------------------------------------------------- lesion-pooled class head


def test_lesion_pool_by_hand() -> None:
    """Area-pooled mask weights: a lesion covering one C5 cell returns that cell's features."""
    features = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :4, 4:] = 1.0  # sample 0: the top-right quarter -> cell (0, 1)
    mask[1, :, :4, :4] = 0.5  # sample 1: the top-left quarter at probability 0.5 -> cell (0, 0)
    mask[1, :, 4:, 4:] = 0.5  # ... and the bottom-right one -> the mean of cells (0, 0) and (1, 1)
    pooled = lesion_pool(features, mask)
    torch.testing.assert_close(pooled[0], features[0, :, 0, 1])
    torch.testing.assert_close(pooled[1], (features[1, :, 0, 0] + features[1, :, 1, 1]) / 2)
    assert torch.equal(lesion_pool(features, torch.zeros(2, 1, 8, 8)), torch.zeros(2, 3))  # empty mask -> 0


def test_lesion_pooled_class_head_reads_the_lesion_and_keeps_the_mask_out_of_its_gradient() -> None:
    torch.manual_seed(0)
    model = MUNet(base_channels=BASE, class_pooling="global+lesion").train()
    assert model.class_head.linear.in_features == 2 * model.encoder.out_channels[4]
    x = torch.randn(2, 1, 64, 64, requires_grad=True)
    out = model(x)
    assert out["class_logits"].shape == (2, 2)
    # the class logits depend on the mask only as weights: the class loss reaches no mask head
    out["class_logits"].sum().backward()
    for head in model.mask_heads:
        assert head.conv.weight.grad is None or float(head.conv.weight.grad.abs().sum()) == 0.0
    assert float(model.encoder.blocks[0][0].conv.weight.grad.norm()) > 0.0
    # ... and moving the predicted lesion changes the logits (the global head would not see it)
    head = model.class_head.eval()
    c5 = torch.randn(1, head.linear.in_features // 2, 2, 2)
    left, right = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    left[..., :32], right[..., 32:] = 1.0, 1.0
    assert not torch.allclose(head(c5, left), head(c5, right))
    with pytest.raises(ValueError, match="needs the predicted lesion mask"):
        head(c5)
    with pytest.raises(ValueError, match="class_pooling"):
        MUNet(base_channels=BASE, class_pooling="lesion")


def test_global_class_head_ignores_the_mask_and_the_unet_refuses_lesion_pooling() -> None:
    """The paper's head (the default) is unchanged by the option: same weights, same logits with or without a mask."""
    torch.manual_seed(0)
    head = MUNet(base_channels=BASE).class_head.eval()
    c5 = torch.randn(2, head.linear.in_features, 2, 3)
    expected = head.linear(c5.mean(dim=(2, 3)))
    torch.testing.assert_close(head(c5), expected)
    torch.testing.assert_close(head(c5, torch.rand(2, 1, 64, 96)), expected)
    with pytest.raises(ValueError, match="MUNet option"):
        build_network("unet", base_channels=BASE, class_pooling="global+lesion")
    assert build_network("unet", base_channels=BASE, class_pooling="global") is not None


@pytest.mark.filterwarnings("ignore:.*torch.jit.*is deprecated:FutureWarning")
def test_lesion_pooled_class_head_scripts_and_checkpoint_shapes_are_checked(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_network("munet", output="mask", base_channels=BASE, class_pooling="global+lesion").eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted.forward_dict(x)["class_logits"], model.forward_dict(x)["class_logits"],
                                   atol=1e-5, rtol=0)
    # a checkpoint of the paper's head does not load silently into the lesion-pooled one
    with pytest.raises(RuntimeError, match="class_head.linear.weight"):
        model.load_state_dict(build_network("munet", output="dict", base_channels=BASE).state_dict())
