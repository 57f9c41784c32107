"""Ultrasound-specific transforms: crop to the B-mode region the DICOM file declares."""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys

from munet.constants import US_REGION_KEY
from munet.data.transforms import source_name

__all__ = ["UltrasoundRegionCropd"]


class UltrasoundRegionCropd(MapTransform, InvertibleTransform):
    """Crop image and mask to the image's ultrasound region (``us_region`` from UltrasoundDicomReader).

    The region excludes the burnt-in text, scale bars and calipers around the B-mode sector. The
    crop is recorded so ``Invertd`` pads predictions back to the full frame; the physical spacing
    (``us_spacing_mm``) stays in the image metadata. Images without a declared region (PNG, NIfTI,
    DICOM without the sequence) pass through unchanged. MONAI's ``SpatialCropd`` needs a fixed
    box at construction; this one reads it per image from the metadata, hence this transform.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        image = d[self.image_key]
        meta = getattr(image, "meta", {}) or {}
        box = np.asarray(meta.get(US_REGION_KEY, [-1, -1, -1, -1])).reshape(-1)
        if box.size != 4 or (box < 0).any():
            return d
        x0, y0, x1, y1 = (int(v) for v in box)
        for key in self.key_iterator(d):
            img = d[key]
            rows, cols = img.shape[-2:]
            if x1 >= cols or y1 >= rows or x0 > x1 or y0 > y1:
                raise ValueError(
                    f"{source_name(d, self.image_key)}: ultrasound region {box.tolist()} lies outside the "
                    f"{rows}x{cols} image (key {key!r})"
                )
            cropped = img[..., y0 : y1 + 1, x0 : x1 + 1]
            if not isinstance(cropped, MetaTensor):
                cropped = MetaTensor(cropped)
            self.push_transform(cropped, orig_size=[rows, cols], extra_info={"box": [y0, y1, x0, x1]})
            d[key] = cropped
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if not isinstance(img, MetaTensor) or not img.applied_operations:
                continue
            if img.applied_operations[-1].get(TraceKeys.CLASS_NAME) != self.__class__.__name__:
                continue
            transform = self.pop_transform(img)
            rows, cols = (int(v) for v in transform[TraceKeys.ORIG_SIZE])
            y0, y1, x0, x1 = transform[TraceKeys.EXTRA_INFO]["box"]
            full = torch.zeros((*img.shape[:-2], rows, cols), dtype=img.dtype, device=img.device)
            full[..., y0 : y1 + 1, x0 : x1 + 1] = img.as_tensor()
            d[key] = MetaTensor(full, meta=img.meta, applied_operations=img.applied_operations)
        return d
