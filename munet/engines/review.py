"""The "needs review" flag: which results a reader should look at twice, and why.

Built from signals the bundle computes anyway, each with a threshold chosen on the validation
split (``research/review_flag.py``), never on the test split:

- ``uncertain``: the presence finding is "uncertain" (:mod:`.finding`);
- ``views disagree``: the test-time views (scales, flips) draw different masks: their mean IoU
  with the averaged mask (:func:`.inferer.view_agreement`) is below ``min_view_agreement``;
- ``class near the decision``: the (calibrated) malignancy probability is within
  ``class_margin`` of 0.5.

``review_rule`` in the configs holds the thresholds; a signal whose threshold is null is not used.
"""

from __future__ import annotations

from typing import List, Mapping, Optional

from munet.engines.finding import UNCERTAIN

__all__ = ["review_reasons", "REASONS"]

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
