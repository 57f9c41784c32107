"""Values shared by the data, network, engine and MONAI Label parts of the bundle, defined once.

Readable file suffixes live in ``munet/data/formats.py`` (with the readers that use them); output
keys of the network (``mask``, ``class_logits``, ``lesion_logit``...) in ``munet/networks/munet.py``.
"""

from __future__ import annotations

__all__ = ["MISSING_CLASS", "SIZE_MULTIPLE", "US_REGION_KEY", "US_SPACING_KEY"]

#: Class value meaning "no class label for this sample" (segmentation-only cases, normal images).
MISSING_CLASS = -1

#: Height and width the networks take are multiples of this: the encoder halves them five times.
SIZE_MULTIPLE = 32

#: Image metadata written by the ultrasound DICOM reader: the B-mode region [row0, col0, row1, col1]
#: (-1 where the file declares none) and the physical (row, col) spacing in mm.
US_REGION_KEY = "us_region"
US_SPACING_KEY = "us_spacing_mm"
