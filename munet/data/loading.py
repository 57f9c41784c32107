"""Loading images and masks with exactly one reader per file type, chosen by name or content.

``LoadImaged(reader=[...])`` tries every listed reader and then MONAI's default ones (ITKReader
first when itk is installed, as MONAI Label installs it), so a file one reader refuses can
silently come back from another with other axes. :class:`LoadUltrasoundd` instead picks the
reader from the file type (:mod:`.formats`, the one list of readable suffixes) and uses only that:

- ``.png .jpg .jpeg .bmp .tif .tiff``: ``PILReader(reverse_indexing=False)``; images (not masks)
  through :func:`~munet.data.pil_modes.as_displayed`, so every PIL mode reads as a viewer shows it
- ``.nii .nii.gz``: :class:`Nifti2DReader` (NIfTI, as one 2D image)
- ``.dcm .dicom``, or any other name whose content is DICOM (``IM0001``, UID names, files
  without the preamble): :class:`UltrasoundDicomReader`

All return (rows, columns[, channels]), so a PNG mask lines up with a DICOM or NIfTI image.
It subclasses ``LoadImaged`` so tools that look for the loader (MONAI Label) still find it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Hashable, Mapping, Optional, Tuple

import numpy as np
from monai.config import KeysCollection
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader
from monai.transforms import LoadImage, LoadImaged
from monai.utils import MetaKeys

from munet.data.dicom_reader import DicomReadError, UltrasoundDicomReader
from munet.data.formats import NIFTI_SUFFIXES, PIL_SUFFIXES, SUPPORTED, file_kind
from munet.data.pil_modes import as_displayed
from munet.errors import BadInputError

__all__ = [
    "ImageLoadError",
    "UNSUPPORTED",
    "Nifti2DReader",
    "reader_for",
    "load_image",
    "LoadUltrasoundd",
    "PIL_SUFFIXES",
    "NIFTI_SUFFIXES",
]

UNSUPPORTED = f"unsupported file type (expected {SUPPORTED})"


class ImageLoadError(BadInputError):
    """An image or mask file that cannot be loaded; the message names the file."""


class Nifti2DReader(NibabelReader):
    """MONAI's ``NibabelReader`` that returns one 2D image or says why the file is not one.

    A 2D NIfTI is often stored with a singleton third axis (rows, columns, 1): read as 3D it
    crashed in ``Resized`` or the network's 2D check, so singleton axes after the second are
    dropped. A volume with 3 or 4 slices was taken for a colour image and crashed deep in the
    chain without naming the file; every volume with more than one slice is now refused here.
    """

    def get_data(self, img: Any) -> Tuple[np.ndarray, Dict]:
        name = img.get_filename() if hasattr(img, "get_filename") else "<NIfTI image>"
        array, header = super().get_data(img)
        shape = tuple(array.shape)
        while array.ndim > 2 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise ImageLoadError(
                f"{name}: NIfTI {'x'.join(map(str, shape))} is a volume of {int(np.prod(shape[2:]))} slices, "
                "not one 2D image (rows x columns, optionally x 1)"
            )
        header[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape)
        return array, header


def reader_for(path: str, dicom_frame: Optional[int] = None, mask: bool = False) -> ImageReader:
    """The one reader used for ``path``, chosen by its suffix, or by its content for DICOM. A
    ``mask`` keeps its stored values (a palette mask's indices); an image reads as displayed."""
    kind = file_kind(path)
    if kind == "pil":
        return PILReader(reverse_indexing=False, converter=None if mask else as_displayed)
    if kind == "nifti":
        return Nifti2DReader()
    if kind == "dicom":
        return UltrasoundDicomReader(frame=dicom_frame)
    raise ImageLoadError(f"{path}: {UNSUPPORTED}")


def _load(loader: LoadImage, path: Any, dicom_frame: Optional[int], mask: bool = False) -> MetaTensor:
    if not isinstance(path, (str, Path)):
        return loader(path)  # already an array (e.g. MONAI Label passes loaded data)
    if not Path(path).is_file():
        raise ImageLoadError(f"{path}: file not found")
    if Path(path).stat().st_size == 0:
        raise ImageLoadError(f"{path}: empty file (0 bytes)")
    try:
        return loader(str(path), reader_for(str(path), dicom_frame, mask))
    except (ImageLoadError, DicomReadError):
        raise
    except Exception as err:  # PIL, nibabel: their messages do not name the file
        text = " ".join(str(err).split())
        raise ImageLoadError(f"{path}: {type(err).__name__}: {text}" if text else f"{path}: {type(err).__name__}") from None


_ARRAY_LOADER: Optional[LoadImage] = None


def load_image(path: str, dicom_frame: Optional[int] = None, mask: bool = False) -> MetaTensor:
    """Load one file as the training pipeline would, before adding the channel axis (a ``mask``
    with its stored values)."""
    global _ARRAY_LOADER
    if _ARRAY_LOADER is None:
        _ARRAY_LOADER = LoadImage(image_only=True)
    return _load(_ARRAY_LOADER, path, dicom_frame, mask)


class LoadUltrasoundd(LoadImaged):
    """``LoadImaged`` that reads each file with the one reader its type calls for (see module doc).

    Args:
        keys: keys of the image and mask paths.
        dicom_frame: frame of multi-frame DICOM files (required for them).
        allow_missing_keys: inference samples have no mask.
        mask_keys: the keys among ``keys`` that hold masks (read with their stored values).
    """

    def __init__(self, keys: KeysCollection, dicom_frame: Optional[int] = None, allow_missing_keys: bool = True,
                 mask_keys: KeysCollection = ("label",)) -> None:
        super().__init__(keys, image_only=True, allow_missing_keys=allow_missing_keys)
        self.dicom_frame = dicom_frame
        self.mask_keys = {mask_keys} if isinstance(mask_keys, str) else set(mask_keys)

    def __call__(self, data: Mapping[Hashable, Any], reader: Optional[ImageReader] = None) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if reader is not None:
                loaded = self._loader(d[key], reader)
            else:
                loaded = _load(self._loader, d[key], self.dicom_frame, key in self.mask_keys)
            # MONAI Label's BundleInferTask sets ``image_only = False`` on every LoadImaged, which
            # makes the loader return (image, meta); the MetaTensor already carries the meta.
            d[key] = loaded[0] if isinstance(loaded, tuple) else loaded
        return d
