"""Cross-validation folds: training + validation pooled and re-split, groups kept, every image held out once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from bundle_helpers import REPO_ROOT, TINY, make_tiny_dataset
from test_validation_fit import _with_normals

from munet.cli.validation_fit import fit_on_folds
from munet.dataset_tools.folds import fold_datalist

BUSI = REPO_ROOT.parent / "shared" / "data" / "busi"


def _datalist():
    cases = [{"image": f"b{i}.png", "label": f"b{i}_m.png", "class": 0, "id": f"b{i}"} for i in range(30)]
    cases += [{"image": f"m{i}.png", "label": f"m{i}_m.png", "class": 1, "id": f"m{i}"} for i in range(12)]
    cases += [{"image": f"n{i}.png", "label": f"n{i}_m.png", "id": f"n{i}"} for i in range(9)]
    for case in cases[:6]:
        case["group"] = "twins"  # near-duplicates: one fold for all six
    return {"name": "x", "training": cases[::2] + cases[1::4], "validation": cases[3::4], "test": [{"image": "t.png", "class": 1}]}


def test_folds_partition_the_pooled_cases_keep_groups_and_balance_the_strata():
    datalist = _datalist()
    pooled = datalist["training"] + datalist["validation"]
    held_out = []
    for fold in range(3):
        split = fold_datalist(datalist, 3, fold)
        assert split["test"] == datalist["test"] and split["name"] == "x"
        train_ids, val_ids = {c["id"] for c in split["training"]}, {c["id"] for c in split["validation"]}
        assert not train_ids & val_ids and train_ids | val_ids == {c["id"] for c in pooled}
        assert {c["id"] for c in pooled if c.get("group") == "twins"} <= (val_ids if "b0" in val_ids else train_ids)
        strata = Counter("normal" if "class" not in c else c["class"] for c in split["validation"])
        assert strata[1] == 4 and strata["normal"] == 3 and abs(strata[0] - 10) <= 3, strata
        held_out += sorted(val_ids)
        assert fold_datalist(datalist, 3, fold) == split  # deterministic
    assert sorted(held_out) == sorted(c["id"] for c in pooled)  # each case held out exactly once


@pytest.mark.parametrize("folds, fold, message", [(1, 0, "folds must be"), (3, 3, "fold must be one of 0..2"), (2.5, 0, "folds must be"),
                                                  (60, 0, "cannot fill 60 folds")])
def test_bad_folds_are_refused(folds, fold, message):
    with pytest.raises(ValueError, match=message):
        fold_datalist(_datalist(), folds, fold)


@pytest.mark.skipif(not (BUSI / "manifest.csv").is_file(), reason="needs ../shared/data/busi")
def test_busi_folds_keep_the_manifests_near_duplicate_groups_together(tmp_path):
    import csv

    from munet.dataset_tools.busi import busi_with_normals

    group = {r["id"]: r["dup_group"] for r in csv.DictReader(open(BUSI / "manifest.csv"))}
    fold_of: dict = {}
    for fold in range(5):
        content = json.loads(busi_with_normals(BUSI, tmp_path, folds=5, fold=fold).read_text())
        assert len(content["test"]) == 110 and 100 <= len(content["validation"]) <= 120
        for case in content["validation"]:
            if group[case["id"]]:
                fold_of.setdefault(group[case["id"]], set()).add(fold)
    assert fold_of and all(len(folds) == 1 for folds in fold_of.values())


def test_two_fold_bundles_hold_out_every_image_once_and_their_predictions_pool(tmp_path):
    data = make_tiny_dataset(tmp_path, n_train=8, n_val=4, n_test=2)
    _with_normals(data, per_split=2)
    values = [a for k, v in TINY.items() for a in (f"--{k}", str(v))]
    bundles = []
    for fold in (0, 1):
        bundle = tmp_path / f"fold{fold}"
        done = subprocess.run([sys.executable, "-m", "munet.cli", "train", "--dataset_dir", str(data), "--output_dir", str(bundle),
                               "--recipe", "paper", "--presence_head", "True", "--require_lesion", "False", "--tracking", "none",
                               "--max_epochs", "1", "--folds", "2", "--fold", str(fold), *values],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        record = json.loads((bundle / "train_record.json").read_text())
        assert record["fold"] == {"folds": 2, "fold": fold} and Path(record["datalist"]).parent == bundle
        bundles.append(bundle)
    pooled = json.loads((data / "datalist.json").read_text())
    expected = sorted(str((data / c["image"]).resolve()) for c in pooled["training"] + pooled["validation"])
    held_out = sorted(str(Path(line.split(",")[0]).resolve()) for b in bundles
                      for line in (b / "eval" / "validation_fit" / "per_case.csv").read_text().splitlines()[1:])
    assert held_out == expected  # every training and validation image predicted once, by the model that did not see it
    fit = fit_on_folds(bundles)
    assert fit["summary"]["lesion_images"] + fit["summary"]["normal_images"] == len(expected)
    assert 0 <= fit["values"]["presence_threshold"] <= fit["values"]["presence_uncertain_below"] <= 1
    with pytest.raises(ValueError, match="held out by more than one fold"):
        fit_on_folds([bundles[0], bundles[0]])
    with pytest.raises(ValueError, match="no out-of-fold predictions"):
        fit_on_folds([tmp_path])


def _fold_bundle(root: Path, folds: int, fold: int, seed: int) -> Path:
    """A cross-validation bundle as munet train --folds leaves it: configs, record, held-out predictions."""
    import csv

    import numpy as np

    from munet.cli.train import make_bundle_folder

    make_bundle_folder(root, {})
    (root / "train_record.json").write_text(json.dumps({"fold": {"folds": folds, "fold": fold}}))
    table = root / "eval" / "validation_fit" / "per_case.csv"
    table.parent.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    columns = ["image", "dice", "lesion_prob", "prob_malignant", "class", "lesion_pixels", "pred_pixels", "view_agreement"]
    with open(table, "w", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        for i in range(30):
            normal = i >= 24
            cls = -1 if normal else int(rng.random() < 0.35)
            writer.writerow({"image": f"/data/{fold}_{i}.png", "dice": 0.0 if normal else rng.uniform(0.3, 1.0),
                             "lesion_prob": rng.uniform(0.0, 0.6) if normal else rng.uniform(0.3, 1.0),
                             "prob_malignant": 0.5 if normal else np.clip((0.7 if cls else 0.3) + rng.normal(0, 0.2), 0.01, 0.99),
                             "class": cls, "lesion_pixels": 0 if normal else 900, "pred_pixels": 60, "view_agreement": rng.uniform(0.2, 1.0)})
    return root


def test_munet_fit_writes_the_pooled_fold_fit_into_the_served_bundle_and_refuses_mixed_folds(tmp_path, capsys):
    from munet.cli import main
    from munet.cli.train import make_bundle_folder

    served = make_bundle_folder(tmp_path / "model", {}).parent
    folds = [_fold_bundle(tmp_path / f"fold{i}", 3, i, i) for i in range(3)]
    main(["fit", "--bundle", str(served), "--folds", ",".join(map(str, folds))])
    record = json.loads((served / "eval" / "fold_fit.json").read_text())
    assert record["fold_numbers"] == [0, 1, 2] and record["summary"]["lesion_images"] == 72 and record["summary"]["normal_images"] == 18
    configs = json.loads((served / "configs" / "train.json").read_text())
    for key, value in record["values"].items():
        assert configs[key] == value  # what is served is what was fitted
    assert configs["presence_threshold"] != 0.5  # the repository default was replaced
    assert "3 of 3 folds, 72 lesion and 18 normal" in capsys.readouterr().out
    main(["fit", "--bundle", str(served), "--folds", ",".join(map(str, folds[:2]))])
    assert "only 2 of 3 folds" in capsys.readouterr().out
    other = _fold_bundle(tmp_path / "other", 5, 2, 9)
    for bad, message in (([folds[0], other], "different splits"), ([folds[0], folds[0]], "given twice"),
                         ([folds[0], served], "not a cross-validation bundle")):
        with pytest.raises(SystemExit):
            main(["fit", "--bundle", str(served), "--folds", ",".join(map(str, bad))])
        assert message in capsys.readouterr().err
