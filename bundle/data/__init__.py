"""Reading ultrasound data: datalists, pinned readers, our transforms, the preprocessing chain, demo data."""

from . import augment, busi, datalist, datasets, dicom_pixels, dicom_reader, dicom_writer, folders, formats, loading, preprocessing, sampling, synthetic, transforms, ultrasound, validation

__all__ = ["augment", "busi", "datalist", "datasets", "dicom_pixels", "dicom_reader", "dicom_writer", "folders", "formats", "loading", "preprocessing", "sampling", "synthetic", "transforms", "ultrasound", "validation"]
