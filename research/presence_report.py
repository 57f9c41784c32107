"""How well a trained run's presence head separates lesion images from normal ones, on validation and test.

    python -m research.presence_report runs/recommended/normals_x2_seed0 [more run folders] --output presence.json

Reads the ungated predictions that ``research/train_recommended.py`` leaves in a run folder
(``eval/validation_presence``, ``eval/ungated_test``, ``eval/ungated_normal_test``: presence
probability and lesion pixels per image) and prints, per split, the presence AUC (lesion images
against normal images), the share of normal images whose mask has any lesion pixel before the
gate, and what the run's validation-chosen threshold and a few fixed thresholds would do. The
test figures are for reading a result, never for choosing the threshold (that is validation's job).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import fire
import numpy as np

FIXED_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _rows(pred_dir: Path) -> List[Dict[str, str]]:
    path = pred_dir / "predictions.csv"
    return list(csv.DictReader(open(path))) if path.is_file() else []


def presence_auc(lesion: Sequence[float], normal: Sequence[float]) -> Optional[float]:
    """Probability that a lesion image scores above a normal one (ties count half): the ROC AUC."""
    if not lesion or not normal:
        return None
    a, b = np.asarray(lesion, dtype=float)[:, None], np.asarray(normal, dtype=float)[None, :]
    return float((a > b).mean() + 0.5 * (a == b).mean())


def split_report(lesion_rows: List[Dict[str, str]], normal_rows: List[Dict[str, str]], thresholds: Sequence[float]) -> Dict:
    """Presence AUC, the normal images marked without the gate, and lesion recall / normal marks per threshold."""
    lesion_p = [float(r["lesion_prob"]) for r in lesion_rows]
    normal_p = [float(r["lesion_prob"]) for r in normal_rows]
    normal_marked = [int(r["lesion_pixels"]) > 0 for r in normal_rows]
    report: Dict = {"lesion_images": len(lesion_p), "normal_images": len(normal_p), "presence_auc": presence_auc(lesion_p, normal_p),
                    "normal_marked_ungated": int(sum(normal_marked)), "thresholds": {}}
    for t in thresholds:
        report["thresholds"][f"{t:.4g}"] = {
            "lesion_recall": float(np.mean([p >= t for p in lesion_p])) if lesion_p else None,
            "normal_marked": int(sum(m and p >= t for m, p in zip(normal_marked, normal_p))),
        }
    return report


def run_report(run: Path) -> Dict:
    """Validation and test reports of one run folder, at its chosen threshold and the fixed ones."""
    result = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
    chosen = result.get("presence_threshold")
    thresholds = sorted({*FIXED_THRESHOLDS, *([chosen] if chosen is not None else [])})
    validation = _rows(run / "eval" / "validation_presence")
    lesion_names = {Path(c["image"]).name for c in result.get("cases", [])}
    val_lesion = [r for r in validation if not _is_normal(r)]
    val_normal = [r for r in validation if _is_normal(r)]
    test_lesion = [r for r in _rows(run / "eval" / "ungated_test") if not lesion_names or Path(r["image"]).name in lesion_names]
    return {"run": run.name, "commit": result.get("commit"), "presence_threshold": chosen,
            "validation": split_report(val_lesion, val_normal, thresholds),
            "test": split_report(test_lesion, _rows(run / "eval" / "ungated_normal_test"), thresholds)}


def _is_normal(row: Dict[str, str]) -> bool:
    """BUSI's normal images are named ``normal_*`` by the converter (munet/dataset_tools/busi.py)."""
    return Path(row["image"]).name.startswith("normal")


def main(*runs: str, output: Optional[str] = None) -> None:
    """Print one table per run; with ``output``, also write all reports as JSON."""
    reports = [run_report(Path(r)) for r in runs]
    for rep in reports:
        print(f"\n{rep['run']} (commit {str(rep['commit'])[:12]}, chosen threshold {rep['presence_threshold']})")
        for split in ("validation", "test"):
            s = rep[split]
            auc = "n/a" if s["presence_auc"] is None else f"{s['presence_auc']:.3f}"
            print(f"  {split}: {s['lesion_images']} lesion / {s['normal_images']} normal images, presence AUC {auc}, "
                  f"normal images marked without the gate {s['normal_marked_ungated']}")
            for t, o in s["thresholds"].items():
                recall = "n/a" if o["lesion_recall"] is None else f"{o['lesion_recall']:.3f}"
                print(f"    threshold {t:>7}: lesion recall {recall}, normal images marked {o['normal_marked']}")
    if output:
        Path(output).write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    fire.Fire(main)
