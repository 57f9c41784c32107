"""Reading ultrasound data: datalists, pinned readers, our transforms, the preprocessing chain, demo data."""

from . import datalist, preprocessing, synthetic, transforms

__all__ = ["datalist", "preprocessing", "synthetic", "transforms"]
