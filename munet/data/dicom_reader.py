"""A MONAI image reader for ultrasound DICOM, pinned in ``LoadImaged`` for every DICOM file.

Why not MONAI's ``PydicomReader``: for ultrasound it treats RGB frames as channel-less, scrambles
multi-frame axes (MONAI#8265), swaps rows and columns by default, and ignores the Sequence of
Ultrasound Regions, which holds the only physical spacing a US file has. This reader returns
``(rows, columns)`` or ``(rows, columns, 3)`` arrays (pydicom 3 already converts YBR to RGB) of
displayed values (LUTs applied, ``MONOCHROME1`` inverted: :mod:`.dicom_pixels`), takes one
frame of a multi-frame file only when told which, and puts the B-mode region and its spacing in
flat metadata that collates:

- ``us_region``: ``[x0, y0, x1, y1]`` inclusive pixel bounds of the largest 2D tissue region
  (``[-1, -1, -1, -1]`` when the file declares none);
- ``us_spacing_mm``: ``[row_mm, column_mm]`` of that region (NaN when unknown).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, ensure_tuple

from munet.constants import US_REGION_KEY, US_SPACING_KEY
from munet.data.dicom_pixels import display_pixels
from munet.data.formats import DICOM_SUFFIXES, is_dicom_content, kind_by_name
from munet.errors import BadInputError

__all__ = ["DicomReadError", "UltrasoundDicomReader", "ultrasound_region", "is_dicom_file", "read_dataset", "DICOM_SUFFIXES"]

_UNITS_TO_MM = {3: 10.0}  # PhysicalUnits 3 = cm; other units (seconds, Hz, ...) carry no spatial scale
_OPTIONAL_DECODERS = (
    "pip install pylibjpeg>=2.0 pylibjpeg-libjpeg>=2.1 (JPEG Lossless, JPEG-LS), or python-gdcm>=3.0.10, "
    "or pyjpegls>=1.2 (JPEG-LS only)"
)
_OBJECT_REPR = re.compile(r"\s*<[^<>]* object at 0x[0-9a-fA-F]+>")
_ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins:"


class DicomReadError(BadInputError):
    """A DICOM file that cannot be used, with the file and the reason in the message."""


def is_dicom_file(path: Union[str, Path]) -> bool:
    """True for a ``.dcm``/``.dicom`` name, or a file of another name that starts like DICOM.

    Content decides for names without a known image suffix: ``IM0001``, UID names such as
    ``1.2.840.113619.2.5.7``, ``.IMA``; both the ``DICM`` marker and a bare dataset count.
    """
    kind = kind_by_name(path)
    if kind is not None:
        return kind == "dicom"
    return Path(path).is_file() and is_dicom_content(path)


# pydicom logs every failed decoder plugin with a traceback that does not name the file; the
# reader reports the same failure itself, with the file, so those records are dropped while it
# decodes (per thread: validation reads in several threads).
_DECODING = threading.local()


class _DropDecoderTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_DECODING, "active", False) and record.levelno >= logging.ERROR)


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_DropDecoderTracebacks())


def _one_line(err: BaseException) -> str:
    """An exception as one line: its lines joined, object reprs (``<_io.BytesIO ...>``) removed."""
    text = _OBJECT_REPR.sub("", " ".join(str(err).split()))
    if text.startswith(_ALL_PLUGINS_FAILED):  # pydicom's decoder: keep each plugin's own reason
        return text[len(_ALL_PLUGINS_FAILED) :].strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _set_transfer_syntax(ds: Any, name: str) -> None:
    """Give a dataset read without file meta the (uncompressed) transfer syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:
        raise DicomReadError(f"{name}: compressed (encapsulated) pixel data but no Transfer Syntax UID says which codec")
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = True, True
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


# warnings.catch_warnings changes process-wide state: one forced read at a time keeps the
# filters of concurrent readers (validation uses threads) from being restored out of order
_FORCED_READ = threading.Lock()


def read_dataset(name: Union[str, Path], **kwargs: Any) -> Any:
    """``pydicom.dcmread`` with a clear error; files without preamble/``DICM`` are read with force.

    Such files (older scanners, some exports) are accepted only when they parse as a dataset with
    pixel data; anything else is refused as unreadable, saying why. An empty file says so.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = str(name)
    if Path(name).is_file() and Path(name).stat().st_size == 0:
        raise DicomReadError(f"{name}: empty file (0 bytes)")
    errors = (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError)
    try:
        ds = pydicom.dcmread(name, **kwargs)
    except InvalidDicomError:
        # parsing any file with force warns about whatever its bytes resemble (charsets, lengths):
        # the outcome is checked below and a refusal says why, so those warnings are not shown
        with _FORCED_READ, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(name, force=True, **kwargs)
            except errors as err:
                raise DicomReadError(
                    f"{name}: unreadable DICOM file (no 'DICM' marker, and it does not parse as a dataset: {_one_line(err)})"
                ) from None
        required = ("Rows", "Columns") + (() if kwargs.get("stop_before_pixels") else ("PixelData",))
        if any(key not in ds for key in required):
            raise DicomReadError(
                f"{name}: unreadable DICOM file (no 'DICM' marker, and read without it there is no image: "
                "no rows, columns and pixel data)"
            )
    except errors as err:
        raise DicomReadError(f"{name}: unreadable DICOM file ({_one_line(err)})") from None
    _set_transfer_syntax(ds, name)
    ds.filename = name
    return ds


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

    Values are those a viewer shows (:mod:`.dicom_pixels`: Modality LUT or Rescale, VOI LUT or
    window, ``MONOCHROME1`` inverted, ``PALETTE COLOR`` expanded to RGB). Files without preamble
    and ``DICM`` marker are read when they parse as an image dataset (:func:`read_dataset`).

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
        datasets = [read_dataset(name, **kwargs) for name in ensure_tuple(data)]
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
            sop = ds.get("SOPClassUID")
            kind = f" ({getattr(sop, 'name', sop)})" if sop else ""
            raise DicomReadError(f"{name}: DICOM object without pixel data{kind}: not an image")
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
        try:
            pixels = display_pixels(ds, pixels)
        except Exception as err:  # a malformed LUT or window: say so rather than train on raw values
            raise DicomReadError(f"{name}: its Modality/VOI LUT or palette cannot be applied ({_one_line(err)})") from None
        box, spacing = ultrasound_region(ds)
        header: Dict[str, Any] = {
            MetaKeys.SPATIAL_SHAPE: np.asarray(pixels.shape[:2]),
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if pixels.ndim == 3 else float("nan"),
            US_REGION_KEY: box,
            US_SPACING_KEY: spacing,
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
        _DECODING.active = True
        try:
            return np.asarray(ds.pixel_array)
        except Exception as err:  # pydicom raises several types for truncated or corrupt pixel data
            codec = f"{syntax.name} " if syntax is not None and syntax.is_compressed else ""
            raise DicomReadError(f"{name}: {codec}pixel data cannot be decoded ({_one_line(err)})") from None
        finally:
            _DECODING.active = False
