"""The lesion-presence decision: the head, its loss term, the gate on the mask, and the threshold rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from munet.engines.ensemble import combine
from munet.engines.finding import image_finding
from munet.engines.inferer import MultiTaskInferer
from munet.engines.metrics import MUNetMetrics
from munet.engines.postprocessing import LESION_CLICKED_KEY, LESION_PROB_KEY, SplitOutputd, gate_by_presence
from munet.engines.presence_threshold import choose_presence_threshold, gated_outcome, three_way_thresholds
from munet.integrations.monailabel_app.results import result_json
from munet.losses import MUNetLoss
from munet.networks import build_network
from munet.networks.munet import PRESENCE_KEY


def _logit(p: float) -> torch.Tensor:
    return torch.logit(torch.tensor([p]))


@pytest.mark.parametrize("arch", ["munet", "unet"])
def test_presence_head_adds_one_logit_per_image(arch):
    with_head = build_network(arch, presence_head=True, base_channels=8).eval()
    without = build_network(arch, presence_head=False, base_channels=8).eval()
    x = torch.rand(3, 1, 64, 96)
    assert with_head(x)[PRESENCE_KEY].shape == (3, 1)
    assert PRESENCE_KEY not in without(x)


def test_gate_empties_the_mask_below_the_threshold_only():
    mask = torch.full((1, 4, 4), 0.9)
    assert torch.equal(gate_by_presence(mask, 0.29, 0.3), torch.zeros_like(mask))
    assert torch.equal(gate_by_presence(mask, 0.3, 0.3), mask)  # at the threshold: kept
    assert torch.equal(gate_by_presence(mask, 0.01, None), mask)  # no threshold: never gated


def _sample(lesion_prob: float) -> dict:
    pred = {"mask": torch.full((1, 8, 8), 0.8), "class_logits": torch.tensor([0.0, 1.0]),
            "mask_stride2": torch.full((1, 4, 4), 3.0), PRESENCE_KEY: _logit(lesion_prob)}
    return {"pred": pred, "image": MetaTensor(torch.zeros(1, 8, 8))}


def test_split_output_gates_best_and_branch_masks_by_presence():
    split = SplitOutputd(presence_threshold=0.4)
    absent = split(_sample(0.1))
    assert absent[LESION_PROB_KEY] == pytest.approx(0.1)
    assert float(absent["pred"].sum()) == 0.0 and float(absent["pred_mask_stride2"].sum()) == 0.0
    present = split(_sample(0.6))
    assert present[LESION_PROB_KEY] == pytest.approx(0.6)
    assert float(present["pred"].min()) == pytest.approx(0.8)
    assert float(present["pred_mask_stride2"].min()) > 0.9
    # predictions stay MetaTensors, which Invertd needs to bring them back to the input size
    assert isinstance(present["pred"], MetaTensor) and isinstance(absent["pred_mask_stride2"], MetaTensor)


def test_metrics_count_false_positives_on_lesion_free_cases():
    metric = MUNetMetrics()
    metric.reset()
    lesion = torch.zeros(1, 8, 8)
    lesion[0, 2:6, 2:6] = 1
    empty = torch.zeros(1, 8, 8)
    metric.update([{"pred": lesion.clone(), "label": lesion, "class_prob": torch.tensor([0.2, 0.8]), "class_label": 1},
                   {"pred": empty.clone(), "label": empty},
                   {"pred": lesion.clone(), "label": empty}])
    results = metric.compute()
    assert results["val_normal_fpr"] == pytest.approx(0.5)
    assert results["val_dice_lesion"] == pytest.approx(1.0)
    assert results["val_dice"] == pytest.approx(2 / 3)  # the marked normal image counts 0


def test_loss_trains_presence_and_leaves_empty_masks_out_of_dice():
    loss_fn = MUNetLoss()
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1  # sample 0 has a lesion, sample 1 is normal
    logits = torch.zeros(2, 1, 16, 16, requires_grad=True)
    presence = torch.zeros(2, 1, requires_grad=True)
    outputs = {"mask_stride2": logits, "class_logits": torch.zeros(2, 2), PRESENCE_KEY: presence}
    parts = loss_fn.components(outputs, {"mask": mask, "class": torch.tensor([1, -1])})
    parts["loss"].backward()
    assert float(parts["presence_loss"]) == pytest.approx(float(torch.log(torch.tensor(2.0))), rel=1e-5)
    assert float(logits.grad[1].abs().sum()) == 0.0  # the normal image's mask gets no Dice gradient
    assert float(logits.grad[0].abs().sum()) > 0.0
    assert float(presence.grad[0]) < 0 < float(presence.grad[1])  # pushed up for the lesion, down for the normal


def test_loss_without_presence_head_is_the_papers():
    loss_fn = MUNetLoss()
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:12, 4:12] = 1
    outputs = {"mask_stride2": torch.zeros(2, 1, 16, 16), "class_logits": torch.zeros(2, 2)}
    parts = loss_fn.components(outputs, {"mask": mask, "class": torch.tensor([1, -1])})
    assert "presence_loss" not in parts
    # per-image Dice averaged over both images, the empty one included: Dice 2*32/(128+64) = 1/3 on the
    # lesion image, about 0 on the empty one (its loss is about 1 whatever is predicted)
    assert float(parts["dice_loss"]) == pytest.approx(((1 - 1 / 3) + 1.0) / 2, abs=1e-4)


def test_multiscale_and_ensemble_average_the_presence_probability():
    net = build_network("munet", presence_head=True, base_channels=8).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out = MultiTaskInferer(scales=[0.5, 1.0], flips=True)(x, net)
    assert out[PRESENCE_KEY].shape == (1, 1)
    a = {"mask": torch.zeros(1, 1, 4, 4), PRESENCE_KEY: _logit(0.2)}
    b = {"mask": torch.ones(1, 1, 4, 4), PRESENCE_KEY: _logit(0.8)}
    combined = combine([a, b], [1.0, 3.0])
    assert float(torch.sigmoid(combined[PRESENCE_KEY])) == pytest.approx(0.25 * 0.2 + 0.75 * 0.8, abs=1e-5)


def test_lesion_recall_rule_keeps_the_required_share_of_lesion_images():
    lesions = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3]
    normals = [0.05, 0.1, 0.2, 0.33, 0.6]
    t = choose_presence_threshold(lesions, normals, "lesion_recall", min_lesion_recall=0.9)
    assert sum(p >= t for p in lesions) == 9  # 90 % kept: the 0.3 image is the one given up
    assert t == pytest.approx((0.35 + 0.33) / 2)
    assert choose_presence_threshold(lesions, normals, "lesion_recall", min_lesion_recall=1.0) == pytest.approx((0.3 + 0.2) / 2)
    assert choose_presence_threshold([], normals) == 0.0


def test_youden_rule_trades_lesions_for_normals_only_above_the_recall_floor():
    lesions = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3]
    normals = [0.05, 0.1, 0.2, 0.33, 0.34, 0.36]
    # floor 0.7: giving up 0.3 and 0.35 (recall 0.8) clears three more normals: 0.8 + 6/6 beats 1.0 + 3/6
    assert choose_presence_threshold(lesions, normals, "youden", min_lesion_recall=0.7) == pytest.approx((0.36 + 0.4) / 2)
    # floor 1.0: every lesion kept, the highest such threshold clears the three lowest normals
    assert choose_presence_threshold(lesions, normals, "youden", min_lesion_recall=1.0) == pytest.approx((0.2 + 0.3) / 2)
    # perfectly separated: the midpoint of the gap
    assert choose_presence_threshold([0.8, 0.9], [0.1, 0.2], "youden") == pytest.approx((0.2 + 0.8) / 2)
    with pytest.raises(ValueError, match="unknown presence threshold rule 'median'"):
        choose_presence_threshold(lesions, normals, "median")


def test_gated_outcome_counts_gated_lesions_as_missed_and_gated_normals_as_clear():
    outcome = gated_outcome([0.8, 0.6, 0.9], [0.9, 0.2, 0.5], [True, True, False], [0.1, 0.7, 0.9], threshold=0.3)
    assert outcome == {"dice": pytest.approx((0.8 + 0.0 + 0.9) / 3), "normal_fpr": pytest.approx(1 / 3),
                       "lesion_images_gated": 1, "normal_images_marked": 1}
    ungated = gated_outcome([0.8, 0.6, 0.9], [0.9, 0.2, 0.5], [True, True, False], [0.1, 0.7, 0.9], threshold=None)
    assert ungated["dice"] == pytest.approx(2.3 / 3) and ungated["normal_fpr"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("has_mask, prob, expected", [
    (True, 0.02, "no lesion"), (False, 0.02, "no lesion"),  # confident: below no_lesion_below
    (True, 0.3, "uncertain"), (False, 0.3, "uncertain"),  # the band: mask kept, reviewed
    (True, 0.9, "lesion"), (False, 0.9, "uncertain"),  # a lesion seen but not drawn is reviewed
])
def test_three_way_finding(has_mask, prob, expected):
    assert image_finding(has_mask, prob, 0.05, 0.5) == expected


def test_two_way_finding_without_a_band_or_a_presence_head():
    assert image_finding(True, 0.9, 0.5, None) == "lesion" and image_finding(False, 0.9, 0.5, None) == "no lesion"
    assert image_finding(True) == "lesion" and image_finding(False) == "no lesion"


def test_a_foreground_click_keeps_the_mask_from_the_gate():
    """An interactive model's input: image, foreground and background click maps. The annotator's
    foreground click says "lesion": the gate must not empty the mask it guided (on BUSI it did,
    IoU 0.77 -> 0.00 after a third click); a background click alone leaves the gate as it is."""
    split = SplitOutputd(presence_threshold=0.4, guidance=True)
    image = torch.zeros(3, 8, 8)
    background = image.clone()
    background[2, 4, 4] = 1.0
    assert float(split({**_sample(0.1), "image": background})["pred"].sum()) == 0.0
    foreground = image.clone()
    foreground[1, 4, 4] = 1.0
    kept = split({**_sample(0.1), "image": foreground})
    assert float(kept["pred"].min()) == pytest.approx(0.8) and float(kept["pred_mask_stride2"].min()) > 0.9
    assert kept[LESION_CLICKED_KEY] is True
    assert image_finding(True, 0.01, 0.05, 0.5, lesion_clicked=True) == "lesion"
    clicked = result_json([0.2, 0.8], ["benign", "malignant"], 30, (40, 50), {"foreground": 1, "background": 0},
                          lesion_prob=0.01, presence_thresholds=(0.05, 0.5))
    assert clicked["finding"] == "lesion" and clicked["class_prediction"] == "malignant"


def test_no_class_call_on_no_lesion():
    no_lesion = result_json([0.2, 0.8], ["benign", "malignant"], 0, (40, 50), {}, lesion_prob=0.01, presence_thresholds=(0.05, 0.5))
    assert no_lesion["finding"] == "no lesion" and no_lesion["class_prediction"] is None and no_lesion["class_probabilities"] == {}
    uncertain = result_json([0.2, 0.8], ["benign", "malignant"], 30, (400, 500), {}, lesion_prob=0.2, presence_thresholds=(0.05, 0.5))
    assert uncertain["finding"] == "uncertain" and uncertain["class_prediction"] == "malignant"
    assert uncertain["lesion_probability"] == 0.2 and "warnings" not in uncertain
    tiny = result_json([0.6, 0.4], ["benign", "malignant"], 3, (16, 16), {}, image_size=224)
    assert tiny["finding"] == "lesion" and "below the 48-pixel minimum" in tiny["warnings"][0]


def test_three_way_thresholds_rest_on_every_lesion_image_not_the_lowest():
    rng = np.random.default_rng(0)
    lesions = 1 / (1 + np.exp(-rng.normal(3.0, 1.5, 55)))
    normals = 1 / (1 + np.exp(-rng.normal(-3.0, 1.5, 13)))
    low, high = three_way_thresholds(lesions, normals)
    assert low <= high and (lesions < low).mean() <= 0.03
    logits = np.log(lesions / (1 - lesions))
    assert low == pytest.approx(1 / (1 + np.exp(-(logits.mean() - 2.3263 * logits.std(ddof=1)))), rel=1e-3)
    assert (normals >= high).mean() <= 0.15 + 1 / 13
    # one outlying lesion image widens the fit; it does not become the threshold
    shifted = three_way_thresholds(np.append(lesions, 0.007), normals)[0]
    assert 0.007 < shifted < low
    with pytest.raises(ValueError, match="at least two lesion images"):
        three_way_thresholds([0.9], normals)
