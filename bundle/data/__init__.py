"""Reading ultrasound data: datalists, pinned readers, our transforms, the preprocessing chain, demo data."""

from . import augment, busi, datalist, datasets, dicom_reader, dicom_writer, loading, preprocessing, sampling, synthetic, transforms, ultrasound, validation

__all__ = ["augment", "busi", "datalist", "datasets", "dicom_reader", "dicom_writer", "loading", "preprocessing", "sampling", "synthetic", "transforms", "ultrasound", "validation"]
