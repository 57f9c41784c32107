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

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["THRESHOLD_RULES", "choose_presence_threshold", "gated_outcome", "three_way_thresholds"]

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


def three_way_thresholds(lesion_probs: Sequence[float], normal_probs: Sequence[float], hidden_share: float = 0.01,
                         max_normal_lesion: float = 0.15) -> Tuple[float, float]:
    """``(presence_threshold, presence_uncertain_below)`` of the three-way finding
    (:mod:`munet.engines.finding`), from validation presence probabilities (calibrated ones when
    the configs hold a presence temperature).

    "no lesion" below the ``hidden_share`` quantile of a normal distribution fitted to the lesion
    images' presence logits: every lesion image informs the tail, where the single-threshold
    rules rested on the few lowest and swung from one seed to the next (0.669 and 0.028). One
    outlying validation lesion image (BUSI's seed-0 split has one at 0.007) widens the fit instead
    of setting the threshold. "lesion" from the point where at most ``max_normal_lesion`` of the
    validation normals would be called lesion (at least the first threshold); between the two,
    "uncertain" (the mask kept, flagged for review).
    """
    from scipy.stats import norm

    lesions = np.clip(np.asarray(lesion_probs, dtype=float), 1e-6, 1 - 1e-6)
    if lesions.size < 2:
        raise ValueError(f"three-way thresholds need at least two lesion images, got {lesions.size}")
    logits = np.log(lesions / (1 - lesions))
    tail = float(1 / (1 + np.exp(-(logits.mean() + norm.ppf(hidden_share) * logits.std(ddof=1)))))
    low = tail
    normals = np.asarray(normal_probs, dtype=float)
    high = float(np.quantile(normals, 1 - max_normal_lesion)) if normals.size else low
    return low, max(high, low)
