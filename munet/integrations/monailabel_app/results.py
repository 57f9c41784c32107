"""Turn the bundle's inference output into what MONAI Label returns: a label file and JSON."""

from __future__ import annotations

import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from munet.data.image_size import image_size_warning

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
                lesion_prob: Optional[float] = None, image_size: Optional[int] = None) -> Dict[str, Any]:
    """The JSON part of the answer: class probabilities, predicted class, mask size, clicks used, the
    finding ("lesion" or "no lesion", with the presence head's probability when the model has one),
    and ``warnings`` about the image (its size, :func:`munet.data.image_size.image_size_warning`)."""
    probs = [float(p) for p in torch.as_tensor(class_prob).flatten()]
    result = {
        "class_probabilities": {name: round(p, 6) for name, p in zip(class_names, probs)},
        "class_prediction": class_names[int(np.argmax(probs))],
        "lesion_pixels": lesion_pixels,
        "finding": "lesion" if lesion_pixels > 0 else "no lesion",
        "label_shape": [int(s) for s in shape],
        "clicks": dict(clicks),
    }
    if lesion_prob is not None:
        result["lesion_probability"] = round(float(lesion_prob), 6)
    size_warning = image_size_warning(int(shape[0]), int(shape[1]), image_size)
    if size_warning:
        result["warnings"] = [size_warning]
    return result
