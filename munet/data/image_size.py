"""A warning for images whose size the model was not made for.

The network sees every image resized to ``image_size`` (its longest side). A 16x16 crop is
enlarged from almost nothing, and a 4000-pixel frame is shrunk until a small lesion is a few
pixels wide; the model still answers both, with the same confidence. The answer is kept; this
note goes with it into the log, ``predictions.csv`` and the MONAI Label result.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["MIN_USEFUL_SIDE", "MAX_SHRINK", "image_size_warning"]

#: a shorter side below this many pixels holds too little of a lesion to segment
MIN_USEFUL_SIDE = 48
#: a longer side more than this many times the network's input size loses small lesions
MAX_SHRINK = 8


def image_size_warning(rows: int, cols: int, image_size: Optional[int]) -> Optional[str]:
    """The warning for a ``rows`` x ``cols`` image given a network input of ``image_size``, or None."""
    if min(rows, cols) < MIN_USEFUL_SIDE:
        return (f"image is {rows}x{cols} pixels (rows x columns), below the {MIN_USEFUL_SIDE}-pixel minimum: "
                "too small for a reliable result")
    if image_size and max(rows, cols) > MAX_SHRINK * image_size:
        return (f"image is {rows}x{cols} pixels, over {MAX_SHRINK}x the model's {image_size}-pixel input: "
                "small lesions may be lost in the shrinking")
    return None
