"""research.trust_report's risk-coverage table and research.trust_table's rendering of it."""

from __future__ import annotations

import json

import numpy as np

from munet.engines.review import risk_coverage
from research.trust_report import BUDGETS, ece_with_floor, review_by_budget
from research.trust_table import render


def _rows(n: int, seed: int, normal: bool = False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        agreement = float(rng.uniform(0.2, 1.0))
        cls = -1 if normal else int(rng.random() < 0.35)
        rows.append({"image": f"{i}.png", "dice": 0.0 if normal else float(np.clip(agreement + rng.normal(0, 0.1), 0, 1)),
                     "lesion_prob": float(rng.uniform(0.0, 0.6) if normal else rng.uniform(0.3, 1.0)),
                     "prob_malignant": float(np.clip((0.7 if cls == 1 else 0.3) + rng.normal(0, 0.2), 0.01, 0.99)),
                     "class": cls, "lesion": not normal, "marked": True, "view_agreement": agreement})
    return rows


def test_each_budgets_rule_stays_within_its_budget_on_validation_and_the_tables_render(tmp_path):
    val, val_normals, test, test_normals = _rows(60, 0), _rows(20, 1, True), _rows(110, 2), _rows(27, 3, True)
    table = review_by_budget(val, val_normals, test, test_normals, no_lesion_below=0.2)
    assert [row["budget"] for row in table] == list(BUDGETS)
    for row in table:
        on_validation = risk_coverage(val, val_normals, (0.2, row["presence_uncertain_below"]), row["review_rule"])
        assert on_validation["flagged_share"] <= row["budget"] + 1e-9
        assert row["dice_unflagged"] >= row["dice_all"] - 0.05  # flags the low-agreement (bad) masks, not good ones
    probs, labels = [r["prob_malignant"] for r in test], [r["class"] for r in test]
    report = {"values": {"class_temperature": 1.0, "presence_temperature": 1.0, "presence_threshold": 0.2,
                         "presence_uncertain_below": table[-1]["presence_uncertain_below"]},
              "ece_test": {"malignancy_before": 0.1, "malignancy_after": 0.1, "presence_before": 0.05, "presence_after": 0.05,
                           "floor": {"malignancy_after": ece_with_floor(probs, labels)}},
              "test": {"three_way": {"lesion_images": 110, "called_no_lesion": 2, "called_no_lesion_share": 2 / 110,
                                     "called_no_lesion_ci95": [0.002, 0.064], "uncertain_lesion_images": 5, "normal_images": 27,
                                     "normal_fpr": 3 / 27, "served_dice": 0.78, "dice_without_gate": 0.79},
                       "review": table[-1], "review_by_budget": table},
              "probabilities": {"test": test}}
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(report))
    text = render([str(path)], ["7"])
    assert "| 7 | 2 / 110 = 1.8 % (0.2-6.4 %) | 5 |" in text and "0.111 (3 / 27)" in text and "floor 0." in text
    assert text.count("\n| 7 |") == 1 + 1 + len(BUDGETS)  # a seed row, a flag row, one row per budget
