"""PNG, JPEG, BMP and TIFF images as a viewer shows them, whatever their PIL mode.

MONAI's ``PILReader`` returns the stored array: a palette PNG (mode ``P``) came back as its
palette indices (an inverted-looking picture), a CMYK JPEG as four ink channels that
:class:`~munet.data.transforms.ToGrayscaled` took for RGBA (a blank image), a grayscale PNG with
alpha (``LA``) as two channels that no step accepted. :func:`as_displayed` is the reader's
``converter``; it turns every mode into one a later step reads right:

========================== ==============================================================
mode                       becomes
========================== ==============================================================
``L``, ``RGB``             unchanged (``ToGrayscaled`` makes RGB luma, BT.601)
``1``                      ``L`` (0 or 255)
``P`` (palette)            the palette's colours (``RGB``), transparency as below
``LA``, ``RGBA``, ``PA``   composited over black (an ultrasound's background): ``L`` / ``RGB``
``CMYK``, ``YCbCr``, ...   ``RGB``
``I;16`` (16-bit), ``I``   ``F``: value / 257, the 8-bit scale a browser shows it at
``F``                      unchanged
========================== ==============================================================

Masks are not converted: a palette mask's indices are its labels (``LoadUltrasoundd``'s
``mask_keys``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["as_displayed", "SIXTEEN_BIT_MODES"]

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_WITH_ALPHA = ("LA", "La", "RGBA", "RGBa", "PA")


def _over_black(image: Image.Image) -> Image.Image:
    """An image with an alpha channel flattened onto black, in ``L`` or ``RGB``."""
    gray = image.mode in ("LA", "La")
    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    return flat.convert("L") if gray else flat


def as_displayed(image: Image.Image) -> Image.Image:
    """``image`` in ``L``, ``RGB`` or ``F`` with the values a viewer displays (see the module's table)."""
    mode = image.mode
    if mode in ("L", "RGB", "F"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return _over_black(image.convert("RGBA")) if "transparency" in image.info else image.convert("RGB")
    if mode in _WITH_ALPHA:
        return _over_black(image)
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)
        return Image.fromarray(values / 257.0)  # float32: mode F
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
