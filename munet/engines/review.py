"""The "needs review" flag: which results a reader should look at twice, and why.

Built from signals the bundle computes anyway, each with a threshold chosen on the validation
split (:func:`choose_review_rule`), never on the test split:

- ``uncertain``: the presence finding is "uncertain" (:mod:`.finding`);
- ``views disagree``: the test-time views (scales, flips) draw different masks: their mean IoU
  with the averaged mask (:func:`.inferer.view_agreement`) is below ``min_view_agreement``;
- ``class near the decision``: the (calibrated) malignancy probability is within
  ``class_margin`` of 0.5.

``review_rule`` in the configs holds the thresholds; a signal whose threshold is null is not used.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from munet.engines.finding import NO_LESION, UNCERTAIN, image_finding
from munet.engines.metrics import classification_metrics

__all__ = ["review_reasons", "REASONS", "case_findings", "case_flags", "risk_coverage", "choose_review_rule", "choose_review_settings"]

REASONS = ("uncertain", "views disagree", "class near the decision")


def review_reasons(finding: str, view_agreement: Optional[float], prob_malignant: Optional[float],
                   rule: Optional[Mapping[str, Optional[float]]]) -> List[str]:
    """The reasons to review one result under ``rule`` (``min_view_agreement``, ``class_margin``);
    empty: no review needed. ``prob_malignant`` is None where no class is called."""
    rule = rule or {}
    reasons = []
    if finding == UNCERTAIN:
        reasons.append("uncertain")
    agreement = rule.get("min_view_agreement")
    if agreement is not None and view_agreement is not None and view_agreement < agreement:
        reasons.append("views disagree")
    margin = rule.get("class_margin")
    if margin is not None and prob_malignant is not None and abs(prob_malignant - 0.5) < margin:
        reasons.append("class near the decision")
    return reasons


def case_findings(cases: Sequence[Mapping], thresholds: Tuple[Optional[float], Optional[float]]) -> List[str]:
    """The served finding of each ungated case (``marked``: its mask has a lesion pixel; ``lesion_prob``)."""
    low, high = thresholds
    return [image_finding(bool(c["marked"]) and (low is None or c["lesion_prob"] >= low), c["lesion_prob"], low, high)
            for c in cases]


def case_flags(cases: Sequence[Mapping], thresholds, rule: Optional[Mapping]) -> List[bool]:
    """Whether each case is flagged for review under ``rule``."""
    return [bool(review_reasons(f, c.get("view_agreement"), None if f == NO_LESION else c["prob_malignant"], rule))
            for f, c in zip(case_findings(cases, thresholds), cases)]


def risk_coverage(cases: Sequence[Mapping], normals: Sequence[Mapping], thresholds, rule: Optional[Mapping],
                  with_auc: bool = True) -> Dict:
    """The review flag on a split of lesion ``cases`` (``dice``, ``prob_malignant``, ``class``) and
    ``normals``: the share flagged; Dice and malignancy AUC of the unflagged lesion images against
    all; false positives on normals (any mark, "uncertain" included) unflagged against all; the
    malignant cases called benign, and how many of them are flagged. ``with_auc`` False leaves the
    AUCs out (None): the rule search below does not use them, and they take most of its time."""
    flags, normal_flags = case_flags(cases, thresholds, rule), case_flags(normals, thresholds, rule)
    kept = [c for c, f in zip(cases, flags) if not f]
    wrong_malignant = [f for c, f in zip(cases, flags) if c["class"] == 1 and c["prob_malignant"] < 0.5]
    normal_marked = [f != NO_LESION for f in case_findings(normals, thresholds)]
    kept_normals = [m for m, f in zip(normal_marked, normal_flags) if not f]

    def auc(rows: Sequence[Mapping]) -> Optional[float]:
        labels = [r["class"] for r in rows]
        if not with_auc or len(set(labels)) != 2:
            return None
        return classification_metrics([r["prob_malignant"] for r in rows], labels).get("auc")

    def mean(values: Sequence[float]) -> Optional[float]:
        return float(np.mean(values)) if len(values) else None

    return {"flagged_share": mean(flags + normal_flags), "flagged_lesion_images": int(sum(flags)), "flagged_normals": int(sum(normal_flags)),
            "dice_all": mean([c["dice"] for c in cases]), "dice_unflagged": mean([c["dice"] for c in kept]),
            "auc_all": auc(cases), "auc_unflagged": auc(kept),
            "normal_fpr_all": mean(normal_marked), "normal_fpr_unflagged": mean(kept_normals),
            "misclassified_malignant": len(wrong_malignant), "misclassified_malignant_caught": int(sum(wrong_malignant))}


def choose_review_rule(cases: Sequence[Mapping], normals: Sequence[Mapping], thresholds, max_flagged: float = 0.2) -> Dict:
    """On validation: among the rules flagging at most ``max_flagged`` of the images, the one that
    raises the unflagged Dice most, counting each misclassified malignant case it catches as 0.1 of
    Dice (ties: fewer flags). Candidate view-agreement thresholds sit just above the observed values."""
    agreements = sorted({round(float(c["view_agreement"]), 2) for c in list(cases) + list(normals) if c.get("view_agreement") is not None})
    best: Dict = {"min_view_agreement": None, "class_margin": None}
    best_key = (-np.inf, 0.0)
    for agreement in [None] + [round(a + 0.005, 3) for a in agreements if a < 1.0][:60]:  # flags that view value too
        for margin in (None, 0.05, 0.1, 0.15, 0.2, 0.25):
            rule = {"min_view_agreement": agreement, "class_margin": margin}
            table = risk_coverage(cases, normals, thresholds, rule, with_auc=False)
            if table["flagged_share"] is None or table["flagged_share"] > max_flagged or table["dice_unflagged"] is None:
                continue
            caught = table["misclassified_malignant_caught"] / max(1, table["misclassified_malignant"])
            key = (table["dice_unflagged"] - table["dice_all"] + 0.1 * caught, -table["flagged_share"])
            if key > best_key:
                best, best_key = rule, key
    return best


def choose_review_settings(cases: Sequence[Mapping], normals: Sequence[Mapping], no_lesion_below: float,
                           max_flagged: float = 0.2) -> Tuple[float, Dict]:
    """``(presence_uncertain_below, review_rule)`` chosen together on validation, as
    :func:`choose_review_rule` does for the rule alone.

    The upper presence threshold decides only which marked images are "uncertain" (flagged) rather
    than "lesion": false positives on normals count both alike. So it is a review setting and
    shares the flag budget with the other signals; candidates are the validation presence
    probabilities above ``no_lesion_below``."""
    probs = sorted({float(c["lesion_prob"]) for c in list(cases) + list(normals) if c["lesion_prob"] >= no_lesion_below})
    candidates = [no_lesion_below] + [float(v) for v in np.quantile(probs, np.linspace(0, 1, 25))] if probs else [no_lesion_below]
    agreements = sorted({round(float(c["view_agreement"]), 2) for c in list(cases) + list(normals) if c.get("view_agreement") is not None})
    agreements = [round(a + 0.005, 3) for a in agreements if a < 1.0]
    agreements = [None] + [float(v) for v in np.unique(np.quantile(agreements, np.linspace(0, 1, 15)))] if agreements else [None]
    best: Tuple[float, Dict] = (no_lesion_below, {"min_view_agreement": None, "class_margin": None})
    best_key = (-np.inf, 0.0)
    for upper in sorted(set(candidates)):
        thresholds = (no_lesion_below, upper)
        for agreement in agreements:
            for margin in (None, 0.05, 0.1, 0.15, 0.2):
                rule = {"min_view_agreement": agreement, "class_margin": margin}
                table = risk_coverage(cases, normals, thresholds, rule, with_auc=False)
                if table["flagged_share"] is None or table["flagged_share"] > max_flagged or table["dice_unflagged"] is None:
                    continue
                caught = table["misclassified_malignant_caught"] / max(1, table["misclassified_malignant"])
                key = (table["dice_unflagged"] - table["dice_all"] + 0.1 * caught, -table["flagged_share"])
                if key > best_key:
                    best, best_key = (upper, rule), key
    return best
