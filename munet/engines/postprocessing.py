"""Flatten MUNet's nested engine output into the flat keys MONAI's post transforms work on."""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, Optional

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Transform

from munet.data.guidance import GUIDANCE_CHANNELS
from munet.data.preprocessing import ORIGINAL_LABEL_KEY
from munet.engines.inferer import VIEW_AGREEMENT_KEY
from munet.networks.munet import BRANCH_PREFIX, CLASS_KEY, MASK_KEY, PRESENCE_KEY

__all__ = ["SplitOutputd", "CLASS_PROB_KEY", "CLASS_LABEL_KEY", "LESION_PROB_KEY", "LESION_CLICKED_KEY", "branch_pred_key", "gate_by_presence",
           "has_foreground_click"]

CLASS_PROB_KEY = "class_prob"
CLASS_LABEL_KEY = "class_label"
#: probability that the image holds a lesion (networks with a presence head)
LESION_PROB_KEY = "lesion_prob"
#: True where an annotator's foreground click kept the mask from the presence gate
LESION_CLICKED_KEY = "lesion_clicked"


def gate_by_presence(mask: torch.Tensor, lesion_prob: float, threshold: Optional[float]) -> torch.Tensor:
    """The mask, or an all-zero mask when the lesion-presence probability is below ``threshold``.

    ``threshold`` None switches the decision off (the mask is returned as it is).
    """
    if threshold is None or lesion_prob >= threshold:
        return mask
    return torch.zeros_like(mask)


def has_foreground_click(image: Any) -> bool:
    """Whether an interactive network's input (channels: image, foreground clicks, background
    clicks; :mod:`munet.data.guidance`) holds a foreground click: a blob of peak 1."""
    return bool((torch.as_tensor(image)[-GUIDANCE_CHANNELS] > 0.5).any())


def branch_pred_key(branch: str) -> str:
    """Key of a branch's probability map at input size, e.g. ``pred_mask_stride16``."""
    return f"pred_{branch}"


class SplitOutputd(Transform):
    """Split one decollated sample's ``pred`` dict and ``label`` target into flat keys.

    Produces ``pred`` (best mask probabilities, [1, H, W]), ``class_prob`` (softmax, [C]),
    optionally one ``pred_mask_strideN`` per branch (sigmoid, resized bilinearly to the input
    size, so ``Invertd`` can bring them back like ``pred``), ``label`` (the mask; the original-size
    copy when preprocessing kept one) and ``class_label``. A network with a presence head also
    gives ``lesion_prob``; below ``presence_threshold`` the best mask (and every branch mask) is
    emptied: the model's "no lesion" answer. ``class_temperature`` and ``presence_temperature``
    divide the heads' logits first (:mod:`munet.engines.calibration`; 1.0 leaves them as they are).
    With ``guidance`` (an interactive network: the image's last two channels are the click maps),
    an image with a foreground click is never emptied by the gate: the annotator has said where
    the lesion is, and emptying the mask would undo the click.
    """

    def __init__(self, with_branches: bool = True, presence_threshold: Optional[float] = 0.5, class_temperature: float = 1.0,
                 presence_temperature: float = 1.0, guidance: bool = False) -> None:
        if class_temperature <= 0 or presence_temperature <= 0:
            raise ValueError(f"temperatures must be positive, got class {class_temperature}, presence {presence_temperature}")
        self.with_branches = with_branches
        self.presence_threshold = presence_threshold
        self.class_temperature = float(class_temperature)
        self.presence_temperature = float(presence_temperature)
        self.guidance = bool(guidance)

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        pred = d["pred"]
        if isinstance(pred, torch.Tensor):
            pred = {MASK_KEY: pred}
        best = pred[MASK_KEY]
        lesion_prob: Optional[float] = None
        clicked = self.guidance and has_foreground_click(d["image"])
        threshold = None if clicked else self.presence_threshold
        if self.guidance:
            d[LESION_CLICKED_KEY] = clicked
        if PRESENCE_KEY in pred:
            lesion_prob = float(torch.sigmoid(pred[PRESENCE_KEY].float() / self.presence_temperature).reshape(-1)[0])
            d[LESION_PROB_KEY] = lesion_prob
            best = gate_by_presence(best, lesion_prob, threshold)
        # the network ran on a plain tensor (no MetaTensor dispatch cost); Invertd takes the
        # transforms to undo from ``image`` but only inverts MetaTensor predictions
        d["pred"] = MetaTensor(best) if not isinstance(best, MetaTensor) else best
        if VIEW_AGREEMENT_KEY in pred:
            d[VIEW_AGREEMENT_KEY] = float(torch.as_tensor(pred[VIEW_AGREEMENT_KEY]).reshape(-1)[0])
        if CLASS_KEY in pred:
            d[CLASS_PROB_KEY] = torch.softmax(pred[CLASS_KEY].float() / self.class_temperature, dim=0)
        if self.with_branches:
            size = list(best.shape[1:])
            for key, logits in pred.items():
                if key.startswith(BRANCH_PREFIX):
                    prob = torch.sigmoid(logits.float())[None]
                    prob = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)[0]
                    prob = prob if lesion_prob is None else gate_by_presence(prob, lesion_prob, threshold)
                    d[branch_pred_key(key)] = MetaTensor(prob)
        label = d.get("label")
        if isinstance(label, Mapping):
            d["label"] = label["mask"]
            d[CLASS_LABEL_KEY] = int(label["class"])
        if ORIGINAL_LABEL_KEY in d:
            d["label"] = d[ORIGINAL_LABEL_KEY]
        return d
