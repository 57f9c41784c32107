"""What the BUSI study (make_results.py) and the recommended recipe (train_recommended.py) share:
bundle folders, metrics computed from written predictions, run records, run history.

Metrics are computed here from the masks and class probabilities that ``inference.json`` wrote,
the same way for every model, so that single models, ensembles and presence-gated models compare
on one footing.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from munet.cli.train import make_bundle_folder
from munet.engines.bundle_folder import REPO_ROOT as REPO
from munet.engines.bundle_folder import override_args as cli_args
from munet.engines.metrics import classification_metrics

__all__ = ["UNCHECKED", "fmt_mean_std", "cli_args", "case_metrics", "normal_image_findings", "slug", "history",
           "write_bundle_configs", "git_commit", "relative_to"]

#: inference without the check that weights and configs match: derived rows serve trained weights
#: with another parameter-free setting (a fusion rule, test-time scales) on purpose
UNCHECKED = {"initialize": ["$munet.errors.install_excepthook()", "$monai.utils.set_determinism(seed=0)"]}


def relative_to(path: str, root: Optional[Path]) -> str:
    """``path`` relative to ``root`` when it lies inside it (run records must not hold this machine's paths)."""
    if root is None:
        return path
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return path


def case_metrics(pred_dir: Path, items: List[Dict], data_root: Optional[Path] = None) -> Dict:
    """Dice per case (from the written masks) and the class figures (from predictions.csv), the
    latter over the cases with a class call (``classified``: none is made on "no lesion").

    Case image paths are recorded relative to ``data_root``.
    """
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(pred_dir / "predictions.csv"))}
    dices, probs, labels, cases = [], [], [], []
    for item in items:
        row = rows[Path(item["image"]).name]
        pred = np.asarray(Image.open(row["mask"])) > 0
        truth = np.asarray(Image.open(item["label"])) > 0
        dice = 1.0 if not pred.any() and not truth.any() else 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
        dices.append(float(dice))
        prob = float(row["prob_malignant"]) if row.get("prob_malignant") else None  # no class call on "no lesion"
        if prob is not None:
            probs.append(prob)
            labels.append(int(item["class"]))
        case = {"image": relative_to(item["image"], data_root), "dice": float(dice), "prob_malignant": prob, "class": int(item["class"]),
                "finding": row.get("finding", "")}
        if row.get("lesion_prob"):
            case["lesion_prob"] = float(row["lesion_prob"])
        cases.append(case)
    return {"dice": float(np.mean(dices)), **classification_metrics(probs, labels), "classified": len(probs), "cases": cases}


def normal_image_findings(pred_dir: Path) -> Dict[str, float]:
    """On lesion-free images: the share with any lesion pixel (FPR) and the mean share of pixels marked."""
    marked = [(np.asarray(Image.open(r["mask"])) > 0).mean() for r in csv.DictReader(open(pred_dir / "predictions.csv"))]
    if not marked:
        return {"normal_fpr": float("nan"), "normal_area": float("nan")}
    return {"normal_fpr": float(np.mean([m > 0 for m in marked])), "normal_area": float(np.mean(marked))}


def fmt_mean_std(values, digits: int = 3) -> str:
    """``mean ± std`` (sample std) of the finite values, the value alone for one, ``n/a`` for none."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def slug(name: str) -> str:
    """A file-name form of a row name."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def history(root: Path) -> Dict[str, List[float]]:
    """Per-epoch validation Dice/AUC and mean training loss from the run's local MLflow store."""
    from mlflow.tracking import MlflowClient
    from monai.utils import path_to_sqlite_uri

    store = root / "eval" / "mlruns.db"
    if not store.is_file():
        return {}
    client = MlflowClient(tracking_uri=path_to_sqlite_uri(str(store)))
    (run,) = client.search_runs([client.get_experiment_by_name("monai_experiment").experiment_id])
    result: Dict[str, List[float]] = {}
    for key in ("val_dice", "val_auc"):
        result[key] = [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    if losses:
        per_epoch = max(1, len(losses) // max(1, len(result.get("val_dice", [])) or 1))
        values = [m.value for m in sorted(losses, key=lambda m: m.step)]
        result["train_loss"] = [float(np.mean(values[i : i + per_epoch])) for i in range(0, len(values), per_epoch)]
    return result


def write_bundle_configs(root: Path, values: Dict) -> None:
    """Make ``root`` a bundle folder: the repository's configs with ``values`` written into train.json
    (inference.json and evaluate.json merge over it)."""
    make_bundle_folder(Path(root), values)


def git_commit() -> str:
    """The commit of the code that runs now, with ``-dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + ("-dirty" if dirty else "")
