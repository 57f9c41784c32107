"""What ``munet train`` fits on the validation split once the weights are trained.

One ungated pass of the served inference over the validation images (the evaluation workflow:
per image its Dice, presence and malignancy probabilities and view agreement), then:

1. ``class_temperature`` and ``presence_temperature`` (:mod:`munet.engines.calibration`), each
   only when a leave-one-out check says it carries over to images it was not fitted on;
2. ``presence_threshold``, below which the finding is "no lesion", on the calibrated presence
   probabilities (:func:`~munet.engines.presence_threshold.three_way_thresholds`);
3. ``presence_uncertain_below`` and ``review_rule`` together, under the review budget
   (:func:`~munet.engines.review.choose_review_settings`).

They are written into the bundle folder's ``configs/train.json``, like every trained value.
A validation split without normal images (or with fewer than two images of a class) leaves
the values it cannot fit as they are, and says so.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

from munet.engines.bundle_folder import run_bundle_command, workflow_argv
from munet.engines.calibration import apply_temperature, temperature_if_it_generalises
from munet.engines.presence_threshold import three_way_thresholds
from munet.engines.review import choose_review_settings, risk_coverage

__all__ = ["evaluate_split", "read_predictions", "calibrated", "fit_on_validation", "fit_on_rows", "fit_on_folds",
           "pooled_predictions", "fit_bundle_on_folds"]


def evaluate_split(root: Path, dataset_dir: Path, datalist: Path, split: str, out: Path, log: Optional[Path] = None,
                   **values: Any) -> List[Dict]:
    """Ungated, uncalibrated served predictions of ``split``, one dict per image (kept in ``out``:
    a second call reads them back)."""
    if not (out / "per_case.csv").is_file():
        run_bundle_command(workflow_argv("evaluating", root, dataset_dir=str(dataset_dir), datalist=str(datalist), eval_split=split,
                                         output_dir=str(out), presence_threshold=None, presence_uncertain_below=None,
                                         class_temperature=1.0, presence_temperature=1.0, write_dicom_seg=False, **values),
                           log or root / "logs" / f"evaluate_{split}.log")
    return read_predictions(out / "per_case.csv")


def read_predictions(table: Path) -> List[Dict]:
    """The rows of an evaluation's ``per_case.csv``: Dice, probabilities, class, lesion, marked, view agreement."""
    with open(table, newline="") as stream:
        rows = list(csv.DictReader(stream))

    def number(row: Dict, key: str) -> Optional[float]:
        return float(row[key]) if row.get(key) not in (None, "") else None

    return [{"image": Path(r["image"]).name, "dice": float(r["dice"]), "lesion_prob": number(r, "lesion_prob"),
             "prob_malignant": number(r, "prob_malignant"), "class": int(r["class"]), "lesion": int(r["lesion_pixels"]) > 0,
             "marked": int(r["pred_pixels"]) > 0, "view_agreement": number(r, "view_agreement")} for r in rows]


def calibrated(rows: List[Dict], class_temperature: float, presence_temperature: float) -> List[Dict]:
    """``rows`` with their probabilities under the temperatures."""
    def scaled(p: Optional[float], t: float) -> Optional[float]:
        return None if p is None else float(apply_temperature([p], t)[0])

    return [{**r, "lesion_prob": scaled(r["lesion_prob"], presence_temperature),
             "prob_malignant": scaled(r["prob_malignant"], class_temperature)} for r in rows]


def fit_on_validation(root: Path, dataset_dir: Path, datalist: Path, out: Optional[Path] = None, **values: Any) -> Dict[str, Any]:
    """Fit the values above on the validation split of ``datalist``; returns ``values`` (to write
    into the configs), ``summary`` (validation figures) and ``skipped`` (what could not be fitted)."""
    return fit_on_rows(evaluate_split(root, dataset_dir, datalist, "validation", out or root / "eval" / "validation_fit", **values))


def fit_on_folds(fold_roots: List[Path]) -> Dict[str, Any]:
    """The same fit on the pooled out-of-fold predictions of cross-validation bundles (each trained
    by ``munet train --folds k --fold i``, whose validation fit predicted its held-out fold).

    Raises ValueError when a bundle has no such predictions or an image is held out twice."""
    tables = []
    for root in fold_roots:
        table = Path(root) / "eval" / "validation_fit" / "per_case.csv"
        if not table.is_file():
            raise ValueError(f"{root}: no out-of-fold predictions ({table} is missing: was it trained with --folds and --fold?)")
        tables.append(table)
    return fit_on_rows(pooled_predictions(tables))


def pooled_predictions(tables: List[Path]) -> List[Dict]:
    """The rows of held-out ``per_case.csv`` tables together; raises ValueError when an image is in two."""
    pooled: List[Dict] = []
    names: List[str] = []
    for table in tables:
        pooled += read_predictions(table)
        with open(table, newline="") as stream:
            names += [row["image"] for row in csv.DictReader(stream)]  # full paths: DICOM folders repeat file names
    seen = Counter(names)
    twice = sorted(n for n, count in seen.items() if count > 1)
    if twice:
        raise ValueError(f"images held out by more than one fold: {', '.join(twice[:5])} (bundles of different fold splits?)")
    return pooled


def fit_bundle_on_folds(bundle: Path, fold_roots: List[Path]) -> Dict[str, Any]:
    """:func:`fit_on_folds` written into ``bundle``'s configs/train.json, recorded in
    ``eval/fold_fit.json`` (which folds, what was fitted and skipped). The fold bundles' records
    must name one split (same ``k``, each fold once); fewer than ``k`` folds is allowed and said."""
    import json

    from munet.cli.train import write_train_values

    splits = []
    for root in fold_roots:
        record_path = Path(root) / "train_record.json"
        fold = json.loads(record_path.read_text()).get("fold") if record_path.is_file() else None
        if not fold:
            raise ValueError(f"{root}: not a cross-validation bundle ({record_path} names no fold: train it with --folds and --fold)")
        splits.append((int(fold["folds"]), int(fold["fold"])))
    ks = sorted({k for k, _ in splits})
    if len(ks) > 1:
        raise ValueError(f"the fold bundles come from different splits (folds = {', '.join(map(str, ks))})")
    numbers = [i for _, i in splits]
    if len(set(numbers)) < len(numbers):
        raise ValueError(f"a fold is given twice: folds {sorted(numbers)}")
    fit = fit_on_folds(fold_roots)
    if fit["values"]:
        write_train_values(bundle, fit["values"])
    record = {"folds": [str(Path(r).resolve()) for r in fold_roots], "of": ks[0], "fold_numbers": sorted(numbers), **fit}
    (bundle / "eval").mkdir(parents=True, exist_ok=True)
    (bundle / "eval" / "fold_fit.json").write_text(json.dumps(record, indent=1))
    summary = fit["summary"]
    print(f"[munet fit] {len(fold_roots)} of {ks[0]} folds, {summary['lesion_images']} lesion and {summary['normal_images']} "
          f"normal held-out images -> {bundle / 'configs' / 'train.json'}: {json.dumps(fit['values'])}", flush=True)
    if len(fold_roots) < ks[0]:
        print(f"[munet fit] only {len(fold_roots)} of {ks[0]} folds: the fit rests on part of training + validation", flush=True)
    for name, reason in fit["skipped"].items():
        print(f"[munet fit] {name} left as it was: {reason}", flush=True)
    return record


def fit_on_rows(rows: List[Dict]) -> Dict[str, Any]:
    """The fit of :func:`fit_on_validation` on prediction rows (:func:`evaluate_split`'s)."""
    lesions, normals = [r for r in rows if r["class"] >= 0 and r["lesion"]], [r for r in rows if not r["lesion"]]
    fitted: Dict[str, Any] = {}
    skipped: Dict[str, str] = {}
    notes: Dict[str, str] = {}
    try:
        t, notes["class_temperature"] = temperature_if_it_generalises([r["prob_malignant"] for r in lesions], [r["class"] for r in lesions])
        fitted["class_temperature"] = round(t, 4)
    except (ValueError, TypeError) as err:
        skipped["class_temperature"] = str(err)
    has_presence = all(r["lesion_prob"] is not None for r in rows) and rows
    if not has_presence:
        skipped["presence"] = "the network has no presence head"
    elif len(normals) < 2 or len(lesions) < 2:
        skipped["presence"] = f"the validation split has {len(lesions)} lesion and {len(normals)} normal images (two of each needed)"
    else:
        t, notes["presence_temperature"] = temperature_if_it_generalises([r["lesion_prob"] for r in rows], [int(r["lesion"]) for r in rows])
        fitted["presence_temperature"] = round(t, 4)
    t_class, t_presence = fitted.get("class_temperature", 1.0), fitted.get("presence_temperature", 1.0)
    cal_lesions, cal_normals = calibrated(lesions, t_class, t_presence), calibrated(normals, t_class, t_presence)
    summary: Dict[str, Any] = {"lesion_images": len(lesions), "normal_images": len(normals), "temperatures": notes}
    if "presence_temperature" in fitted:
        low, _ = three_way_thresholds([r["lesion_prob"] for r in cal_lesions], [r["lesion_prob"] for r in cal_normals])
        high, fitted["review_rule"] = choose_review_settings(cal_lesions, cal_normals, low)
        fitted.update(presence_threshold=round(low, 6), presence_uncertain_below=round(high, 6))
        summary["review"] = risk_coverage(cal_lesions, cal_normals, (low, high), fitted["review_rule"])
    return {"values": fitted, "summary": summary, "skipped": skipped}
