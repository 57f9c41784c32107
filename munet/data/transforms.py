"""Dictionary transforms of our own, for what MONAI's transforms do not cover.

Each says why it exists: class labels that may be missing, colour ultrasound that must become
grayscale, and masks stored with any foreground value (1, 255, ...).
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from munet.constants import MISSING_CLASS

__all__ = ["EnsureClassd", "ToGrayscaled", "BinarizeMaskd", "source_name"]

# ITU-R BT.601 luma, as PIL's "L" conversion and most ultrasound viewers use
_LUMA = (0.299, 0.587, 0.114)


def source_name(data: Mapping[Hashable, object], key: str = "image") -> str:
    """The file a sample came from, for error messages (falls back to the key's value)."""
    value = data.get(key)
    meta = getattr(value, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return str(value)


class EnsureClassd(MapTransform):
    """Give every sample an integer class: the datalist's value, or -1 when it has none.

    A value outside ``0..num_classes-1`` (other than a missing one) raises a ``ValueError`` naming
    the image, since a silently wrong class poisons the classifier.
    """

    def __init__(self, keys: KeysCollection = "class", num_classes: int = 2, image_key: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.num_classes = num_classes
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.keys:
            value = d.get(key)
            if value is None or (isinstance(value, str) and value.strip() == ""):
                d[key] = MISSING_CLASS
                continue
            try:
                label = int(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"{source_name(d, self.image_key)}: class {value!r} is not an integer") from None
            if label != MISSING_CLASS and not 0 <= label < self.num_classes:
                raise ValueError(
                    f"{source_name(d, self.image_key)}: unknown class value {label}; "
                    f"expected 0..{self.num_classes - 1} (0 benign, 1 malignant) or missing"
                )
            d[key] = label
        return d


class ToGrayscaled(MapTransform):
    """Turn channel-first colour images (RGB, RGBA) into one luma channel; grayscale passes through.

    Ultrasound is grayscale, but exports are often RGB (burnt-in coloured calipers, Doppler boxes).
    MONAI has no colour-to-gray transform, hence this one (BT.601 weights, as PIL's ``"L"``).
    """

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            channels = image.shape[0]
            if channels == 1:
                continue
            if channels not in (3, 4):
                raise ValueError(
                    f"{source_name(d, key)}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got shape "
                    f"{tuple(image.shape)}"
                )
            weights = torch.as_tensor(_LUMA, dtype=torch.float32).reshape(3, *([1] * (image.ndim - 1)))
            if isinstance(image, np.ndarray):
                gray = (np.asarray(image[:3], dtype=np.float32) * weights.numpy()).sum(axis=0, keepdims=True)
            else:
                gray = (image[:3].float() * weights.to(image.device)).sum(dim=0, keepdim=True)
                if isinstance(image, MetaTensor):
                    gray = MetaTensor(gray, meta=image.meta, applied_operations=image.applied_operations)
            d[key] = gray
        return d


class BinarizeMaskd(MapTransform):
    """Masks as float 0/1: any value above ``threshold`` is lesion (files store 1 or 255).

    Colour masks are reduced to their first channel; the mask keeps its metadata.
    """

    def __init__(self, keys: KeysCollection = "label", threshold: float = 0.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            if mask.shape[0] > 1:
                mask = mask[:1]
            d[key] = (mask > self.threshold).float() if isinstance(mask, torch.Tensor) else (
                np.asarray(mask) > self.threshold
            ).astype(np.float32)
        return d

