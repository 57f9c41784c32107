"""The bundle's workflows run through MONAI's ConfigWorkflow, as the model zoo's CI runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import EVALUATE, INFERENCE, TRAIN, make_tiny_dataset, run_workflow
from PIL import Image


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
    run_workflow("train", EVALUATE, root, data)

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
    run_workflow("infer", INFERENCE, root, data, output_dir=str(out), threshold=0.001)  # a lesion on every image
    rows = _read_csv(out / "predictions.csv")
    assert len(rows) == 4
    for row in rows:
        image = Image.open(row["image"])
        mask = Image.open(row["mask"])
        assert mask.size == image.size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert Image.open(row["overlay"]).size == image.size
        assert row["finding"] == "lesion" and row["needs_review"] in ("yes", "no")
        assert float(row["prob_benign"]) + float(row["prob_malignant"]) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted_class"] in ("benign", "malignant")


def test_no_class_is_called_where_the_finding_is_no_lesion(trained):
    root, data = trained
    out = root / "infer_none"
    run_workflow("infer", INFERENCE, root, data, output_dir=str(out), threshold=1.01)  # no pixel can reach it
    rows = _read_csv(out / "predictions.csv")
    assert len(rows) == 4
    for row in rows:
        assert row["finding"] == "no lesion" and int(row["lesion_pixels"]) == 0
        assert not row.get("prob_benign") and not row.get("prob_malignant") and not row.get("predicted_class"), row


def test_inference_config_builds_the_network_that_training_trains(tmp_path):
    """Every network, preprocessing and serving value is written once, in train.json: inference.json
    and evaluate.json merge over it and re-state none of them, and read no config through Python."""
    from monai.bundle import ConfigParser

    from munet.engines.bundle_folder import read_bundle_config

    configs = Path(TRAIN[0]).parent
    train = json.loads((configs / "train.json").read_text())
    plain = {k for k, v in train.items() if not isinstance(v, (dict, list)) and not str(v).startswith(("$", "@", "%"))}
    for name in ("inference.json", "evaluate.json"):
        overlay = json.loads((configs / name).read_text())
        restated = sorted(plain & set(overlay) - {"output_dir", "pretrained"})  # where outputs go; no ImageNet download to serve
        assert not restated, f"{name} re-states train.json values {restated}"
        assert "training_values" not in json.dumps(overlay) and "ConfigParser" not in json.dumps(overlay)
    # a bundle folder whose train.json says otherwise is served with its own values
    (tmp_path / "configs").mkdir()
    for name in ("inference.json", "evaluate.json"):
        (tmp_path / "configs" / name).write_text((configs / name).read_text())
    (tmp_path / "configs" / "train.json").write_text(json.dumps({**train, "image_size": 320, "backbone": "resnet18",
                                                                 "inference_flips": True, "inference_scales": [0.875, 1.0]}))
    parser = read_bundle_config(tmp_path)
    assert parser.get_parsed_content("image_size") == 320 and parser.get_parsed_content("network_def").settings["backbone"] == "resnet18"
    assert parser.get_parsed_content("class_names") == train["class_names"]
    inferer = parser.get_parsed_content("serving")
    assert (inferer.flips, inferer.scales) == (True, [0.875, 1.0])
    # evaluation serves the model as inference does (a bundle trained with test-time flips is evaluated with them)
    merged = read_bundle_config(tmp_path, ("evaluate.json",))
    assert merged.get_parsed_content("validate#inferer").flips is True
    # and a command-line value still wins, as for any key
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["image_size"] = 128
    assert parser.get_parsed_content("image_size") == 128


def test_configs_wire_instead_of_orchestrating():
    """Config expressions stay one short line (at most 120 characters) and hold no ``if ... else``:
    decisions live in named functions of the package."""
    import re

    configs = Path(TRAIN[0]).parent
    found = []

    def walk(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}#{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}#{i}")
        elif isinstance(value, str) and value.startswith("$"):
            if len(value) > 120 or re.search(r"\bif\b.*\belse\b", value):
                found.append(f"{where}: {value}")

    files = sorted(configs.glob("*.json")) + sorted((configs / "recipes").glob("*.json"))
    for path in files:
        walk(json.loads(path.read_text()), path.name)
    assert len(files) >= 8 and not found, "\n".join(found)
