"""The one definition of the bundle's deterministic preprocessing chain.

train.json, evaluate.json, inference.json and the MONAI Label app all build their chain by
calling :func:`deterministic_transforms`, so reading, colour handling, intensity scaling, resizing
and padding cannot drift apart between training and inference.

Array convention: every image and mask is (C, rows, columns), i.e. the orientation numpy, PIL and
pydicom use. MONAI's PNG reader would return (columns, rows) by default and its DICOM reader
swaps too; ``LoadUltrasoundd`` pins one reader per file type so that a PNG mask and a DICOM or
NIfTI image line up.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from monai.transforms import (
    CopyItemsd,
    DivisiblePadd,
    EnsureChannelFirstd,
    EnsureTyped,
    MapTransform,
    Resized,
    ScaleIntensityd,
    SpatialPadd,
)

from munet.constants import SIZE_MULTIPLE
from munet.data.guidance import GUIDANCE_KEY, AppendGuidanced, ClickGuidanced, SimulateClicksd
from munet.data.loading import LoadUltrasoundd
from munet.data.transforms import BinarizeMaskd, EnsureClassd, ToGrayscaled
from munet.data.ultrasound import UltrasoundRegionCropd

__all__ = ["ORIGINAL_LABEL_KEY", "deterministic_transforms", "training_transforms"]

#: Key of the untouched (original size) mask kept for evaluation.
ORIGINAL_LABEL_KEY = "label_orig"


def deterministic_transforms(
    image_key: str = "image",
    label_key: Optional[str] = "label",
    class_key: Optional[str] = "class",
    image_size: Optional[int] = 256,
    pad_to_square: bool = False,
    keep_original_label: bool = False,
    in_channels: int = 1,
    num_classes: int = 2,
    dicom_frame: Optional[int] = None,
    crop_to_us_region: bool = False,
    pad: bool = True,
    guidance: bool = False,
    simulate_clicks: bool = False,
) -> List[MapTransform]:
    """The deterministic chain: load, channel first, gray, 0/1 mask, class, scale, resize, pad.

    Args:
        image_key, label_key, class_key: datalist keys (``label_key``/``class_key`` None or absent
            in a sample for inference).
        image_size: longest side after resizing (aspect ratio kept, so a "taller than wide"
            lesion stays so); None keeps the native size.
        pad_to_square: pad to ``image_size`` x ``image_size`` (training batches need one size);
            otherwise pad each side up to a multiple of 32 (predictions are cropped back by
            ``Invertd``).
        keep_original_label: keep a copy of the mask at its original size under ``label_orig``
            so that evaluation compares with the file, not with a resampled mask.
        in_channels: 1 converts colour images to gray, 3 keeps them.
        num_classes: valid class values are 0..num_classes-1.
        dicom_frame: frame taken from multi-frame DICOM files (required for them).
        crop_to_us_region: crop image and mask to the DICOM's ultrasound region (burnt-in text
            and calipers removed); ``Invertd`` pads predictions back to the full frame.
        pad: pad at all (multi-scale training leaves sizing to ``SizedDataset``).
        guidance: interactive model: render the sample's ``foreground``/``background`` clicks
            (see :mod:`munet.data.guidance`) and append them as two extra image channels.
        simulate_clicks: training an interactive model: draw the clicks from the mask first.
    """
    if image_size is not None and image_size % SIZE_MULTIPLE:
        raise ValueError(f"image_size must be a multiple of {SIZE_MULTIPLE}, got {image_size}")
    if pad_to_square and image_size is None:
        raise ValueError("pad_to_square needs an image_size")
    spatial = [image_key] + ([label_key] if label_key else [])
    chain: List[MapTransform] = [
        LoadUltrasoundd(keys=spatial, dicom_frame=dicom_frame, mask_keys=[label_key] if label_key else []),
        EnsureChannelFirstd(keys=spatial, allow_missing_keys=True),
    ]
    if simulate_clicks and not (guidance and label_key):
        raise ValueError("simulate_clicks needs guidance=True and a label_key")
    if label_key:
        chain.append(BinarizeMaskd(keys=label_key, allow_missing_keys=True))
        if keep_original_label:
            chain.append(CopyItemsd(keys=label_key, names=ORIGINAL_LABEL_KEY, allow_missing_keys=True))
    if guidance:
        if simulate_clicks:
            chain.append(SimulateClicksd(keys=label_key))
        chain.append(ClickGuidanced(image_key=image_key))
        spatial.append(GUIDANCE_KEY)
    if crop_to_us_region:
        chain.append(UltrasoundRegionCropd(keys=spatial, image_key=image_key))
    if in_channels == 1:
        chain.append(ToGrayscaled(keys=image_key))
    if class_key:
        chain.append(EnsureClassd(keys=class_key, num_classes=num_classes, image_key=image_key))
    chain.append(ScaleIntensityd(keys=image_key, minv=0.0, maxv=1.0))
    modes: Sequence[str] = ["bilinear"] + ["nearest"] * bool(label_key) + ["bilinear"] * guidance
    anti_aliasing = [True] + [False] * (len(spatial) - 1)
    if image_size is not None:
        chain.append(
            Resized(
                keys=spatial,
                spatial_size=image_size,
                size_mode="longest",
                mode=modes,
                anti_aliasing=anti_aliasing,
                allow_missing_keys=True,
            )
        )
    if pad_to_square:
        chain.append(SpatialPadd(keys=spatial, spatial_size=[image_size, image_size], allow_missing_keys=True))
    elif pad:
        chain.append(DivisiblePadd(keys=spatial, k=SIZE_MULTIPLE, allow_missing_keys=True))
    chain.append(EnsureTyped(keys=spatial, dtype="float32", allow_missing_keys=True))
    if guidance:
        chain.append(AppendGuidanced(image_key=image_key))
    return chain


def training_transforms(image_size: int = 256, multiscale: bool = False, **kwargs: Any) -> List[MapTransform]:
    """Training's deterministic chain: padded to ``image_size`` squares (one batch, one size), or at
    the native size when training is multi-scale (``train_loader``'s ``SizedDataset`` sizes each batch).
    ``kwargs`` go to :func:`deterministic_transforms`."""
    return deterministic_transforms(image_size=None if multiscale else image_size, pad_to_square=not multiscale,
                                    pad=not multiscale, **kwargs)
