"""Loading images and masks with exactly one reader per file type, chosen by name.

``LoadImaged(reader=[...])`` tries every listed reader and then MONAI's default ones (ITKReader
first when itk is installed, as MONAI Label installs it), so a file one reader refuses can
silently come back from another with other axes. :class:`LoadUltrasoundd` instead picks the
reader from the file name and uses only that one:

- ``.png .jpg .jpeg .bmp .tif .tiff``: ``PILReader(reverse_indexing=False)``
- ``.nii .nii.gz``: ``NibabelReader``
- ``.dcm .dicom`` or a file with the DICM marker: :class:`UltrasoundDicomReader`

All return (rows, columns[, channels]), so a PNG mask lines up with a DICOM or NIfTI image.
It subclasses ``LoadImaged`` so tools that look for the loader (MONAI Label) still find it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable, Mapping, Optional

from monai.config import KeysCollection
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader
from monai.transforms import LoadImage, LoadImaged

from .dicom_reader import DicomReadError, UltrasoundDicomReader, is_dicom_file

__all__ = ["ImageLoadError", "UNSUPPORTED", "reader_for", "load_image", "LoadUltrasoundd", "PIL_SUFFIXES", "NIFTI_SUFFIXES"]

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
UNSUPPORTED = "unsupported file type (expected PNG/JPEG/BMP/TIFF, NIfTI or DICOM)"


class ImageLoadError(ValueError):
    """An image or mask file that cannot be loaded; the message names the file."""


def reader_for(path: str, dicom_frame: Optional[int] = None) -> ImageReader:
    """The one reader used for ``path``, chosen by its name (or its DICM marker)."""
    name = str(path).lower()
    if name.endswith(PIL_SUFFIXES):
        return PILReader(reverse_indexing=False)
    if name.endswith(NIFTI_SUFFIXES):
        return NibabelReader()
    if is_dicom_file(path):
        return UltrasoundDicomReader(frame=dicom_frame)
    raise ImageLoadError(f"{path}: {UNSUPPORTED}")


def _load(loader: LoadImage, path: Any, dicom_frame: Optional[int]) -> MetaTensor:
    if not isinstance(path, (str, Path)):
        return loader(path)  # already an array (e.g. MONAI Label passes loaded data)
    if not Path(path).is_file():
        raise ImageLoadError(f"{path}: file not found")
    try:
        return loader(str(path), reader_for(str(path), dicom_frame))
    except (ImageLoadError, DicomReadError):
        raise
    except Exception as err:  # PIL, nibabel: their messages do not name the file
        raise ImageLoadError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None


_ARRAY_LOADER: Optional[LoadImage] = None


def load_image(path: str, dicom_frame: Optional[int] = None) -> MetaTensor:
    """Load one file as the training pipeline would, before adding the channel axis."""
    global _ARRAY_LOADER
    if _ARRAY_LOADER is None:
        _ARRAY_LOADER = LoadImage(image_only=True)
    return _load(_ARRAY_LOADER, path, dicom_frame)


class LoadUltrasoundd(LoadImaged):
    """``LoadImaged`` that reads each file with the one reader its name calls for (see module doc).

    Args:
        keys: keys of the image and mask paths.
        dicom_frame: frame of multi-frame DICOM files (required for them).
        allow_missing_keys: inference samples have no mask.
    """

    def __init__(self, keys: KeysCollection, dicom_frame: Optional[int] = None, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, image_only=True, allow_missing_keys=allow_missing_keys)
        self.dicom_frame = dicom_frame

    def __call__(self, data: Mapping[Hashable, Any], reader: Optional[ImageReader] = None) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if reader is not None:
                loaded = self._loader(d[key], reader)
            else:
                loaded = _load(self._loader, d[key], self.dicom_frame)
            # MONAI Label's BundleInferTask sets ``image_only = False`` on every LoadImaged, which
            # makes the loader return (image, meta); the MetaTensor already carries the meta.
            d[key] = loaded[0] if isinstance(loaded, tuple) else loaded
        return d
