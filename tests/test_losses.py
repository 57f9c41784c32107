"""Tests of MUNetLoss (paper eq. 3): values computed independently with numpy on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from munet.losses import MUNetLoss
from munet.networks import MUNet

H = W = 32
BRANCH_SIZES = {"mask_stride16": 2, "mask_stride8": 4, "mask_stride4": 8, "mask_stride2": 16}
SMOOTH = 1e-5  # MONAI DiceLoss smooth_nr = smooth_dr


def _area_resize(mask: np.ndarray, size: int) -> np.ndarray:
    """Area interpolation by an integer factor = the mean of each factor x factor block."""
    f = mask.shape[-1] // size
    return mask.reshape(size, f, size, f).mean(axis=(1, 3))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _soft_dice_loss(logits: np.ndarray, target: np.ndarray) -> float:
    p = _sigmoid(logits)
    return 1.0 - (2.0 * (p * target).sum() + SMOOTH) / (p.sum() + target.sum() + SMOOTH)


def _outputs(branches: dict, class_logits: torch.Tensor) -> dict:
    out = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in branches.items()}
    out["class_logits"] = class_logits
    return out


def _quadrant_target() -> np.ndarray:
    """Top-left 16x16 quadrant: binary at every branch size after area resizing."""
    t = np.zeros((H, W))
    t[:16, :16] = 1.0
    return t


def _no_class(batch: int) -> torch.Tensor:
    return torch.full((batch,), -1, dtype=torch.long)


# --------------------------------------------------------------------------- Dice part


@pytest.mark.parametrize("sign, expected", [(1.0, 0.0), (-1.0, 4.0)], ids=["perfect", "inverted"])
def test_dice_perfect_and_inverted(sign: float, expected: float) -> None:
    target = _quadrant_target()
    branches = {}
    for key, size in BRANCH_SIZES.items():
        small = _area_resize(target, size)
        assert set(np.unique(small)) == {0.0, 1.0}
        branches[key] = (sign * np.where(small > 0.5, 50.0, -50.0))[None, None]
    outputs = _outputs(branches, torch.zeros(1, 2))
    parts = MUNetLoss(lambda_dice=1.0).components(
        outputs, {"mask": torch.as_tensor(target[None, None]), "class": _no_class(1)}
    )
    assert float(parts["class_loss"]) == 0.0
    np.testing.assert_allclose(float(parts["dice_loss"]), expected, atol=1e-4)
    np.testing.assert_allclose(float(parts["loss"]), expected, atol=1e-4)


def test_dice_half_overlap_by_hand() -> None:
    # two samples, rectangles not aligned to the branch grids (area resizing gives soft targets)
    targets = np.zeros((2, H, W))
    targets[0, 4:20, 6:26] = 1.0
    targets[1, 10:31, 0:13] = 1.0
    branches = {}
    expected = 0.0
    soft = False
    for key, size in BRANCH_SIZES.items():
        logits = np.full((2, size, size), -3.0)
        logits[:, :, : size // 2] = 3.0  # confident on the left half: overlaps each target in part
        logits[1] += np.linspace(-1.0, 1.0, size)[None, :]  # and a ramp in the second sample
        branches[key] = logits[:, None]
        small = [_area_resize(t, size) for t in targets]
        soft |= any(bool(((m > 0) & (m < 1)).any()) for m in small)
        expected += np.mean([_soft_dice_loss(logits[b], small[b]) for b in range(2)])
    assert soft  # the area-resized targets are fractional on some branches
    parts = MUNetLoss(lambda_dice=1.0).components(
        _outputs(branches, torch.zeros(2, 2)), {"mask": torch.as_tensor(targets[:, None]), "class": _no_class(2)}
    )
    np.testing.assert_allclose(float(parts["dice_loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(parts["loss"]), expected, rtol=1e-5)
    per_branch = sum(float(parts[f"dice_loss_{k}"]) for k in BRANCH_SIZES)
    np.testing.assert_allclose(per_branch, expected, rtol=1e-5)


# --------------------------------------------------------------------------- focal part

LOGITS = np.array([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0], [0.0, -2.5]])
LABELS = np.array([0, 1, 1, 0])


def _focal_by_hand(logits: np.ndarray, labels: np.ndarray, alpha=None, gamma: float = 2.0) -> float:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p_u = p[np.arange(len(labels)), labels]
    weight = np.ones_like(p_u) if alpha is None else np.asarray(alpha)[labels]
    return float(np.mean(-weight * (1.0 - p_u) ** gamma * np.log(p_u)))


def _class_loss(loss: MUNetLoss, logits: np.ndarray, labels) -> torch.Tensor:
    branches = {"mask_stride2": np.zeros((len(logits), 1, 16, 16))}
    mask = torch.zeros(len(logits), 1, H, W)
    outputs = _outputs(branches, torch.as_tensor(logits, dtype=torch.float32))
    return loss.components(outputs, {"mask": mask, "class": torch.as_tensor(labels)})["class_loss"]


def test_focal_matches_hand_computation() -> None:
    got = float(_class_loss(MUNetLoss(), LOGITS, LABELS))
    np.testing.assert_allclose(got, _focal_by_hand(LOGITS, LABELS), rtol=1e-5)
    # gamma = 0 is plain cross entropy
    got0 = float(_class_loss(MUNetLoss(focal_gamma=0.0), LOGITS, LABELS))
    np.testing.assert_allclose(got0, _focal_by_hand(LOGITS, LABELS, gamma=0.0), rtol=1e-5)


def test_focal_alpha_weights_per_class() -> None:
    got = float(_class_loss(MUNetLoss(focal_alpha=[0.25, 0.75]), LOGITS, LABELS))
    expected = _focal_by_hand(LOGITS, LABELS, alpha=[0.25, 0.75])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.isclose(expected, _focal_by_hand(LOGITS, LABELS))
    # a float alpha weights class 1 (malignant) by alpha and class 0 by 1 - alpha
    got_scalar = float(_class_loss(MUNetLoss(focal_alpha=0.75), LOGITS, LABELS))
    np.testing.assert_allclose(got_scalar, expected, rtol=1e-5)


# --------------------------------------------------------------------------- missing labels


def test_missing_label_is_left_out() -> None:
    loss = MUNetLoss()
    with_missing = _class_loss(loss, LOGITS, np.array([0, -1, 1, 0]))
    without = _class_loss(loss, LOGITS[[0, 2, 3]], np.array([0, 1, 0]))
    torch.testing.assert_close(with_missing, without)
    np.testing.assert_allclose(float(without), _focal_by_hand(LOGITS[[0, 2, 3]], np.array([0, 1, 0])), rtol=1e-5)
    # labels shaped [B, 1] are accepted too
    column = _class_loss(loss, LOGITS, np.array([[0], [-1], [1], [0]]))
    torch.testing.assert_close(column, with_missing)


def _tiny_batch():
    torch.manual_seed(0)
    model = MUNet(base_channels=4).train()
    x = torch.randn(2, 1, H, W)
    mask = torch.zeros(2, 1, H, W)
    mask[:, :, 8:24, 4:20] = 1.0
    return model, model(x), mask


def test_all_labels_missing_gives_zero_class_loss_and_keeps_head_in_graph() -> None:
    model, outputs, mask = _tiny_batch()
    parts = MUNetLoss().components(outputs, {"mask": mask, "class": _no_class(2)})
    assert float(parts["class_loss"]) == 0.0
    torch.testing.assert_close(parts["loss"], 0.25 * parts["dice_loss"])
    parts["loss"].backward()
    grad = model.class_head.linear.weight.grad
    assert grad is not None
    assert float(grad.abs().max()) == 0.0
    assert float(model.mask_heads[0].conv.weight.grad.norm()) > 0.0


def test_mask_tensor_as_target() -> None:
    _, outputs, mask = _tiny_batch()
    loss = MUNetLoss()
    parts = loss.components(outputs, mask)
    assert float(parts["class_loss"]) == 0.0
    torch.testing.assert_close(loss(outputs, mask), 0.25 * parts["dice_loss"])


# --------------------------------------------------------------------------- total and errors


def test_total_is_class_plus_quarter_dice() -> None:
    target = _quadrant_target()
    rng = np.random.default_rng(0)
    branches = {k: rng.normal(size=(1, 1, s, s)) for k, s in BRANCH_SIZES.items()}
    logits = LOGITS[:1]
    outputs = _outputs(branches, torch.as_tensor(logits, dtype=torch.float32))
    parts = MUNetLoss().components(outputs, {"mask": torch.as_tensor(target[None, None]), "class": torch.tensor([1])})
    dice = sum(_soft_dice_loss(branches[k][0, 0], _area_resize(target, s)) for k, s in BRANCH_SIZES.items())
    focal = _focal_by_hand(logits, np.array([1]))
    np.testing.assert_allclose(float(parts["dice_loss"]), dice, rtol=1e-5)
    np.testing.assert_allclose(float(parts["class_loss"]), focal, rtol=1e-5)
    np.testing.assert_allclose(float(parts["loss"]), focal + 0.25 * dice, rtol=1e-5)


def test_out_of_range_class_raises() -> None:
    with pytest.raises(ValueError, match="out of range"):
        _class_loss(MUNetLoss(), LOGITS, np.array([0, 5, 1, 0]))


def test_label_count_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="class labels"):
        _class_loss(MUNetLoss(), LOGITS, np.array([0, 1]))


# --------------------------------------------------------------------------- empty masks (normal images)


def test_batch_dice_penalises_false_positives_on_an_empty_mask() -> None:
    """Per-image Dice gives a lesion-free image ~no gradient; batch Dice pushes its false positives down."""
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:6, 2:6] = 1.0  # image 0 has a lesion, image 1 is normal (empty mask)
    grads = {}
    for batch in (False, True):
        logits = torch.zeros(2, 1, 8, 8, requires_grad=True)  # p = 0.5 everywhere: false positives on image 1
        loss = MUNetLoss(lambda_dice=1.0, dice_batch=batch)
        loss({"mask_stride1": logits, "class_logits": torch.zeros(2, 2)}, mask).backward()
        grads[batch] = logits.grad[1].abs().sum().item()
    assert grads[False] < 1e-6  # per-image Dice: the normal image's prediction is not trained at all
    assert grads[True] > 1e-3  # batch Dice: it is, and toward lower logits
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    MUNetLoss(lambda_dice=1.0, dice_batch=True)({"mask_stride1": logits, "class_logits": torch.zeros(2, 2)}, mask).backward()
    assert bool((logits.grad[1] > 0).all())  # gradient descent lowers the normal image's logits
