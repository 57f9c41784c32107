"""From stored DICOM pixel values to the image a viewer shows: LUTs, MONOCHROME1, palette colour.

Why: the stored values are not the image. A ``MONOCHROME1`` file stores bright tissue as low
values (taken as is, the network silently sees a negative); Rescale Slope/Intercept or a Modality
LUT maps stored values to meaningful ones; a VOI LUT or window picks the displayed range;
``PALETTE COLOR`` stores indices into a colour table. pydicom implements each step
(``apply_modality_lut``, ``apply_voi_lut``, ``apply_color_lut``) but leaves their order (PS3.4
N.2: Modality, then VOI, then the Presentation LUT that inverts ``MONOCHROME1``) and the
inversion to the caller. The inversion is ``low + high - value`` over the nominal output range
of the previous step, so an 8-bit ``MONOCHROME1`` file comes back as ``255 - value`` (uint8),
whatever the image content.

Colour data (RGB, and YBR which pydicom already converts to RGB) has no LUTs and passes through.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

__all__ = ["display_pixels", "has_modality_lut", "has_voi_lut"]

_GRAY = ("MONOCHROME1", "MONOCHROME2")


def has_modality_lut(ds: Any) -> bool:
    """A Modality LUT, or a Rescale Slope/Intercept pair that changes values."""
    if ds.get("ModalityLUTSequence"):
        return True
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        return float(ds.RescaleSlope) != 1.0 or float(ds.RescaleIntercept) != 0.0
    return False


def has_voi_lut(ds: Any) -> bool:
    """A VOI LUT sequence, or both Window Center and Window Width."""
    if ds.get("VOILUTSequence"):
        return True
    return ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, "")


def _stored_range(ds: Any) -> Tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _lut_range(item: Any) -> Tuple[float, float]:
    return 0.0, 2.0 ** int(item.LUTDescriptor[2]) - 1


def _invert(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    if np.issubdtype(pixels.dtype, np.integer) and float(low).is_integer() and float(high).is_integer():
        inverted = int(low) + int(high) - pixels.astype(np.int64)
        info = np.iinfo(pixels.dtype)
        if inverted.size == 0 or (inverted.min() >= info.min and inverted.max() <= info.max):
            return inverted.astype(pixels.dtype)
        return inverted
    return (low + high) - pixels.astype(np.float64)


def display_pixels(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (one frame or all, as pydicom decoded them) as displayed: see the module doc."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR":
        return np.asarray(apply_color_lut(pixels, ds))
    if photometric not in _GRAY:
        return pixels
    low, high = _stored_range(ds)
    if has_modality_lut(ds):
        if ds.get("ModalityLUTSequence"):
            low, high = _lut_range(ds.ModalityLUTSequence[0])
        else:
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            low, high = sorted((low * slope + intercept, high * slope + intercept))
        pixels = np.asarray(apply_modality_lut(pixels, ds))
    if has_voi_lut(ds):
        if ds.get("VOILUTSequence"):
            low, high = _lut_range(ds.VOILUTSequence[0])
        # a window keeps the range of the values it is applied to (pydicom's y_min..y_max)
        pixels = np.asarray(apply_voi_lut(pixels, ds, prefer_lut=True))
    if photometric == "MONOCHROME1":
        pixels = _invert(pixels, low, high)
    return pixels
