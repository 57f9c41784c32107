"""Compare test-time inference settings of trained runs on the validation split (never the test split).

    python -m research.inference_choice runs/recommended/recommended_seed0 [more run folders] \
        --data_dir runs/recommended/data --output inference_choice.json

For each run folder made by ``research/train_recommended.py`` and each setting in ``SETTINGS``
(single scale; the paper's multi-scale inference at 192/224/256 px), predicts the validation split
of the run's datalist without the presence gate and prints the lesion Dice on the validation
lesion images, the malignancy AUC and the share of validation normal images with any lesion pixel.
The recipe's ``inference_scales`` is chosen from these figures, so the test split stays unseen
until the chosen model is evaluated.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import fire
import numpy as np
import torch
from monai.metrics import compute_roc_auc

from munet.engines.presence_threshold import choose_presence_threshold, gated_outcome
from research.study_common import case_metrics, git_commit
from research.train_recommended import predict_split

#: setting name -> inference values given to inference.json (flips as the run's bundle says). Each names every
#: value it differs in: a bundle of the fourth recipe serves ``inference_scale_image_heads: false``, so the paper's
#: multi-scale setting must ask for the image-level heads over scales, or it silently measures the bundle's own.
SETTINGS: Dict[str, Dict] = {
    "single scale": {"inference_scales": [1.0]},
    "multi-scale 192/224/256 px": {"inference_scales": [192 / 224, 1.0, 256 / 224], "inference_scale_image_heads": True},
    "multi-scale masks, class and presence at 224 px": {"inference_scales": [192 / 224, 1.0, 256 / 224],
                                                         "inference_scale_image_heads": False},
}


def validation_figures(run: Path, data_dir: Path, datalist: Path, values: Dict, work: Path) -> Dict:
    """Validation lesion Dice, AUC and normal-image marks of ``run`` predicted with ``values`` (no presence gate)."""
    content = json.loads(datalist.read_text())
    items = content["validation"]
    lesions = [i for i in items if "class" in i]
    normals = [i for i in items if "class" not in i]
    pred_dir = work / "validation"
    seconds = predict_split(run, data_dir, datalist, "validation", pred_dir, work / "validation.log", presence_threshold=None, **values)
    figures = case_metrics(pred_dir, lesions)
    cases = figures.pop("cases")
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(pred_dir / "predictions.csv"))}
    marked = [int(rows[Path(i["image"]).name]["lesion_pixels"]) > 0 for i in normals]
    presence = presence_figures([float(rows[Path(i["image"]).name]["lesion_prob"]) for i in lesions],
                                [float(rows[Path(i["image"]).name]["lesion_prob"]) for i in normals],
                                [c["dice"] for c in cases], marked)
    return {**figures, "normal_marked": int(sum(marked)), "normal_images": len(normals), "lesion_images": len(lesions),
            **presence, "infer_seconds": round(seconds, 1)}


def presence_figures(lesion_probs: List[float], normal_probs: List[float], lesion_dice: List[float],
                     normal_marked: List[bool]) -> Dict:
    """How well the presence probabilities separate validation lesion from normal images: their AUC, and the
    Youden threshold chosen on them with its lesion recall, normal specificity and gated lesion Dice.

    This is what the presence averaging (over scales, or at the trained size only) is chosen by:
    the served model gates its masks at a threshold chosen exactly this way."""
    if not lesion_probs or not normal_probs or any(np.isnan(lesion_probs + normal_probs)):
        return {}
    labels = [1] * len(lesion_probs) + [0] * len(normal_probs)
    auc = float(compute_roc_auc(torch.tensor(lesion_probs + normal_probs), torch.tensor(labels)))
    threshold = choose_presence_threshold(lesion_probs, normal_probs, "youden")
    gated = gated_outcome(lesion_dice, lesion_probs, normal_marked, normal_probs, threshold)
    return {"presence_auc": auc, "presence_threshold": threshold,
            "lesion_recall": float(np.mean(np.asarray(lesion_probs) >= threshold)),
            "normal_specificity": float(np.mean(np.asarray(normal_probs) < threshold)),
            "gated_dice": gated["dice"], "gated_normal_fpr": gated["normal_fpr"]}


def main(*runs: str, data_dir: str, output: str = "", settings: Sequence[str] = tuple(SETTINGS), datalist: str = "") -> Dict:
    """Print (and write to ``output``) the validation figures of every run under every setting.

    The datalist is the one each run trained with (``data`` in its result.json), or ``datalist``
    for a run still being evaluated."""
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown settings {unknown}: choose from {', '.join(SETTINGS)}")
    report: Dict[str, Dict] = {}
    for run in runs:
        bundle = Path(run).resolve()
        if datalist:
            run_datalist = Path(datalist).resolve()
        else:
            run_datalist = Path(data_dir).resolve() / Path(json.loads((bundle / "result.json").read_text())["data"]).name
        report[bundle.name] = {}
        for name in settings:
            with tempfile.TemporaryDirectory() as work:
                figures = validation_figures(bundle, Path(data_dir).resolve(), run_datalist, SETTINGS[name], Path(work))
            report[bundle.name][name] = {"values": SETTINGS[name], **figures}
            presence = (f"; presence AUC {figures['presence_auc']:.3f}, Youden threshold {figures['presence_threshold']:.3f}: "
                        f"lesion recall {figures['lesion_recall']:.3f}, normal specificity {figures['normal_specificity']:.3f}, "
                        f"gated Dice {figures['gated_dice']:.3f}") if "presence_auc" in figures else ""
            print(f"{bundle.name} | {name}: Dice {figures['dice']:.3f}, AUC {figures['auc']:.3f}, normal images marked "
                  f"{figures['normal_marked']}/{figures['normal_images']}{presence} ({figures['infer_seconds']:.0f} s)", flush=True)
    for name in settings:
        dice: List[float] = [report[r][name]["dice"] for r in report]
        print(f"mean over {len(dice)} runs | {name}: Dice {np.mean(dice):.3f}", flush=True)
    if output:
        made_by = {"made_by": f"python -m research.inference_choice {' '.join(Path(r).name for r in runs)} --settings {list(settings)} "
                              f"at commit {git_commit()}", "split": "validation (no presence gate; each run's own datalist)"}
        Path(output).write_text(json.dumps({**made_by, **report}, indent=1) + "\n")
    return report


if __name__ == "__main__":
    fire.Fire(main)
