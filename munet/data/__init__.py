"""Reading ultrasound data: datalists, pinned readers, checks, our transforms, the preprocessing chain.

Tools that write data (demo data, BUSI converter, DICOM writer) live in ``munet.dataset_tools``.
"""

from munet.data import (
    augment,
    datalist,
    datasets,
    dicom_pixels,
    dicom_reader,
    folders,
    formats,
    loading,
    preprocessing,
    sampling,
    transforms,
    ultrasound,
    validation,
)

__all__ = ["augment", "datalist", "datasets", "dicom_pixels", "dicom_reader", "folders", "formats", "loading", "preprocessing",
           "sampling", "transforms", "ultrasound", "validation"]


