"""Choose the lesion-presence threshold of an ensemble of bundles on the validation split.

    python scripts/ensemble_threshold.py --bundles "['runs/seed0','runs/seed1']" \
        --dataset_dir runs/seed0/data --datalist runs/seed0/data/datalist_with_normals_x2.json

An ensemble averages its members' presence probabilities (bundle/engines/ensemble.py), and
inference serves it with the ``presence_threshold`` of the bundle whose inference.json runs (the
first member), which was chosen for that member's probabilities, not for the average: measured
on BUSI, two bf16 seeds served with seed 0's threshold marked 7 of 27 normal test images
(docs/results.md, Recommended model). This script predicts the datalist's validation split (lesion
and normal images) with the ensemble, without the gate, picks the threshold by each rule of
bundle/engines/presence_threshold.py, and prints the inference command that serves the ensemble
with it. It writes nothing into the member bundles: each keeps its own threshold for serving alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import fire

from bundle.engines.presence_threshold import THRESHOLD_RULES
from train_recommended import validation_presence_thresholds


def ensemble_threshold(bundles: Sequence[str], dataset_dir: str, datalist: str, output_dir: Optional[str] = None,
                       threshold_rule: str = "youden", min_lesion_recall: float = 0.95) -> Dict:
    """The thresholds by rule and the validation figures at ``threshold_rule``'s; also ``<output_dir>/ensemble_threshold.json``."""
    if threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold_rule {threshold_rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    roots = [Path(b).resolve() for b in bundles]
    if len(roots) < 2:
        raise ValueError(f"an ensemble needs at least two bundles, got {list(bundles)}")
    for root in roots:
        if not (root / "models" / "model.pt").is_file() or not (root / "configs" / "inference.json").is_file():
            raise FileNotFoundError(f"{root} is not a trained bundle folder (configs/inference.json and models/model.pt)")
    if not json.loads(Path(datalist).read_text()).get("validation"):
        raise ValueError(f"{datalist} has no validation split to choose the threshold on")
    out = Path(output_dir).resolve() if output_dir else roots[0] / "eval" / "ensemble_threshold"
    thresholds, summary = validation_presence_thresholds(
        roots[0], Path(dataset_dir).resolve(), Path(datalist).resolve(), out / "validation", out / "validation.log",
        threshold_rule, min_lesion_recall, ensemble_bundles=[str(r) for r in roots])
    result = {"bundles": [str(r) for r in roots], "thresholds": thresholds, "rule": threshold_rule,
              "min_lesion_recall": min_lesion_recall, "presence_threshold": thresholds[threshold_rule],
              "validation": {k: v for k, v in summary.items() if not k.endswith("_probs")}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble_threshold.json").write_text(json.dumps({**result, "validation_probs": summary}, indent=1))
    return result


def main(bundles: Sequence[str], dataset_dir: str, datalist: str, output_dir: Optional[str] = None,
         threshold_rule: str = "youden", min_lesion_recall: float = 0.95) -> None:
    """Print the ensemble's presence threshold and the command that serves the ensemble with it."""
    result = ensemble_threshold(bundles, dataset_dir, datalist, output_dir, threshold_rule, min_lesion_recall)
    first = result["bundles"][0]
    print(f"[threshold] {threshold_rule}: {result['presence_threshold']:.4f} (all rules: {json.dumps(result['thresholds'])}); "
          f"validation: {json.dumps(result['validation'])}")
    print(f"[serve] python -m monai.bundle run inferring --meta_file {first}/configs/metadata.json "
          f"--config_file {first}/configs/inference.json --logging_file {first}/configs/logging.conf --bundle_root {first} "
          f"--ensemble_bundles '{json.dumps(result['bundles'])}' --presence_threshold {result['presence_threshold']:.6f} "
          "--dataset_dir DATA")


if __name__ == "__main__":
    fire.Fire(main)
