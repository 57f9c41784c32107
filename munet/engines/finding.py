"""The finding reported for an image: "lesion", "uncertain" or "no lesion".

A model with a presence head gives each image a lesion probability ``p``. Deleting the mask of
every image under one threshold hid hard lesions (9 of 98 held-out BUSI lesion images); a low
``p`` is a reason to look again, not to hide. So two thresholds:

- ``p < no_lesion_below``: "no lesion", the mask emptied (the model is confident);
- ``no_lesion_below <= p < uncertain_below``: "uncertain", the mask kept, flagged for review;
- ``p >= uncertain_below``: "lesion" with its mask ("uncertain" when the mask is empty: the
  presence head saw a lesion the segmentation did not draw).

An annotator's foreground click (the interactive model) says there is a lesion: the finding is
then "lesion" with the mask, whatever ``p`` ("uncertain" if the mask is still empty).

With ``uncertain_below`` unset (None) the finding is two-way, as before: "lesion" when the
(gated) mask has a lesion pixel. A model without a presence head reports from its mask alone.

The class head is trained on lesion images only: its probabilities mean "benign or malignant,
given a lesion". Where the finding is "no lesion" no class is reported (:func:`class_call`).
"""

from __future__ import annotations

from typing import Optional

__all__ = ["LESION", "UNCERTAIN", "NO_LESION", "FINDINGS", "image_finding", "class_call"]

LESION, UNCERTAIN, NO_LESION = "lesion", "uncertain", "no lesion"
FINDINGS = (LESION, UNCERTAIN, NO_LESION)


def image_finding(has_lesion_pixels: bool, lesion_prob: Optional[float] = None, no_lesion_below: Optional[float] = None,
                  uncertain_below: Optional[float] = None, lesion_clicked: bool = False) -> str:
    """The finding for an image whose (already gated) mask ``has_lesion_pixels``, given the presence
    probability, the two thresholds and whether an annotator clicked on a lesion (the module's rules)."""
    if lesion_clicked:
        return LESION if has_lesion_pixels else UNCERTAIN
    if lesion_prob is None or uncertain_below is None:
        return LESION if has_lesion_pixels else NO_LESION
    if no_lesion_below is not None and lesion_prob < no_lesion_below:
        return NO_LESION
    if lesion_prob < uncertain_below:
        return UNCERTAIN
    return LESION if has_lesion_pixels else UNCERTAIN


def class_call(finding: str) -> bool:
    """Whether a benign/malignant call is reported with ``finding`` (not on "no lesion")."""
    return finding != NO_LESION
