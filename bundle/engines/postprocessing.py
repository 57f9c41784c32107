"""Flatten MUNet's nested engine output into the flat keys MONAI's post transforms work on."""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping

import torch
import torch.nn.functional as F
from monai.transforms import Transform

from ..data.preprocessing import ORIGINAL_LABEL_KEY
from ..networks.munet import BRANCH_PREFIX, CLASS_KEY, MASK_KEY

__all__ = ["SplitOutputd", "CLASS_PROB_KEY", "CLASS_LABEL_KEY", "branch_pred_key"]

CLASS_PROB_KEY = "class_prob"
CLASS_LABEL_KEY = "class_label"


def branch_pred_key(branch: str) -> str:
    """Key of a branch's probability map at input size, e.g. ``pred_mask_stride16``."""
    return f"pred_{branch}"


class SplitOutputd(Transform):
    """Split one decollated sample's ``pred`` dict and ``label`` target into flat keys.

    Produces ``pred`` (best mask probabilities, [1, H, W]), ``class_prob`` (softmax, [C]),
    optionally one ``pred_mask_strideN`` per branch (sigmoid, resized bilinearly to the input
    size, so ``Invertd`` can bring them back like ``pred``), ``label`` (the mask; the original-size
    copy when preprocessing kept one) and ``class_label``.
    """

    def __init__(self, with_branches: bool = True) -> None:
        self.with_branches = with_branches

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        pred = d["pred"]
        if isinstance(pred, torch.Tensor):
            pred = {MASK_KEY: pred}
        best = pred[MASK_KEY]
        d["pred"] = best
        if CLASS_KEY in pred:
            d[CLASS_PROB_KEY] = torch.softmax(pred[CLASS_KEY].float(), dim=0)
        if self.with_branches:
            size = list(best.shape[1:])
            for key, logits in pred.items():
                if key.startswith(BRANCH_PREFIX):
                    prob = torch.sigmoid(logits.float())[None]
                    d[branch_pred_key(key)] = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)[0]
        label = d.get("label")
        if isinstance(label, Mapping):
            d["label"] = label["mask"]
            d[CLASS_LABEL_KEY] = int(label["class"])
        if ORIGINAL_LABEL_KEY in d:
            d["label"] = d[ORIGINAL_LABEL_KEY]
        return d
