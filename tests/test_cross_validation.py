"""research.cross_validation's report: the fit on pooled held-out predictions, measured per fold on test."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from munet.cli.validation_fit import fit_on_rows, read_predictions
from research.cross_validation import report
from research.trust_report import BUDGETS
from research.trust_table import render

COLUMNS = ["image", "dice", "lesion_prob", "prob_malignant", "class", "lesion_pixels", "pred_pixels", "view_agreement"]


def _write(path, names, seed, normals=()):
    """A per_case.csv as the evaluation workflow writes it: lesion images, then normals."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        writer.writeheader()
        for name in names:
            cls = int(rng.random() < 0.35)
            writer.writerow({"image": f"/data/images/{name}", "dice": rng.uniform(0.3, 1.0), "lesion_prob": rng.uniform(0.3, 1.0),
                             "prob_malignant": np.clip((0.7 if cls else 0.3) + rng.normal(0, 0.2), 0.01, 0.99), "class": cls,
                             "lesion_pixels": 900, "pred_pixels": 800, "view_agreement": rng.uniform(0.2, 1.0)})
        for name in normals:
            writer.writerow({"image": f"/data/normal/{name}", "dice": 0.0, "lesion_prob": rng.uniform(0.0, 0.6), "prob_malignant": 0.5,
                             "class": -1, "lesion_pixels": 0, "pred_pixels": 50, "view_agreement": rng.uniform(0.2, 1.0)})


def _folds(root, folds=3):
    for fold in range(folds):
        folder = root / f"fold{fold}"
        folder.mkdir(parents=True)
        _write(folder / "heldout.csv", [f"f{fold}_{i}.png" for i in range(40)], fold, [f"n{fold}_{i}.png" for i in range(12)])
        _write(folder / "test.csv", [f"t{i}.png" for i in range(50)], 10 + fold)
        _write(folder / "normal_test.csv", [], 20 + fold, [f"tn{i}.png" for i in range(15)])
        (folder / "train_record.json").write_text(json.dumps({"code": {"commit": "abc123"}, "train_seconds": 1.0}))


def test_the_fit_rests_on_every_held_out_image_and_each_fold_is_measured_with_it(tmp_path):
    _folds(tmp_path / "cv")
    whole = tmp_path / "trust_seed5.json"  # a model of the whole split, as research.trust_report stores its test predictions
    fold0 = tmp_path / "cv" / "fold0"
    whole.write_text(json.dumps({"trained_by": "def456", "probabilities": {
        "test": read_predictions(fold0 / "test.csv"), "normal_test": read_predictions(fold0 / "normal_test.csv")}}))
    out = report(str(tmp_path / "cv"), str(tmp_path / "trust_cv.json"), apply_to=str(whole), labels="seed 5")
    assert out["heldout_images"] == 3 * 52 and out["validation"]["normal_images"] == 36
    pooled = [row for f in range(3) for row in read_predictions(tmp_path / "cv" / f"fold{f}" / "heldout.csv")]
    assert out["values"] == fit_on_rows(pooled)["values"]
    assert [f["name"] for f in out["folds"]] == ["fold0", "fold1", "fold2"]
    for fold in out["folds"]:
        assert fold["values"] == out["values"] and fold["trained_by"] == "abc123"
        three = fold["test"]["three_way"]
        assert (three["lesion_images"], three["normal_images"]) == (50, 15)
        assert fold["values_own_fold"] != out["values"]  # 52 images place other thresholds than 156
    cross = out["cross_fitted"]  # each fold judged by the values of the other two
    assert (cross["lesion_images"], cross["normal_images"]) == (120, 36)
    assert cross["called_no_lesion"] == sum(f["called_no_lesion"] for f in cross["folds"])
    assert all(f["values"] != out["values"] for f in cross["folds"])
    assert 0 <= cross["ece_malignancy_logit_shift"]["ece"] <= 1  # measured, not served
    moved = out["folds"][0]["logit_shift"]
    assert moved["ece_served"]["ece"] == pytest.approx(out["folds"][0]["ece_test"]["malignancy_after"])
    assert set(moved["shifted"]) == {"sensitivity", "specificity", "accuracy"}
    written = json.loads((tmp_path / "trust_cv.json").read_text())
    assert written["folds"][0]["test"]["three_way"]["called_no_lesion"] == out["folds"][0]["test"]["three_way"]["called_no_lesion"]
    assert out["whole_split"][0]["name"] == "seed 5" and out["whole_split"][0]["values"] == out["values"]
    assert out["whole_split"][0]["test"] == out["folds"][0]["test"]  # the same predictions judged by the same values
    text = render([str(tmp_path / "trust_cv.json")], ["cv"])  # one row per fold and applied model in each table, and the cross-fitted table
    assert text.count("\n| cv, fold") == 3 * (1 + 1 + len(BUDGETS)) and text.count("\n| cv, seed 5 |") == 1 + 1 + len(BUDGETS)
    assert f"\n| cv | {cross['called_no_lesion']} / 120 = " in text


def test_an_image_held_out_twice_or_an_unfinished_fold_is_refused_by_name(tmp_path):
    _folds(tmp_path / "cv")
    _write(tmp_path / "cv" / "fold2" / "heldout.csv", ["f0_3.png"], 0)
    with pytest.raises(ValueError, match="f0_3.png"):
        report(str(tmp_path / "cv"), str(tmp_path / "out.json"))
    (tmp_path / "cv" / "fold1" / "test.csv").unlink()
    with pytest.raises(ValueError, match=r"fold1: test.csv missing"):
        report(str(tmp_path / "cv"), str(tmp_path / "out.json"))
    for fold in ("fold1", "fold2"):
        for name in (tmp_path / "cv" / fold).iterdir():
            name.unlink()
        (tmp_path / "cv" / fold).rmdir()
    with pytest.raises(ValueError, match="1 finished fold"):
        report(str(tmp_path / "cv"), str(tmp_path / "out.json"))
    with pytest.raises(ValueError, match="no fold folders"):
        report(str(tmp_path / "empty"), str(tmp_path / "out.json"))
