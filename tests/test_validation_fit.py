"""munet train fits on the validation split: temperatures, the three-way presence thresholds, the review rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from bundle_helpers import REPO_ROOT, TINY, make_tiny_dataset
from PIL import Image

from munet.engines.review import choose_review_rule, choose_review_settings, risk_coverage


def _with_normals(data, per_split: int = 4) -> None:
    """Add lesion-free images (no class, an empty mask) to training and validation."""
    content = json.loads((data / "datalist.json").read_text())
    for split in ("training", "validation"):
        normals = []
        for i, item in enumerate(content[split][:per_split]):
            image = Image.open(data / item["image"])
            name = f"normal_{split}_{i}.png"
            image.save(data / "images" / name)
            Image.fromarray(np.zeros((image.height, image.width), np.uint8)).save(data / "masks" / name)
            normals.append({"image": f"images/{name}", "label": f"masks/{name}"})
        content[split] = content[split] + normals
    (data / "datalist.json").write_text(json.dumps(content, indent=1))


def test_munet_train_writes_what_it_fitted_on_validation(tmp_path):
    data = make_tiny_dataset(tmp_path, n_train=12, n_val=6, n_test=2)
    _with_normals(data)
    bundle = tmp_path / "bundle"
    values = [a for k, v in TINY.items() for a in (f"--{k}", str(v))]
    trained = subprocess.run([sys.executable, "-m", "munet.cli", "train", "--dataset_dir", str(data), "--output_dir", str(bundle),
                              "--recipe", "paper", "--presence_head", "True", "--require_lesion", "False", "--tracking", "none",
                              "--max_epochs", "2", *values], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "[munet train] fitted on validation:" in trained.stdout
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["class_temperature"] > 0 and train["presence_temperature"] > 0
    assert 0 <= train["presence_threshold"] <= train["presence_uncertain_below"] <= 1
    assert set(train["review_rule"]) == {"min_view_agreement", "class_margin"}
    record = json.loads((bundle / "train_record.json").read_text())
    assert record["validation_fit"]["summary"]["normal_images"] == 4 and record["validation_fit"]["skipped"] == {}
    # the minutes name what they were measured on (an AVX2 and an AVX512-BF16 CPU differ several-fold)
    assert record["trained_on"]["precision"] in ("fp32", "bf16") and record["trained_on"]["threads"] >= 1
    assert record["trained_on"]["compute"].startswith(("CPU ", "GPU ")) and record["trained_on"]["compute"] in trained.stdout
    # and which code made the weights: this checkout's commit (CI runs on a git clone)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert record["code"]["commit"].split("-")[0] == head, record["code"]


def _case(dice, prob_malignant, cls, lesion_prob=0.9, agreement=1.0):
    return {"dice": dice, "prob_malignant": prob_malignant, "class": cls, "lesion_prob": lesion_prob, "marked": True,
            "view_agreement": agreement}


def test_the_review_rule_flags_the_bad_masks_and_the_malignant_cases_called_benign():
    good = [_case(0.9, p, c) for p, c in ((0.1, 0), (0.9, 1), (0.2, 0), (0.8, 1), (0.15, 0), (0.85, 1), (0.05, 0), (0.95, 1))]
    bad_masks = [_case(0.2, 0.1, 0, agreement=0.4), _case(0.3, 0.9, 1, agreement=0.5)]
    called_benign = [_case(0.8, 0.42, 1)]
    cases = good + bad_masks + called_benign
    normals = [{"dice": 0.0, "prob_malignant": 0.3, "class": -1, "lesion_prob": 0.01, "marked": True, "view_agreement": 1.0}] * 4
    rule = choose_review_rule(cases, normals, (0.05, 0.5), max_flagged=0.25)
    table = risk_coverage(cases, normals, (0.05, 0.5), rule)
    assert table["flagged_share"] <= 0.25 and table["flagged_lesion_images"] == 3, (rule, table)
    assert table["dice_unflagged"] > table["dice_all"] + 0.1 and table["misclassified_malignant_caught"] == 1
    assert table["normal_fpr_all"] == 0.0  # confidently "no lesion"


def test_the_uncertain_band_is_chosen_with_the_review_rule_under_the_budget():
    sure = [_case(0.9, p, c, lesion_prob=0.99) for p, c in ((0.1, 0), (0.9, 1), (0.2, 0), (0.8, 1), (0.15, 0), (0.85, 1), (0.05, 0))]
    doubtful = [_case(0.3, 0.3, 0, lesion_prob=0.55), _case(0.25, 0.6, 1, lesion_prob=0.6)]  # weak presence, poor masks
    normals = [{"dice": 0.0, "prob_malignant": 0.3, "class": -1, "lesion_prob": p, "marked": True, "view_agreement": 1.0}
               for p in (0.01, 0.02, 0.03, 0.7)]
    upper, rule = choose_review_settings(sure + doubtful, normals, 0.05, max_flagged=0.25)
    table = risk_coverage(sure + doubtful, normals, (0.05, upper), rule)
    assert 0.05 <= upper <= 0.99 and table["flagged_share"] <= 0.25  # the band or a class margin: either flags both
    assert table["flagged_lesion_images"] == 2 and table["dice_unflagged"] == pytest.approx(0.9)
