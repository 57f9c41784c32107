"""``munet train``: a recipe trained into a bundle folder that serves as it is.

The bundle folder (``--output_dir``) gets ``configs/`` (the repository's, with the recipe's and
the command line's values written into its train.json: the folder's configs are then the one
record of how its model was built and is served), ``models/model.pt`` with its sidecar, and
``eval/``. Then the temperatures, the three-way presence thresholds and the review rule are
fitted on the validation split (never the test split; :mod:`munet.cli.validation_fit`) and
written into the folder's train.json.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from munet.cli.validation_fit import fit_on_validation
from munet.engines.bundle_folder import REPO_ROOT, run_bundle_command, workflow_argv
from munet.utils.code_version import code_version

__all__ = ["RECIPES", "recipe_values", "make_bundle_folder", "write_train_values", "train_bundle", "validation_presence_probs", "presence_summary"]

RECIPES_DIR = REPO_ROOT / "configs" / "recipes"
#: ``recommended`` is train.json itself; the others are overlays in configs/recipes/
RECIPES = ("recommended",) + tuple(sorted(p.stem for p in RECIPES_DIR.glob("*.json")))


def recipe_values(recipe: str) -> Dict[str, Any]:
    """The values ``recipe`` sets over train.json (none for ``recommended``)."""
    if recipe == "recommended":
        return {}
    path = RECIPES_DIR / f"{recipe}.json"
    if not path.is_file():
        raise ValueError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def make_bundle_folder(root: Path, values: Dict[str, Any]) -> Path:
    """``root/configs``: the repository's configs with ``values`` written into train.json."""
    target = root / "configs"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO_ROOT / "configs", target, ignore=shutil.ignore_patterns("recipes"))
    write_train_values(root, values)
    return target


def write_train_values(root: Path, values: Dict[str, Any]) -> None:
    """Write ``values`` into the bundle folder's ``configs/train.json`` (``group#key`` for a group's value)."""
    path = Path(root) / "configs" / "train.json"
    train = json.loads(path.read_text())
    for key, value in values.items():
        *parents, name = key.split("#")  # "loss#dice_batch" sets a value inside a group, as MONAI's overrides do
        node = train
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or name not in node:
            raise ValueError(f"{key}: not a setting of configs/train.json (its top-level keys, or group#key)")
        node[name] = value
    path.write_text(json.dumps(train, indent=4) + "\n")


def validation_presence_probs(root: Path, datalist: Path, dataset_dir: Path, out: Optional[Path] = None,
                              log: Optional[Path] = None, **values: Any) -> Tuple[List[float], List[float]]:
    """Presence probabilities of the validation split's lesion and normal images (in datalist order),
    predicted without the gate by the bundle folder ``root`` (plus ``values``, e.g. ``ensemble_bundles``)."""
    items: List[Dict] = json.loads(datalist.read_text()).get("validation", [])
    out = out or root / "eval" / "validation_presence"
    run_bundle_command(workflow_argv("inferring", root, datalist=str(datalist), dataset_dir=str(dataset_dir),
                                     input_split="validation", output_dir=str(out), write_dicom_seg=False,
                                     **{**values, "presence_threshold": None}), log or root / "logs" / "validation_presence.log")
    with open(out / "predictions.csv", newline="") as stream:
        probs = {Path(row["image"]).name: float(row["lesion_prob"]) for row in csv.DictReader(stream)}
    lesion_p = [probs[Path(i["image"]).name] for i in items if "class" in i]
    normal_p = [probs[Path(i["image"]).name] for i in items if "class" not in i]
    return lesion_p, normal_p


def presence_summary(lesion_p: List[float], normal_p: List[float], threshold: float) -> Dict[str, Any]:
    """How ``threshold`` splits the validation images: counts, lesion recall, normal-image specificity."""
    return {"lesion_images": len(lesion_p), "normal_images": len(normal_p),
            "lesion_recall": sum(p >= threshold for p in lesion_p) / len(lesion_p) if lesion_p else None,
            "normal_specificity": sum(p < threshold for p in normal_p) / len(normal_p) if normal_p else None}


def trained_on(precision: str) -> Dict[str, Any]:
    """What a training time was measured on (compute, resolved precision, threads): minutes from
    an AVX2 and an AVX512-BF16 CPU differ several-fold and mean nothing without it."""
    import torch

    from munet.cli.benchmark import capability
    from munet.engines.inferer import resolve_precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"compute": capability(), "precision": resolve_precision(precision, device), "threads": torch.get_num_threads()}


def folded_datalist(datalist: Path, root: Path, folds: Optional[int], fold: Optional[int]) -> Path:
    """``datalist`` split into folds (:func:`munet.dataset_tools.folds.fold_datalist`), written into the
    bundle folder ``root`` (the dataset folder may be read-only); its image paths keep their base."""
    from munet.dataset_tools.folds import fold_datalist

    if folds is None or fold is None:
        raise ValueError(f"give both folds and fold (got folds={folds!r}, fold={fold!r})")
    try:
        content = json.loads(datalist.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{datalist}: cannot be read as a JSON datalist ({err})") from err
    target = root / f"datalist_fold{fold}of{folds}.json"
    target.write_text(json.dumps(fold_datalist(content, folds, fold), indent=1))
    return target


def train_bundle(output_dir: str, dataset_dir: Optional[str] = None, datalist: Optional[str] = None,
                 busi_dir: Optional[str] = None, recipe: str = "recommended", seed: int = 0, tracking: str = "mlflow",
                 tracking_uri: Optional[str] = None, resume: bool = False,
                 limit_per_split: Optional[int] = None, log: Optional[Path] = None, fit_validation: bool = True,
                 interactive: bool = False, folds: Optional[int] = None, fold: Optional[int] = None,
                 **overrides: Any) -> Dict[str, Any]:
    """Train ``recipe`` into the bundle folder ``output_dir``; returns what was done (also printed).
    Then fit the temperatures, the three-way presence thresholds and the review rule on the
    validation split (:mod:`munet.cli.validation_fit`); ``fit_validation`` False leaves them to
    the caller (a study that records every rule). ``interactive``: train the click-guided model
    (configs/train_interactive.json, ``models/model_interactive.pt``) with the same recipe; the
    validation fit belongs to the automatic model and is not run. ``folds`` and ``fold``: train on
    fold ``fold``'s complement of training + validation pooled into ``folds`` folds and fit on that
    fold (:mod:`munet.dataset_tools.folds`), so k such bundles predict every training and
    validation image once, unseen."""
    if tracking not in ("mlflow", "none"):
        raise ValueError(f"unknown tracking {tracking!r}: choose mlflow or none")
    values = {**recipe_values(recipe), **overrides, "seed": seed}  # an unknown recipe is refused before any work
    root = Path(output_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if busi_dir:
        from munet.dataset_tools.busi import busi_with_normals

        data = Path(dataset_dir).resolve() if dataset_dir else root / "data"
        data_list = busi_with_normals(busi_dir, data, limit_per_split, folds, fold)
    elif dataset_dir:
        data = Path(dataset_dir).resolve()
        data_list = Path(datalist).resolve() if datalist else data / "datalist.json"
    else:
        raise ValueError("give --dataset_dir (a folder with datalist.json) or --busi_dir (the prepared BUSI folder)")
    if not data_list.is_file():
        raise FileNotFoundError(f"datalist not found: {data_list}")
    if folds is not None and not busi_dir:
        data_list = folded_datalist(data_list, root, folds, fold)
    make_bundle_folder(root, values)
    print(f"[munet train] recipe {recipe} -> {root} ({json.dumps(values)})", flush=True)
    run_values: Dict[str, Any] = {"dataset_dir": str(data), "datalist": str(data_list), "resume": resume}
    args = workflow_argv("training", root, ("train_interactive.json",) if interactive else (), **run_values)
    if tracking == "mlflow":
        args += ["--tracking", "mlflow"] + (["--tracking_uri", tracking_uri] if tracking_uri else [])
    seconds = run_bundle_command(args, log)
    weights = root / "models" / ("model_interactive.pt" if interactive else "model.pt")
    machine = trained_on(str(values.get("precision", "auto")))
    print(f"[munet train] trained in {seconds / 60:.1f} min ({machine['compute']}, {machine['precision']}, "
          f"{machine['threads']} threads): {weights}", flush=True)
    record: Dict[str, Any] = {"bundle": str(root), "recipe": recipe, "interactive": interactive, "train_seconds": round(seconds, 1),
                              "trained_on": machine, "code": code_version(), "datalist": str(data_list)}
    if folds is not None:
        record["fold"] = {"folds": int(folds), "fold": int(fold)}
    if fit_validation and not interactive:
        fit = fit_on_validation(root, data, data_list)
        record["validation_fit"] = {k: fit[k] for k in ("summary", "skipped")}
        if fit["values"]:
            write_train_values(root, fit["values"])
            record.update(fit["values"])
        print(f"[munet train] fitted on validation: {json.dumps(fit['values'])}", flush=True)
        for name, reason in fit["skipped"].items():
            print(f"[munet train] {name} left as it was: {reason}", flush=True)
    (root / ("train_interactive_record.json" if interactive else "train_record.json")).write_text(json.dumps(record, indent=1))
    return record
