"""Reading ultrasound data: datalists, pinned readers, our transforms, the preprocessing chain, demo data."""

from . import datalist, dicom_reader, loading, preprocessing, synthetic, transforms, ultrasound, validation

__all__ = ["datalist", "dicom_reader", "loading", "preprocessing", "synthetic", "transforms", "ultrasound", "validation"]
