"""Choose the lesion-presence threshold of an ensemble of bundles on the validation split.

    python -m research.ensemble_threshold --bundles "['runs/seed0','runs/seed1']" \
        --dataset_dir runs/seed0/data --datalist runs/seed0/data/datalist_with_normals_x2.json

An ensemble averages its members' presence probabilities (munet/engines/ensemble.py), and
inference serves it with the ``presence_threshold`` of the bundle whose inference.json runs (the
first member), which was chosen for that member's probabilities, not for the average: measured
on BUSI, two bf16 seeds served with seed 0's threshold marked 7 of 27 normal test images
(docs/results.md, Recommended model). This script predicts the datalist's validation split (lesion
and normal images) with the ensemble, without the gate, picks the threshold by each rule of
munet/engines/presence_threshold.py, and prints the inference command that serves the ensemble
with it. The members' configs are not changed (each keeps its own threshold for serving alone);
the validation predictions and ``ensemble_threshold.json`` go to ``--output_dir`` (default
``<first bundle>/eval/ensemble_threshold``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import fire

from munet.engines.bundle_folder import read_bundle_config
from munet.engines.presence_threshold import THRESHOLD_RULES
from research.train_recommended import validation_presence_thresholds


def _check_members(roots: Sequence[Path]) -> None:
    """Each member is a trained bundle folder whose network has a presence head."""
    for root in roots:
        if not (root / "models" / "model.pt").is_file() or not (root / "configs" / "inference.json").is_file():
            raise FileNotFoundError(f"{root} is not a trained bundle folder (configs/inference.json and models/model.pt)")
        if not read_bundle_config(root).get_parsed_content("presence_head"):
            raise ValueError(f"{root} has no lesion-presence head (presence_head is false in its configs/train.json): "
                             "an ensemble without one has no presence threshold to choose")


def _check_validation(datalist: Path) -> None:
    """The validation split holds lesion images and normal (lesion-free, no class) images."""
    validation = json.loads(Path(datalist).read_text()).get("validation") or []
    normals = [item for item in validation if "class" not in item]
    if not validation or not normals or len(normals) == len(validation):
        raise ValueError(f"{datalist}: the validation split needs lesion images and normal images (entries without a "
                         f"class) to choose a presence threshold on; it has {len(validation) - len(normals)} lesion and "
                         f"{len(normals)} normal images")


def ensemble_threshold(bundles: Union[str, Sequence[str]], dataset_dir: str, datalist: str, output_dir: Optional[str] = None,
                       threshold_rule: str = "youden", min_lesion_recall: float = 0.95,
                       weights: Optional[Sequence[float]] = None) -> Dict:
    """The thresholds by rule and the validation figures at ``threshold_rule``'s; also ``<output_dir>/ensemble_threshold.json``.

    ``weights`` are the ensemble weights it will be served with (``--ensemble_weights``; equal by default).
    """
    if threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold_rule {threshold_rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    roots = [Path(b).resolve() for b in ([bundles] if isinstance(bundles, str) else bundles)]
    if len(roots) < 2:
        raise ValueError(f"an ensemble needs at least two bundles, got {[str(r) for r in roots]}")
    if weights is not None and len(weights) != len(roots):
        raise ValueError(f"{len(roots)} bundles but {len(weights)} weights")
    _check_members(roots)
    _check_validation(Path(datalist))
    out = Path(output_dir).resolve() if output_dir else roots[0] / "eval" / "ensemble_threshold"
    served = {"ensemble_bundles": [str(r) for r in roots]}
    if weights is not None:
        served["ensemble_weights"] = [float(w) for w in weights]
    thresholds, summary = validation_presence_thresholds(
        roots[0], Path(dataset_dir).resolve(), Path(datalist).resolve(), out / "validation", out / "validation.log",
        threshold_rule, min_lesion_recall, **served)
    result = {"bundles": [str(r) for r in roots], "weights": served.get("ensemble_weights"), "thresholds": thresholds,
              "rule": threshold_rule, "min_lesion_recall": min_lesion_recall, "presence_threshold": thresholds[threshold_rule],
              "validation": {k: v for k, v in summary.items() if not k.endswith("_probs")}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble_threshold.json").write_text(json.dumps({**result, "validation_probs": summary}, indent=1))
    return result


def main(bundles: Sequence[str], dataset_dir: str, datalist: str, output_dir: Optional[str] = None,
         threshold_rule: str = "youden", min_lesion_recall: float = 0.95, weights: Optional[Sequence[float]] = None) -> None:
    """Print the ensemble's presence threshold and the command that serves the ensemble with it."""
    result = ensemble_threshold(bundles, dataset_dir, datalist, output_dir, threshold_rule, min_lesion_recall, weights)
    served_weights = f"--ensemble_weights '{json.dumps(result['weights'])}' " if result["weights"] else ""
    first = result["bundles"][0]
    print(f"[threshold] {threshold_rule}: {result['presence_threshold']:.4f} (all rules: {json.dumps(result['thresholds'])}); "
          f"validation: {json.dumps(result['validation'])}")
    print(f"[serve] munet infer DATA --bundle {first} --ensemble_bundles '{json.dumps(result['bundles'])}' {served_weights}"
          f"--presence_threshold {result['presence_threshold']:.6f}")


if __name__ == "__main__":
    fire.Fire(main)
