"""Five-fold cross-validation of the recommended model on BUSI: out-of-fold fit, measured on the test split.

    python -m research.cross_validation train --busi_dir ../shared/data/busi --runs runs/cv \
        --results docs/results/runs/cv_seed0
    python -m research.cross_validation report --results docs/results/runs/cv_seed0 \
        --output docs/results/trust_cv_seed0.json

Why: the values ``munet train`` fits after training (temperatures, three-way presence thresholds,
review rule) rested on 55 lesion and 13 normal validation images, too few to place a threshold.

``train`` runs ``munet train --folds k --fold i`` for each fold (skipping a finished fold,
resuming an interrupted one), then predicts the test split and its normals with each fold's
model, ungated and uncalibrated. It copies each fold's predictions (``per_case.csv``: held-out
fold, test, test normals) and its training record into ``--results``: small files, committed, so
``report`` runs without the weights.

``report`` pools the held-out predictions (every training and validation image once, unseen),
fits the same values on them (:func:`munet.cli.validation_fit.fit_on_rows`) and measures each
fold's model on the test split with them, as ``research.trust_report`` does for one model fitted
on its own validation split (same JSON per fold; ``research.trust_table`` renders both). It also
judges each fold's held-out images by the values fitted on the other folds' (``cross_fitted``):
the share of lesion images called "no lesion" and the ECE on about 440 lesion images instead of
the test split's 110, where a 2 % share and an ECE of 0.05 can be told apart from chance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import fire

from munet.cli.validation_fit import calibrated, evaluate_split, fit_on_rows, pooled_predictions, read_predictions
from munet.engines.calibration import fit_logit_shift
from munet.engines.metrics import classification_metrics
from research.study_common import git_commit
from research.trust_report import class_map, clopper_pearson, ece_with_floor, finite_json, measure_on_test, outcome

#: per fold, what ``train`` keeps: the name in ``--results`` and the evaluation folder it comes from
KEPT = {"heldout.csv": "validation_fit", "test.csv": "cv_test", "normal_test.csv": "cv_normal_test"}


def train(busi_dir: str, runs: str = "runs/cv", results: str = "docs/results/runs/cv_seed0", folds: int = 5, seed: int = 0,
          **overrides: Any) -> None:
    """Train and predict every fold in turn (see the module doc); ``overrides`` go to ``munet train``."""
    from munet.cli.train import train_bundle

    runs_dir, out = Path(runs).resolve(), Path(results).resolve()
    data = runs_dir / "data"
    for fold in range(folds):
        root = runs_dir / f"fold{fold}"
        if not (root / "train_record.json").is_file():
            print(f"[cross_validation] fold {fold} of {folds}: training into {root}", flush=True)
            train_bundle(str(root), str(data), None, busi_dir, "recommended", seed, "none", None, resume=True,
                         folds=folds, fold=fold, **overrides)
        for split, folder in (("test", "cv_test"), ("normal_test", "cv_normal_test")):
            evaluate_split(root, data, data / "datalist.json", split, root / "eval" / folder)
        kept = out / f"fold{fold}"
        kept.mkdir(parents=True, exist_ok=True)
        keep_fold(root, kept, busi_dir)
        print(f"[cross_validation] fold {fold}: predictions kept in {kept}", flush=True)


def keep_fold(root: Path, kept: Path, busi_dir: str) -> None:
    """Copy a fold bundle's predictions and record into ``kept``, with image paths relative to the
    BUSI folder and the bundle's own paths reduced to its name (records must not hold this machine's paths)."""
    base = str(Path(busi_dir).resolve()) + "/"
    for name, folder in KEPT.items():
        text = (root / "eval" / folder / "per_case.csv").read_text()
        (kept / name).write_text(text.replace(base, ""))
    record = json.loads((root / "train_record.json").read_text())
    record["bundle"], record["datalist"] = root.name, Path(record.get("datalist", "")).name
    (kept / "train_record.json").write_text(json.dumps(record, indent=1))


def fold_folders(results: Path) -> List[Path]:
    """The fold folders of ``results`` in order; raises ValueError when there are none or one is incomplete."""
    found = sorted((p for p in results.glob("fold*") if p.is_dir()), key=lambda p: int(p.name[4:]))
    if not found:
        raise ValueError(f"{results}: no fold folders (run the train command first)")
    for folder in found:
        missing = [name for name in (*KEPT, "train_record.json") if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"{folder}: {', '.join(missing)} missing (fold not finished)")
    return found


def pooled_heldout(folders: List[Path]) -> List[Dict]:
    """Every fold's held-out predictions; raises ValueError when an image is held out twice."""
    return pooled_predictions([folder / "heldout.csv" for folder in folders])


def cross_fitted(folders: List[Path]) -> Dict[str, Any]:
    """Each fold's held-out images judged by the values fitted on the other folds' held-out images,
    pooled: lesion images called "no lesion" with a 95 % interval, FPR on normals and malignancy
    ECE before and after (with floors), on every training and validation image, unseen by both the
    model and the fit (four times the test split's lesion images)."""
    hidden = lesion_images = marked = normal_images = 0
    before: List[float] = []
    after: List[float] = []
    shifted: List[float] = []
    labels: List[int] = []
    per_fold = []
    for folder in folders:
        others = [row for f in folders if f != folder for row in read_predictions(f / "heldout.csv")]
        values = fit_on_rows(others)["values"]
        own = read_predictions(folder / "heldout.csv")
        t_class, t_presence = values.get("class_temperature", 1.0), values.get("presence_temperature", 1.0)
        lesions = [r for r in own if r["lesion"] and r["class"] >= 0]
        fold_normals = [r for r in own if not r["lesion"]]
        judged = outcome(calibrated(lesions, t_class, t_presence), calibrated(fold_normals, t_class, t_presence),
                         (values["presence_threshold"], values["presence_uncertain_below"]))
        per_fold.append({"fold": folder.name, "values": values,
                         **{k: judged[k] for k in ("called_no_lesion", "lesion_images", "normal_fpr", "normal_images")}})
        hidden, lesion_images = hidden + judged["called_no_lesion"], lesion_images + len(lesions)
        marked, normal_images = marked + round(judged["normal_fpr"] * len(fold_normals)), normal_images + len(fold_normals)
        before += [r["prob_malignant"] for r in lesions]
        after += class_map([r["prob_malignant"] for r in lesions], values)
        other_lesions = [r for r in others if r["lesion"] and r["class"] >= 0]
        shift = fit_logit_shift(class_map([r["prob_malignant"] for r in other_lesions], values), [r["class"] for r in other_lesions])
        shifted += class_map([r["prob_malignant"] for r in lesions], values, shift)
        labels += [r["class"] for r in lesions]
    low, high = clopper_pearson(hidden, lesion_images)
    return {"lesion_images": lesion_images, "called_no_lesion": hidden, "called_no_lesion_share": hidden / lesion_images,
            "called_no_lesion_ci95": [round(low, 4), round(high, 4)], "normal_images": normal_images, "normals_marked": marked,
            "normal_fpr": marked / normal_images if normal_images else None,
            "ece_malignancy_before": ece_with_floor(before, labels), "ece_malignancy_after": ece_with_floor(after, labels),
            "ece_malignancy_logit_shift": ece_with_floor(shifted, labels), "folds": per_fold}


def _measured(values: Dict, heldout: List[Dict], test: List[Dict], normals: List[Dict]) -> Dict[str, Any]:
    """:func:`measure_on_test` without its per-image probabilities (kept in the CSVs and reports already)."""
    return {k: v for k, v in measure_on_test(values, heldout, test, normals).items() if k != "probabilities"}


def logit_shift_on_test(shift: float, values: Dict, test: List[Dict]) -> Dict[str, Any]:
    """What the log-odds ``shift`` (fitted on the pooled held-out images) would do on ``test``: ECE
    with its floor, and sensitivity, specificity and accuracy of the class call at 0.5 before and after."""
    labels = [r["class"] for r in test]
    served, moved = class_map([r["prob_malignant"] for r in test], values), class_map([r["prob_malignant"] for r in test], values, shift)
    keep = ("sensitivity", "specificity", "accuracy")
    return {"shift": shift, "ece_served": ece_with_floor(served, labels), "ece_shifted": ece_with_floor(moved, labels),
            "served": {k: classification_metrics(served, labels)[k] for k in keep},
            "shifted": {k: classification_metrics(moved, labels)[k] for k in keep}}


def report(results: str = "docs/results/runs/cv_seed0", output: str = "docs/results/trust_cv_seed0.json",
           apply_to: Any = "", labels: Any = "") -> Dict[str, Any]:
    """Fit on the pooled held-out predictions; measure each fold's model on the test split (module doc).

    ``apply_to``: research.trust_report JSON files (comma-separated) of models trained on the whole
    training split, whose stored test predictions are judged with the pooled values too (``labels``
    name them): what serving such a model with the cross-validated values would give.
    Writes ``output`` (one trust report per fold under ``folds``, per applied model under
    ``whole_split``, the pooled fit and the cross-fitted table) and prints a summary."""
    folders = fold_folders(Path(results))
    if len(folders) < 2:
        raise ValueError(f"{results}: {len(folders)} finished fold; the cross-fitted table needs two or more")
    heldout = pooled_heldout(folders)
    fit = fit_on_rows(heldout)
    lesions = [r for r in heldout if r["lesion"] and r["class"] >= 0]
    shift = fit_logit_shift(class_map([r["prob_malignant"] for r in lesions], fit["values"]), [r["class"] for r in lesions])
    per_fold = []
    for folder in folders:
        record = json.loads((folder / "train_record.json").read_text())
        own = fit_on_rows(read_predictions(folder / "heldout.csv"))
        test, normals = read_predictions(folder / "test.csv"), read_predictions(folder / "normal_test.csv")
        per_fold.append({"name": folder.name, "trained_by": record.get("code", {}).get("commit", "unknown"),
                         "trained_on": record.get("trained_on"), "train_seconds": record.get("train_seconds"),
                         "values_own_fold": own["values"], **_measured(fit["values"], heldout, test, normals),
                         "logit_shift": logit_shift_on_test(shift, fit["values"], test)})
    whole = []
    for path, label in zip(_items(apply_to), _items(labels) if labels else _items(apply_to)):
        stored = json.loads(Path(path).read_text())
        probabilities = stored["probabilities"]
        whole.append({"name": label, "report": path, "trained_by": stored.get("trained_by"),
                      **_measured(fit["values"], heldout, probabilities["test"], probabilities["normal_test"]),
                      "logit_shift": logit_shift_on_test(shift, fit["values"], probabilities["test"])})
    out = {"evaluated_by": git_commit(), "heldout_images": len(heldout), "values": fit["values"],
           "validation": fit["summary"], "skipped": fit["skipped"], "cross_fitted": cross_fitted(folders), "folds": per_fold,
           "whole_split": whole}
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_json(out), indent=1))
    for row in per_fold + whole:
        three = row["test"]["three_way"]
        print(f"{row['name']}: called no lesion {three['called_no_lesion']}/{three['lesion_images']}, "
              f"FPR on normals {three['normal_fpr']:.3f}, served Dice {three['served_dice']:.3f} "
              f"(no gate {three['dice_without_gate']:.3f}), ECE malignancy "
              f"{row['ece_test']['malignancy_before']:.3f} -> {row['ece_test']['malignancy_after']:.3f}", flush=True)
    print(f"pooled fit on {len(heldout)} held-out images: {json.dumps(fit['values'])}", flush=True)
    cross = out["cross_fitted"]
    print(f"cross-fitted on the held-out images: called no lesion {cross['called_no_lesion']}/{cross['lesion_images']} "
          f"(95 % {cross['called_no_lesion_ci95']}), FPR on normals {cross['normal_fpr']:.3f} ({cross['normals_marked']}/"
          f"{cross['normal_images']}), ECE malignancy {cross['ece_malignancy_before']['ece']:.3f} -> "
          f"{cross['ece_malignancy_after']['ece']:.3f}, with a logit shift {cross['ece_malignancy_logit_shift']['ece']:.3f}", flush=True)
    for row in per_fold + whole:
        moved = row["logit_shift"]
        print(f"{row['name']}: logit shift {moved['shift']:+.2f}: ECE {moved['ece_served']['ece']:.3f} -> {moved['ece_shifted']['ece']:.3f}, "
              f"sensitivity {moved['served']['sensitivity']:.3f} -> {moved['shifted']['sensitivity']:.3f}, specificity "
              f"{moved['served']['specificity']:.3f} -> {moved['shifted']['specificity']:.3f}", flush=True)
    return out


def _items(value: Any) -> List[str]:
    """A comma-separated string (or the tuple fire makes of it) as a list of non-empty strings."""
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def report_cli(results: str = "docs/results/runs/cv_seed0", output: str = "docs/results/trust_cv_seed0.json",
               apply_to: Any = "", labels: Any = "") -> None:
    """:func:`report`, printing its summary only."""
    report(results, output, apply_to, labels)


if __name__ == "__main__":
    fire.Fire({"train": train, "report": report_cli})
