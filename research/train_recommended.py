"""Train the recommended BUSI model with ``munet train`` and record its test figures, for the study.

    python -m research.train_recommended --busi_dir ../shared/data/busi --output_dir runs/recommended
    python -m research.train_recommended --busi_dir ../shared/data/busi --output_dir runs/gpu --profile gpu

``munet train --busi_dir ... --recipe recommended`` (the product) trains the bundle folder and
chooses the presence threshold on the validation split; this script adds what a study records:

1. ``--variant lesions_only``: benign + malignant only, no presence head (a comparison row);
2. the training machine (CPU capability or GPU name, precision, threads) and the commit;
3. each threshold rule, and no gate, measured on the test split from one ungated pass
   (``threshold_rules`` in result.json);
4. evaluation on the test split (lesion images: Dice, Sen, Spec, Acc, AUC) and its normal images
   (false-positive rate), written to ``<output_dir>/result.json``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import fire

from munet.cli.train import presence_summary, recipe_values, train_bundle, validation_presence_probs, write_train_values
from munet.dataset_tools.busi import busi_with_normals, convert_busi
from munet.engines.bundle_folder import run_bundle_command, workflow_argv
from munet.engines.inferer import cpu_capability, resolve_precision
from munet.engines.presence_threshold import THRESHOLD_RULES, choose_presence_threshold, gated_outcome
from research.study_common import case_metrics, git_commit, history, normal_image_findings, relative_to

VARIANTS = ("recommended", "lesions_only")
#: the recipe values a run record names
RECORDED = ("backbone", "pretrained", "image_size", "presence_head", "precision", "max_epochs", "model_selection",
            "normal_repeats", "inference_scales", "inference_flips", "inference_scale_image_heads")
#: study profile -> munet recipe
PROFILES = {"cpu": "recommended", "gpu": "gpu"}


def load_recipe(profile: str) -> Dict:
    """The values the profile's recipe sets over configs/train.json (``cpu``: none, train.json is the recipe)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return recipe_values(PROFILES[profile])


def prepare_data(busi_dir: str, data_dir: Path, limit_per_split: Optional[int] = None) -> Dict[str, Path]:
    """Convert BUSI once; returns the datalists ``lesions_only`` (datalist.json) and ``with_normals``
    (normal images added to training and validation; train.json's ``normal_repeats`` oversamples them)."""
    datalist = Path(data_dir) / "datalist.json"
    if not datalist.is_file():
        convert_busi(busi_dir, str(data_dir), include_normal=True, limit_per_split=limit_per_split, log=None)
    return {"lesions_only": datalist, "with_normals": busi_with_normals(busi_dir, data_dir, limit_per_split)}


def training_machine(precision: str) -> Dict:
    """What the bundle trains on here: the CPU's capability, the GPU's name when ``train.json``'s
    ``device`` (cuda when present) is a GPU, the precision ``precision`` resolves to there, threads."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = {"cpu": cpu_capability(), "precision": resolve_precision(precision, device),
               "threads": int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)}
    if device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    return machine


def predict_split(bundle: Path, data_dir: Path, datalist: Path, split: str, out: Path, log: Path, **values) -> float:
    """Predict ``split`` of ``datalist`` with the bundle folder's inference (plus ``values``) into ``out``; seconds taken."""
    return run_bundle_command(workflow_argv("inferring", bundle, dataset_dir=str(data_dir), datalist=str(datalist),
                                            input_split=split, output_dir=str(out), **values), log)


def validation_presence_thresholds(bundle: Path, data: Path, datalist: Path, out: Path, log: Path,
                                   threshold_rule: str = "youden", min_lesion_recall: float = 0.95,
                                   **values) -> Tuple[Dict[str, float], Dict]:
    """Each rule's presence threshold, chosen on the validation split of ``datalist`` (lesion and normal
    images) predicted without the gate by the bundle folder plus ``values`` (for example
    ``ensemble_bundles``: an ensemble averages the members' presence probabilities, so its threshold is
    chosen on that average, not taken from a member). Returns the thresholds and a summary of the
    validation figures at ``threshold_rule``'s threshold, with every probability for the record."""
    lesion_p, normal_p = validation_presence_probs(bundle, datalist, data, out, log, **values)
    thresholds = {rule: choose_presence_threshold(lesion_p, normal_p, rule, min_lesion_recall) for rule in THRESHOLD_RULES}
    summary = {**presence_summary(lesion_p, normal_p, thresholds[threshold_rule]),
               "lesion_probs": [round(p, 6) for p in lesion_p], "normal_probs": [round(p, 6) for p in normal_p]}
    return thresholds, summary


def compare_threshold_rules(bundle: Path, data: Path, lesions_datalist: Path, content: Dict, thresholds: Dict[str, float],
                            busi_dir: Path) -> Dict[str, Dict]:
    """Test Dice and normal-image FPR for each rule's threshold (and no gate), from one ungated pass."""
    logs, ungated = bundle / "logs", {}
    for split in ("test", "normal_test"):
        ungated[split] = bundle / "eval" / f"ungated_{split}"
        predict_split(bundle, data, lesions_datalist, split, ungated[split], logs / f"ungated_{split}.log", presence_threshold=None)
    cases = case_metrics(ungated["test"], content["test"], busi_dir)["cases"]
    normal_rows = list(csv.DictReader(open(ungated["normal_test"] / "predictions.csv")))
    (bundle / "eval" / "ungated_normal_test.json").write_text(json.dumps(
        [{"image": Path(r["image"]).name, "lesion_prob": float(r["lesion_prob"]), "lesion_pixels": int(r["lesion_pixels"])}
         for r in normal_rows], indent=1))
    inputs = ([c["dice"] for c in cases], [c["lesion_prob"] for c in cases],
              [int(r["lesion_pixels"]) > 0 for r in normal_rows], [float(r["lesion_prob"]) for r in normal_rows])
    return {name: {"threshold": t, **gated_outcome(*inputs, threshold=t)} for name, t in {"no gate": None, **thresholds}.items()}


def train_recommended(
    busi_dir: str,
    output_dir: str,
    profile: str = "cpu",
    seed: int = 0,
    variant: str = "recommended",
    overrides: Optional[Dict] = None,
    threshold_rule: str = "youden",
    min_lesion_recall: float = 0.95,
    limit_per_split: Optional[int] = None,
    data_dir: Optional[str] = None,
    evaluate_only: bool = False,
    tracking: str = "mlflow",
) -> Dict:
    """Train (``munet train``), choose the presence threshold, evaluate; returns the run record (also
    ``<output_dir>/result.json``).

    ``overrides`` changes recipe values (e.g. ``{"arch": "unet"}`` for the U-Net at the same budget).
    ``data_dir`` shares one BUSI conversion between runs (default ``<output_dir>/data``).
    ``evaluate_only`` keeps a finished run's models and training figures and redoes the threshold
    and the evaluation (for example with another ``threshold_rule``).
    """
    if tracking not in ("mlflow", "none"):
        raise ValueError(f"unknown tracking {tracking!r}: choose mlflow or none")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold_rule {threshold_rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    bundle = Path(output_dir).resolve()
    logs = bundle / "logs"
    data = Path(data_dir).resolve() if data_dir else bundle / "data"
    datalists = prepare_data(busi_dir, data, limit_per_split)
    values = dict(overrides or {})
    if variant == "lesions_only":
        values.update(presence_head=False, require_lesion=True)
    datalist = datalists["lesions_only" if variant == "lesions_only" else "with_normals"]
    effective = {**json.loads((Path(__file__).resolve().parents[1] / "configs" / "train.json").read_text()),
                 **load_recipe(profile), **values}
    print(f"[recipe] {profile}/{variant} seed {seed}: {json.dumps({**load_recipe(profile), **values})}", flush=True)
    machine = training_machine(effective.get("precision", "fp32"))
    print(f"[recipe] {machine.get('gpu') or 'cpu ' + str(machine['cpu'])}, precision {effective.get('precision')} -> "
          f"{machine['precision']}", flush=True)

    if evaluate_only:
        previous = json.loads((bundle / "result.json").read_text())
        train_seconds, epochs, commit = previous["train_seconds"], previous["epochs"], previous["commit"]
        trained_on = {k: previous[k] for k in ("cpu", "gpu", "precision", "threads") if k in previous}  # the training's machine
        print(f"[train] skipped (evaluate_only): models of commit {commit}", flush=True)
    else:
        print(f"[train] {effective.get('max_epochs')} epochs, log {logs / 'train.log'}", flush=True)
        trained = train_bundle(str(bundle), str(data), str(datalist), recipe=PROFILES[profile], seed=seed, tracking=tracking,
                               fit_validation=False, log=logs / "train.log", **values)
        train_seconds, trained_on, commit = trained["train_seconds"], machine, git_commit()
        epochs = len(history(bundle).get("val_dice", [])) or int(effective.get("max_epochs", 1))
        print(f"[train] done in {train_seconds / 60:.1f} min ({train_seconds / 60 / epochs:.2f} min/epoch)", flush=True)

    content = json.loads(datalist.read_text())
    record: Dict = {"profile": profile, "variant": variant, "seed": seed,
                    "recipe": {k: effective[k] for k in RECORDED if k in effective} | values,
                    "commit": commit, "evaluated_by": git_commit(), **trained_on,
                    "train_seconds": round(train_seconds, 1), "epochs": epochs,
                    "data": relative_to(str(datalist), data.parent), "busi_dir": Path(busi_dir).name}
    if effective.get("presence_head"):
        thresholds, record["validation_presence"] = validation_presence_thresholds(
            bundle, data, datalist, bundle / "eval" / "validation_presence", logs / "validation_presence.log",
            threshold_rule, min_lesion_recall)
        threshold = thresholds[threshold_rule]
        record["presence_threshold"] = threshold
        record["presence_threshold_rule"] = {"rule": threshold_rule, "min_lesion_recall": min_lesion_recall}
        write_train_values(bundle, {"presence_threshold": threshold})
        print(f"[presence] threshold {threshold:.4f} ({threshold_rule}) on validation", flush=True)
        if content.get("test") and content.get("normal_test"):
            record["threshold_rules"] = compare_threshold_rules(bundle, data, datalists["lesions_only"], content,
                                                                thresholds, Path(busi_dir))
            print(f"[presence] rules on the test split: {json.dumps(record['threshold_rules'])}", flush=True)
            record["ungated_normal_test"] = json.loads((bundle / "eval" / "ungated_normal_test.json").read_text())

    for split in ("test", "normal_test"):
        items = content.get(split, [])
        if not items:
            continue
        pred_dir = bundle / "eval" / f"predictions_{split}"
        seconds = predict_split(bundle, data, datalists["lesions_only"], split, pred_dir, logs / f"predict_{split}.log")
        if split == "test":
            record.update(case_metrics(pred_dir, items, Path(busi_dir)))
            record["infer_seconds"] = round(seconds, 1)
        else:
            record.update(normal_image_findings(pred_dir))
    record["history"] = history(bundle)
    (bundle / "result.json").write_text(json.dumps(record, indent=1))
    summary = {k: round(record[k], 3) for k in ("dice", "auc", "accuracy", "normal_fpr") if isinstance(record.get(k), float)}
    print(f"[result] {summary}, {train_seconds / 60:.1f} train min; bundle {bundle}", flush=True)
    return record


def main(busi_dir: str, output_dir: str = "runs/recommended", profile: str = "cpu", seed: int = 0,
         variant: str = "recommended", overrides: Optional[Dict] = None, threshold_rule: str = "youden",
         min_lesion_recall: float = 0.95, limit_per_split: Optional[int] = None, clean: bool = False,
         data_dir: Optional[str] = None, evaluate_only: bool = False, tracking: str = "mlflow") -> None:
    """Train the recommended model into ``output_dir`` (a bundle folder) and print its test figures.

    ``clean`` removes an earlier run in ``output_dir`` first (its models, logs and evaluation);
    ``data_dir`` shares one BUSI conversion between runs (default ``<output_dir>/data``);
    ``evaluate_only`` re-chooses the presence threshold and re-evaluates a finished run.
    """
    out = Path(output_dir)
    if clean and evaluate_only:
        raise ValueError("clean and evaluate_only exclude each other: clean removes the models evaluate_only needs")
    if evaluate_only and not (out / "models" / "model.pt").is_file():
        raise FileNotFoundError(f"evaluate_only: no trained model at {out / 'models' / 'model.pt'}")
    if clean and out.exists():
        for part in ("models", "eval", "logs", "configs", "result.json", "train_record.json"):
            target = out / part
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    start = time.perf_counter()
    train_recommended(busi_dir, output_dir, profile, seed, variant, overrides, threshold_rule, min_lesion_recall,
                      limit_per_split, data_dir, evaluate_only, tracking)
    print(f"[done] {(time.perf_counter() - start) / 60:.1f} min in all", flush=True)


if __name__ == "__main__":
    fire.Fire(main)
