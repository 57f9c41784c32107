"""The bundle's workflows run through MONAI's ConfigWorkflow, as the model zoo's CI runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle_helpers import EVALUATE, INFERENCE, TRAIN, make_tiny_dataset, run_workflow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny dataset and a bundle root with a 2-epoch training run done through ConfigWorkflow."""
    root = tmp_path_factory.mktemp("bundle")
    data = make_tiny_dataset(root)
    run_workflow("train", TRAIN, root, data, max_epochs=2)
    return root, data


def test_training_writes_best_model_and_resumable_last_state(trained):
    root, _ = trained
    assert (root / "models" / "model.pt").is_file()
    last = torch.load(root / "models" / "checkpoint_last.pt", weights_only=True)
    assert set(last) == {"model", "optimizer", "lr_scheduler", "trainer", "rng", "best_checkpoint", "early_stopping"}
    trainer = last["trainer"]  # Ignite keeps the iteration; the epoch is iteration / epoch_length
    assert trainer["iteration"] == 2 * trainer["epoch_length"] and trainer["max_epochs"] == 2
    # the best model holds exactly the network's weights
    best = torch.load(root / "models" / "model.pt", weights_only=True)
    assert set(best) == set(last["model"])


def _read_csv(path: Path) -> list:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _auc_by_pairs(scores, labels) -> float:
    """AUC as the share of (malignant, benign) pairs ranked correctly, ties counting half."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_evaluation_metrics_match_a_hand_computation(trained):
    root, data = trained
    run_workflow("train", [TRAIN, EVALUATE], root, data)

    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    rows = _read_csv(root / "eval" / "per_case.csv")
    datalist = json.loads((data / "datalist.json").read_text())["test"]
    assert len(rows) == len(datalist) == 4

    dices = []
    for entry in datalist:
        truth = np.asarray(Image.open(data / entry["label"])) > 0
        stem = Path(entry["image"]).stem
        predicted = np.asarray(Image.open(root / "eval" / "predictions" / f"{stem}_mask.png")) > 0
        assert predicted.shape == truth.shape  # cropped back to the input's own size
        both_empty = not truth.any() and not predicted.any()
        dices.append(1.0 if both_empty else 2 * (truth & predicted).sum() / (truth.sum() + predicted.sum()))
        row = next(r for r in rows if r["image"].endswith(entry["image"]))
        assert float(row["dice"]) == pytest.approx(dices[-1], abs=1e-6)
    assert metrics["val_dice"] == pytest.approx(float(np.mean(dices)), abs=1e-6)

    probs = [float(r["prob_malignant"]) for r in rows]
    labels = [int(r["class"]) for r in rows]
    predicted_malignant = [p >= 0.5 for p in probs]
    tp = sum(p and y == 1 for p, y in zip(predicted_malignant, labels))
    tn = sum((not p) and y == 0 for p, y in zip(predicted_malignant, labels))
    assert metrics["val_sensitivity"] == pytest.approx(tp / labels.count(1))
    assert metrics["val_specificity"] == pytest.approx(tn / labels.count(0))
    assert metrics["val_accuracy"] == pytest.approx((tp + tn) / len(labels))
    assert metrics["val_auc"] == pytest.approx(_auc_by_pairs(probs, labels))
    assert metrics["val_score"] == pytest.approx((metrics["val_dice"] + metrics["val_auc"]) / 2)
    for branch in ("16", "8", "4", "2"):  # each branch's Dice is the mean of its per-case column
        column = [float(r[f"dice_mask_stride{branch}"]) for r in rows]
        assert len(column) == 4 and metrics[f"val_dice_mask_stride{branch}"] == pytest.approx(float(np.mean(column)))


def test_inference_writes_masks_at_input_size_and_class_probabilities(trained):
    root, data = trained
    out = root / "infer_out"
    run_workflow("infer", INFERENCE, root, data, output_dir=str(out))
    rows = _read_csv(out / "predictions.csv")
    assert len(rows) == 4
    for row in rows:
        image = Image.open(row["image"])
        mask = Image.open(row["mask"])
        assert mask.size == image.size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert Image.open(row["overlay"]).size == image.size
        assert float(row["prob_benign"]) + float(row["prob_malignant"]) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted_class"] in ("benign", "malignant")


def test_inference_config_builds_the_network_that_training_trains(tmp_path):
    """inference.json takes every network and preprocessing value from the bundle's train.json: one source."""
    from monai.bundle import ConfigParser

    from bundle.shared_values import SHARED_KEYS

    train = json.loads(Path(TRAIN).read_text())
    infer = json.loads(Path(INFERENCE).read_text())
    for key in SHARED_KEYS:  # a reference in inference.json, a value in train.json only
        assert infer[key] == f"$@training_values['{key}']" and not str(train[key]).startswith(("$", "@")), key
    shared = {k: v for k, v in train["network_def"].items() if k not in ("output", "pretrained", "pretrained_sha256")}
    assert {k: v for k, v in infer["network_def"].items() if k != "output"} == shared
    # a bundle whose train.json says otherwise is served with its own values
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.json").write_text(json.dumps({**train, "image_size": 320, "backbone": "resnet18"}))
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["bundle_root"] = str(tmp_path)
    assert parser.get_parsed_content("image_size") == 320 and parser.get_parsed_content("backbone") == "resnet18"
    assert parser.get_parsed_content("class_names") == train["class_names"]
    # and a command-line value still wins, as for any key
    parser["image_size"] = 128
    assert parser.get_parsed_content("image_size") == 128
    # evaluate.json has none of these values: merged over the bundle's train.json, it serves the model
    # as that train.json says (a bundle trained with test-time flips is evaluated with them)
    assert not set(SHARED_KEYS) & set(json.loads(Path(EVALUATE).read_text()))
    (tmp_path / "configs" / "train.json").write_text(json.dumps({**train, "inference_flips": True, "inference_scales": [0.875, 1.0]}))
    merged = ConfigParser()
    merged.read_config([str(tmp_path / "configs" / "train.json"), EVALUATE])
    merged["bundle_root"] = str(tmp_path)
    inferer = merged.get_parsed_content("validate#inferer")
    assert (inferer.flips, inferer.scales) == (True, [0.875, 1.0])
    # a bundle written before a serving value existed still serves: the missing value takes the code's default
    older = {k: v for k, v in train.items() if k not in ("inference_scales", "inference_scale_image_heads")}
    (tmp_path / "configs" / "train.json").write_text(json.dumps({**older, "image_size": 320}))
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["bundle_root"] = str(tmp_path)
    assert parser.get_parsed_content("image_size") == 320
    assert parser.get_parsed_content("inference_scales") == train["inference_scales"]
    assert parser.get_parsed_content("inference_scale_image_heads") is train["inference_scale_image_heads"]
    # an output folder without configs (--bundle_root runs/x) is served with the train.json beside the code
    outputs = ConfigParser()
    outputs.read_config(INFERENCE)
    outputs["bundle_root"] = str(tmp_path / "outputs_only")
    assert outputs.get_parsed_content("image_size") == train["image_size"]
