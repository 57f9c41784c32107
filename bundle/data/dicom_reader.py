"""A MONAI image reader for ultrasound DICOM, pinned in ``LoadImaged`` for every DICOM file.

Why not MONAI's ``PydicomReader``: for ultrasound it treats RGB frames as channel-less, scrambles
multi-frame axes (MONAI#8265), swaps rows and columns by default, and ignores the Sequence of
Ultrasound Regions, which holds the only physical spacing a US file has. This reader returns
``(rows, columns)`` or ``(rows, columns, 3)`` arrays (pydicom 3 already converts YBR to RGB),
takes one frame of a multi-frame file only when told which, and puts the B-mode region and its
spacing in flat metadata that collates:

- ``us_region``: ``[x0, y0, x1, y1]`` inclusive pixel bounds of the largest 2D tissue region
  (``[-1, -1, -1, -1]`` when the file declares none);
- ``us_spacing_mm``: ``[row_mm, column_mm]`` of that region (NaN when unknown).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, ensure_tuple

__all__ = ["DicomReadError", "UltrasoundDicomReader", "ultrasound_region", "is_dicom_file", "DICOM_SUFFIXES"]

DICOM_SUFFIXES = (".dcm", ".dicom")
_UNITS_TO_MM = {3: 10.0}  # PhysicalUnits 3 = cm; other units (seconds, Hz, ...) carry no spatial scale
_OPTIONAL_DECODERS = (
    "pip install pylibjpeg>=2.0 pylibjpeg-libjpeg>=2.1 (JPEG Lossless, JPEG-LS), or python-gdcm>=3.0.10, "
    "or pyjpegls>=1.2 (JPEG-LS only)"
)


class DicomReadError(ValueError):
    """A DICOM file that cannot be used, with the file and the reason in the message."""


def is_dicom_file(path: Union[str, Path]) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the DICM marker at byte 128."""
    path = Path(path)
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    if path.suffix or not path.is_file():
        return False
    with open(path, "rb") as stream:
        stream.seek(128)
        return stream.read(4) == b"DICM"


def ultrasound_region(ds: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Bounds ``[x0, y0, x1, y1]`` and spacing ``[row_mm, col_mm]`` of the largest 2D tissue region."""
    best, best_area = None, -1
    for item in ds.get("SequenceOfUltrasoundRegions", []) or []:
        if int(item.get("RegionSpatialFormat", 1)) != 1 or int(item.get("RegionDataType", 1)) != 1:
            continue
        box = [int(item.get(k, -1)) for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")]
        area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
        if min(box) >= 0 and area > best_area:
            best, best_area = item, area
    if best is None:
        return np.full(4, -1, dtype=np.int64), np.full(2, np.nan)
    box = np.array(
        [int(best.get(k)) for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")],
        dtype=np.int64,
    )
    spacing = np.full(2, np.nan)
    for axis, tag in ((0, "Y"), (1, "X")):
        unit = int(best.get(f"PhysicalUnits{tag}Direction", 0))
        delta = best.get(f"PhysicalDelta{tag}")
        if unit in _UNITS_TO_MM and delta is not None:
            spacing[axis] = abs(float(delta)) * _UNITS_TO_MM[unit]
    return box, spacing


class UltrasoundDicomReader(ImageReader):
    """Read 2D ultrasound DICOM (grayscale, RGB, YBR, JPEG, multi-frame) in (rows, columns) order.

    Args:
        frame: frame index for multi-frame files; without it a multi-frame file is an error
            (silently taking frame 0 of a cine loop would train on arbitrary frames).
    """

    def __init__(self, frame: Optional[int] = None) -> None:
        super().__init__()
        self.frame = frame

    def verify_suffix(self, filename: Union[Sequence[str], str]) -> bool:
        return all(is_dicom_file(name) for name in ensure_tuple(filename))

    def read(self, data: Union[Sequence[str], str], **kwargs: Any) -> Union[List[Any], Any]:
        import pydicom
        from pydicom.errors import InvalidDicomError

        datasets = []
        for name in ensure_tuple(data):
            try:
                ds = pydicom.dcmread(str(name), **kwargs)
            except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError) as err:
                raise DicomReadError(f"{name}: unreadable DICOM file ({type(err).__name__}: {err})") from None
            ds.filename = str(name)
            datasets.append(ds)
        return datasets if len(datasets) > 1 else datasets[0]

    def get_data(self, img: Any) -> Tuple[np.ndarray, Dict]:
        arrays: List[np.ndarray] = []
        compatible: Dict = {}
        # a pydicom Dataset is itself iterable (over its elements): never pass it to ensure_tuple
        for ds in img if isinstance(img, (list, tuple)) else [img]:
            array, header = self._one(ds)
            arrays.append(array)
            _copy_compatible_dict(header, compatible)
        return _stack_images(arrays, compatible), compatible

    def _one(self, ds: Any) -> Tuple[np.ndarray, Dict]:
        name = getattr(ds, "filename", "<dataset>")
        if "PixelData" not in ds:
            raise DicomReadError(f"{name}: has no pixel data")
        pixels = self._pixels(ds, name)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1))
        if frames > 1:
            if self.frame is None:
                raise DicomReadError(
                    f"{name}: multi-frame file ({frames} frames); choose one with the config value dicom_frame "
                    "(e.g. --dicom_frame 0)"
                )
            if not -frames <= self.frame < frames:
                raise DicomReadError(f"{name}: frame {self.frame} requested but the file has {frames} frames")
            pixels = pixels[self.frame]
        expected = 3 if samples == 3 else 2
        if pixels.ndim != expected:
            raise DicomReadError(f"{name}: pixel array shape {pixels.shape} does not match SamplesPerPixel={samples}")
        box, spacing = ultrasound_region(ds)
        header: Dict[str, Any] = {
            MetaKeys.SPATIAL_SHAPE: np.asarray(pixels.shape[:2]),
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if samples == 3 else float("nan"),
            "us_region": box,
            "us_spacing_mm": spacing,
            "modality": str(ds.get("Modality", "")),
            "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        }
        return np.ascontiguousarray(pixels), header

    @staticmethod
    def _pixels(ds: Any, name: str) -> np.ndarray:
        from pydicom.pixels import get_decoder

        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        if syntax is not None and syntax.is_compressed:
            try:
                decoder = get_decoder(syntax)
            except NotImplementedError:
                raise DicomReadError(f"{name}: no decoder exists for transfer syntax {syntax.name}") from None
            if not decoder.is_available:
                raise DicomReadError(
                    f"{name}: {syntax.name} needs an optional decoder package that is not installed: {_OPTIONAL_DECODERS}"
                )
        try:
            return np.asarray(ds.pixel_array)
        except Exception as err:  # pydicom raises several types for truncated or corrupt pixel data
            raise DicomReadError(f"{name}: pixel data cannot be decoded ({type(err).__name__}: {err})") from None
