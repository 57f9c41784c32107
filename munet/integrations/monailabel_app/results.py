"""Turn the bundle's inference output into what MONAI Label returns: a label file and JSON."""

from __future__ import annotations

import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from munet.data.image_size import image_size_warning
from munet.engines.finding import class_call, image_finding
from munet.engines.review import review_reasons

__all__ = ["write_label", "result_json"]


def write_label(prob: Any, threshold: float, label_value: int) -> Tuple[str, int]:
    """Write the thresholded best mask ([1, rows, cols] or [rows, cols] probabilities) as an 8-bit PNG.

    MONAI Label's own writer goes through ITK, which transposes 2D arrays and cannot write a float
    PNG; PIL writes (rows, cols) as the image is stored. Returns the path and the lesion pixel count.
    """
    array = torch.as_tensor(prob).detach().float().cpu().numpy()
    array = array[0] if array.ndim == 3 else array
    mask = (array >= threshold).astype(np.uint8) * np.uint8(label_value)
    path = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
    Image.fromarray(mask).save(path)
    return path, int((mask > 0).sum())


def result_json(class_prob: Any, class_names: Sequence[str], lesion_pixels: int, shape: Sequence[int], clicks: Mapping[str, int],
                lesion_prob: Optional[float] = None, image_size: Optional[int] = None,
                presence_thresholds: Tuple[Optional[float], Optional[float]] = (None, None), view_agreement: Optional[float] = None,
                review_rule: Optional[Mapping[str, Optional[float]]] = None) -> Dict[str, Any]:
    """The JSON part of the answer: the finding ("lesion", "uncertain" or "no lesion",
    :func:`munet.engines.finding.image_finding` at ``presence_thresholds``, with the presence head's
    probability when the model has one), the class probabilities given a lesion and the predicted
    class (empty and None on "no lesion"), mask size, clicks used, ``needs_review`` with its
    ``review_reasons`` (:mod:`munet.engines.review`), and ``warnings`` about the image (its size,
    :func:`munet.data.image_size.image_size_warning`)."""
    probs = [float(p) for p in torch.as_tensor(class_prob).flatten()]
    finding = image_finding(lesion_pixels > 0, None if lesion_prob is None else float(lesion_prob), *presence_thresholds,
                            lesion_clicked=int(clicks.get("foreground", 0)) > 0)
    called = class_call(finding) and bool(probs)
    result = {
        "finding": finding,
        "class_probabilities": {name: round(p, 6) for name, p in zip(class_names, probs)} if called else {},
        "class_prediction": class_names[int(np.argmax(probs))] if called else None,
        "lesion_pixels": lesion_pixels,
        "label_shape": [int(s) for s in shape],
        "clicks": dict(clicks),
    }
    if lesion_prob is not None:
        result["lesion_probability"] = round(float(lesion_prob), 6)
    if view_agreement is not None:
        result["view_agreement"] = round(float(view_agreement), 4)
    # how unsure the model is (for choosing the next image to annotate): the class head's answer
    # counts even where no class is called, as the image's label will teach it
    malignant = probs[list(class_names).index("malignant")] if probs and "malignant" in class_names else None
    parts = [0.0] + [1 - abs(2 * float(p) - 1) for p in (lesion_prob, malignant) if p is not None]
    result["uncertainty"] = round(max(parts + ([1 - float(view_agreement)] if view_agreement is not None else [])), 6)
    malignant = result["class_probabilities"].get("malignant")
    reasons = review_reasons(finding, None if view_agreement is None else float(view_agreement), malignant, review_rule)
    result.update(needs_review=bool(reasons), review_reasons=reasons)
    size_warning = image_size_warning(int(shape[0]), int(shape[1]), image_size)
    if size_warning:
        result["warnings"] = [size_warning]
    return result
