"""Choosing the lesion-presence threshold on validation images, and what a threshold does to a split.

Below the threshold the bundle says "no lesion" and empties the mask (``SplitOutputd``). The
threshold is a model-selection decision made on the validation split, never the test split. Two
rules are offered because the two errors cost different things to different users:

- ``youden``: the threshold that maximises lesion recall + normal-image specificity (Youden's J)
  among those keeping at least ``min_lesion_recall`` of the lesion images. It weighs a lesion image
  emptied and a normal image marked alike, which is what a "no lesion on normal scans" promise
  needs; the floor stops it from trading many lesions for one normal image on a small split.
- ``lesion_recall``: the highest threshold that keeps ``min_lesion_recall`` of the lesion images
  (lesions first; with a weak presence head it says "no lesion" on few normal images).

No scikit-learn: ``roc_curve`` gives the same candidates but not the recall floor or the tie rule.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["THRESHOLD_RULES", "choose_presence_threshold", "gated_outcome"]

THRESHOLD_RULES = ("youden", "lesion_recall")


def _candidates(probs: Sequence[float]) -> List[float]:
    """0 (never gate) and the midpoints between consecutive distinct probabilities, ascending."""
    values = sorted(set(float(p) for p in probs))
    return [0.0] + [(a + b) / 2 for a, b in zip(values, values[1:])]


def choose_presence_threshold(lesion_probs: Sequence[float], normal_probs: Sequence[float], rule: str = "youden",
                              min_lesion_recall: float = 0.95) -> float:
    """The threshold chosen by ``rule`` from validation presence probabilities (0.0 = never gate).

    Images at or above the threshold keep their mask. Thresholds are midpoints between observed
    probabilities, so no validation image sits on the edge; ties go to the lower threshold.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown presence threshold rule {rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    if not 0.0 < min_lesion_recall <= 1.0:
        raise ValueError(f"min_lesion_recall must be in (0, 1], got {min_lesion_recall}")
    if not lesion_probs:
        return 0.0
    lesions, normals = np.asarray(lesion_probs, dtype=float), np.asarray(normal_probs, dtype=float)
    allowed = [t for t in _candidates(list(lesions) + list(normals)) if (lesions >= t).mean() >= min_lesion_recall]
    if rule == "lesion_recall" or normals.size == 0:
        return float(max(allowed))
    scores = [(lesions >= t).mean() + (normals < t).mean() for t in allowed]
    return float(allowed[int(np.argmax(scores))])  # argmax takes the first, i.e. the lowest, of equal scores


def gated_outcome(lesion_dice: Sequence[float], lesion_probs: Sequence[float], normal_marked: Sequence[bool],
                  normal_probs: Sequence[float], threshold: Optional[float]) -> Dict[str, float]:
    """Mean lesion Dice and normal-image false-positive rate had the masks been gated at ``threshold``.

    Inputs are the ungated predictions: per lesion image its Dice and presence probability, per
    normal image whether its mask has any lesion pixel and its presence probability. A gated lesion
    image scores Dice 0; a gated normal image is not a false positive.
    """
    t = -np.inf if threshold is None else threshold
    dice = [d if p >= t else 0.0 for d, p in zip(lesion_dice, lesion_probs)]
    marked = [m and p >= t for m, p in zip(normal_marked, normal_probs)]
    return {"dice": float(np.mean(dice)) if dice else float("nan"),
            "normal_fpr": float(np.mean(marked)) if marked else float("nan"),
            "lesion_images_gated": int(sum(p < t for p in lesion_probs)),
            "normal_images_marked": int(sum(marked))}
