"""Writing real ultrasound DICOM files (and lesion masks) with pydicom, for demo data and BUSI.

Two writers:

- :func:`write_ultrasound_dicom`: an Ultrasound Image (single frame, SOP class
  1.2.840.10008.5.1.4.1.1.6.1) or Ultrasound Multi-frame Image (1.2.840.10008.5.1.4.1.1.3.1),
  8-bit grayscale (``MONOCHROME2``) or colour (``RGB``; ``YBR_FULL_422`` for JPEG), uncompressed
  (Explicit VR Little Endian) or JPEG Baseline 8-bit (encoded by Pillow, ``quality=95``), with a
  Sequence of Ultrasound Regions (0018,6011) holding the B-mode region and its physical spacing;
- :func:`write_mask_dicom`: a binary lesion mask as an 8-bit ``MONOCHROME2`` Secondary Capture
  image (values 0/255) that shares patient and study with its ultrasound image.

Nothing here depends on the clock or on random numbers once UIDs are given, so files written with
the same arguments and explicit UIDs are byte-identical (Pillow's JPEG encoder is deterministic).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

__all__ = ["write_ultrasound_dicom", "write_mask_dicom", "deterministic_uid", "PHOTOMETRICS", "COMPRESSIONS"]

#: Photometric interpretations :func:`write_ultrasound_dicom` can write.
PHOTOMETRICS = ("MONOCHROME2", "RGB", "YBR_FULL_422")
#: Values of its ``compression`` argument.
COMPRESSIONS = (None, "jpeg")

_JPEG_QUALITY = 95
_FRAME_TIME_MS = 33.3  # 30 frames/s cine loops
_FRAME_TIME_TAG = Tag(0x0018, 0x1063)  # FrameTime, the FrameIncrementPointer target


def deterministic_uid(*parts: Any) -> str:
    """A UID under pydicom's root derived only from ``parts`` (same parts, same UID).

    ``pydicom.uid.generate_uid`` with ``entropy_srcs``: a SHA-512 hash of the parts, so distinct
    parts give distinct UIDs with overwhelming probability.
    """
    if not parts:
        raise ValueError("deterministic_uid needs at least one part")
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def _file_meta(sop_class: str, sop_uid: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    return meta


def _base_dataset(
    meta: FileMetaDataset,
    *,
    modality: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    instance_number: int,
    description: str,
) -> Dataset:
    """Patient, General Study, General Series, General Equipment, General Image and SOP Common modules.

    Type 2 attributes without a meaningful value (dates, names) are present but empty, which keeps
    the files free of the clock.
    """
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    # Patient
    ds.PatientName = str(patient_id)
    ds.PatientID = str(patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    if description:
        ds.SeriesDescription = str(description)[:64]
    # General Equipment
    ds.Manufacturer = ""
    # General Image
    ds.InstanceNumber = int(instance_number)
    ds.PatientOrientation = ""
    return ds


def _split_frames(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """``pixels`` as (frames, rows, cols[, 3]) uint8, checked against ``photometric``."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {arr.dtype} (scale to 0..255 first)")
    if photometric == "MONOCHROME2":
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim != 3:
            raise ValueError(f"MONOCHROME2 pixels must be (rows, cols) or (frames, rows, cols), got shape {arr.shape}")
    else:
        if arr.ndim == 3 and arr.shape[-1] == 3:
            arr = arr[None]
        elif not (arr.ndim == 4 and arr.shape[-1] == 3):
            raise ValueError(
                f"{photometric} pixels must be (rows, cols, 3) or (frames, rows, cols, 3) RGB, got shape {arr.shape}"
            )
    if min(arr.shape[:3]) < 1:
        raise ValueError(f"empty pixel array, shape {np.asarray(pixels).shape}")
    if arr.shape[1] > 65535 or arr.shape[2] > 65535:
        raise ValueError(f"image too large for DICOM Rows/Columns: {arr.shape[1:3]}")
    return np.ascontiguousarray(arr)


def _jpeg_frame(frame: np.ndarray, photometric: str) -> bytes:
    """One frame as a JPEG Baseline bitstream (Pillow, quality 95; colour with 4:2:2 chroma subsampling)."""
    buf = io.BytesIO()
    if photometric == "YBR_FULL_422":  # Pillow converts RGB to full-range YCbCr (JFIF), as DICOM expects
        Image.fromarray(frame, mode="RGB").save(buf, format="JPEG", quality=_JPEG_QUALITY, subsampling="4:2:2")
    else:
        Image.fromarray(frame, mode="L").save(buf, format="JPEG", quality=_JPEG_QUALITY)
    return buf.getvalue()


def _region_item(region: tuple[int, int, int, int], spacing_mm: tuple[float, float]) -> Dataset:
    """One 2D tissue item of the Sequence of Ultrasound Regions (spacing stored in cm per pixel)."""
    x0, y0, x1, y1 = (int(v) for v in region)
    dx_mm, dy_mm = (float(v) for v in spacing_mm)
    item = Dataset()
    item.RegionSpatialFormat = 1  # 2D (tissue or flow)
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0 = x0
    item.RegionLocationMinY0 = y0
    item.RegionLocationMaxX1 = x1
    item.RegionLocationMaxY1 = y1
    item.PhysicalUnitsXDirection = 3  # cm
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX = dx_mm / 10.0
    item.PhysicalDeltaY = dy_mm / 10.0
    item.ReferencePixelX0 = 0
    item.ReferencePixelY0 = 0
    return item

def _set_pixel_module(ds: Dataset, rows: int, cols: int, samples: int, photometric: str) -> None:
    """The Image Pixel module of an unsigned 8-bit image."""
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0


def _set_native_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Uncompressed 8-bit pixel data, padded to an even length as DICOM requires."""
    ds.LossyImageCompression = "00"
    data = np.ascontiguousarray(pixels).tobytes()
    ds.PixelData = data + (b"\x00" if len(data) % 2 else b"")
    ds["PixelData"].VR = "OB"


def _save(ds: Dataset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path



def write_ultrasound_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    compression: str | None = None,
    spacing_mm: tuple[float, float] | None = (0.1, 0.1),
    region: tuple[int, int, int, int] | None = None,
    patient_id: str = "ANON",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    instance_number: int = 1,
    description: str = "",
) -> Path:
    """Write an 8-bit ultrasound image (or cine loop) as a DICOM Part 10 file.

    Args:
        path: output file (parent folders are created).
        pixels: uint8 ``(rows, cols)`` grayscale or ``(rows, cols, 3)`` RGB; a leading frame axis
            ``(frames, rows, cols[, 3])`` writes an Ultrasound Multi-frame Image (frames > 1) with
            ``NumberOfFrames``, ``FrameTime`` 33.3 ms and ``FrameIncrementPointer`` -> FrameTime.
            A one-frame stack is written as a single-frame Ultrasound Image.
        photometric: ``"MONOCHROME2"`` (grayscale), ``"RGB"`` (uncompressed colour) or
            ``"YBR_FULL_422"`` (colour, only with ``compression="jpeg"``: the RGB pixels are encoded
            by Pillow as YCbCr with 4:2:2 chroma subsampling, as JPEG Baseline colour is stored in DICOM).
        compression: ``None`` (Explicit VR Little Endian, pixels stored exactly) or ``"jpeg"``
            (JPEG Baseline 8-bit, 1.2.840.10008.1.2.4.50, Pillow ``quality=95``, one fragment per frame;
            lossy: ``LossyImageCompression`` "01").
        spacing_mm: ``(x_mm, y_mm)`` = (column, row) pixel size in mm; written as one item of the
            Sequence of Ultrasound Regions (0018,6011) with ``PhysicalDeltaX/Y`` in cm
            (``PhysicalUnitsX/YDirection`` 3). ``None`` writes no region sequence (spacing unknown).
        region: ``(x0, y0, x1, y1)`` inclusive pixel bounds of the B-mode tissue region
            (default: the whole image); only used with ``spacing_mm``.
        patient_id: PatientID and PatientName.
        study_uid, series_uid, sop_uid: UIDs; generated at random by pydicom when not given (pass
            them, e.g. from :func:`deterministic_uid`, for reproducible bytes).
        instance_number: InstanceNumber.
        description: SeriesDescription (cut at 64 characters).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: wrong dtype/shape for ``photometric``, unknown photometric or compression, an
            invalid combination (``RGB`` + jpeg, ``YBR_FULL_422`` uncompressed), region outside the image
            or non-positive spacing.
    """
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if compression == "jpeg" and photometric == "RGB":
        raise ValueError("JPEG Baseline colour is stored as YBR_FULL_422: use photometric='YBR_FULL_422' with compression='jpeg'")
    if compression is None and photometric == "YBR_FULL_422":
        raise ValueError("YBR_FULL_422 is only written JPEG-compressed: use compression='jpeg' (or photometric='RGB')")

    frames = _split_frames(pixels, photometric)
    n_frames, rows, cols = (int(v) for v in frames.shape[:3])
    samples = 1 if photometric == "MONOCHROME2" else 3

    if spacing_mm is not None:
        if len(spacing_mm) != 2 or not all(np.isfinite(float(s)) and float(s) > 0 for s in spacing_mm):
            raise ValueError(f"spacing_mm must be two positive numbers (x_mm, y_mm), got {spacing_mm!r}")
        if region is None:
            region = (0, 0, cols - 1, rows - 1)
        if len(region) != 4:
            raise ValueError(f"region must be (x0, y0, x1, y1), got {region!r}")
        x0, y0, x1, y1 = (int(v) for v in region)
        if not (0 <= x0 <= x1 < cols and 0 <= y0 <= y1 < rows):
            raise ValueError(f"region {tuple(region)} is not inside the {rows}x{cols} image (x0 <= x1 < cols, y0 <= y1 < rows)")

    multi = n_frames > 1
    sop_class = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    sop_uid = sop_uid or str(generate_uid())
    syntax = JPEGBaseline8Bit if compression == "jpeg" else ExplicitVRLittleEndian
    ds = _base_dataset(
        _file_meta(sop_class, sop_uid, syntax),
        modality="US",
        patient_id=patient_id,
        study_uid=study_uid or str(generate_uid()),
        series_uid=series_uid or str(generate_uid()),
        instance_number=instance_number,
        description=description,
    )

    # US Image module (+ Image Pixel)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    _set_pixel_module(ds, rows, cols, samples, photometric)
    if multi:  # Multi-frame + Cine modules
        ds.NumberOfFrames = n_frames
        ds.FrameTime = _FRAME_TIME_MS
        ds.FrameIncrementPointer = _FRAME_TIME_TAG

    if spacing_mm is not None:
        ds.SequenceOfUltrasoundRegions = DicomSequence([_region_item(region, spacing_mm)])

    if compression == "jpeg":
        encoded = [_jpeg_frame(f, photometric) for f in frames]
        ratio = frames.nbytes / max(sum(len(e) for e in encoded), 1)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{ratio:.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        _set_native_pixels(ds, frames)
    return _save(ds, path)


def write_mask_dicom(
    path: str | Path,
    mask: np.ndarray,
    reference: Dataset | None = None,
    *,
    sop_uid: str | None = None,
    series_uid: str | None = None,
) -> Path:
    """Write a binary lesion mask as an 8-bit MONOCHROME2 Secondary Capture image (values 0/255).

    SOP class Secondary Capture Image Storage (1.2.840.10008.5.1.4.1.1.7), Modality ``OT``,
    Explicit VR Little Endian, uncompressed.

    Args:
        path: output file (parent folders are created).
        mask: (rows, cols) binary mask: bool, or integers in {0, 1} or {0, 255}.
        reference: the ultrasound image dataset the mask belongs to (e.g. ``pydicom.dcmread`` of
            it). When given, the mask must have its Rows/Columns, and the file shares its
            PatientID/PatientName and StudyInstanceUID and refers to it in SourceImageSequence.
        sop_uid, series_uid: UIDs of the mask (random when not given).

    Returns:
        ``Path(path)``.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2D (rows, cols), got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    values = set(np.unique(arr).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        raise ValueError(f"mask must be binary (0/1 or 0/255), got values {sorted(values)[:8]}")
    out = np.where(arr > 0, 255, 0).astype(np.uint8)
    rows, cols = out.shape

    patient_id, study_uid = "ANON", None
    if reference is not None:
        ref_shape = (int(reference.Rows), int(reference.Columns))
        if ref_shape != (rows, cols):
            raise ValueError(f"mask is {rows}x{cols} but the reference image is {ref_shape[0]}x{ref_shape[1]}")
        patient_id = str(reference.get("PatientID", "ANON"))
        study_uid = reference.get("StudyInstanceUID")

    sop_uid = sop_uid or str(generate_uid())
    ds = _base_dataset(
        _file_meta(SecondaryCaptureImageStorage, sop_uid, ExplicitVRLittleEndian),
        modality="OT",
        patient_id=patient_id,
        study_uid=str(study_uid) if study_uid else str(generate_uid()),
        series_uid=series_uid or str(generate_uid()),
        instance_number=1,
        description="lesion mask",
    )
    if reference is not None:
        ds.PatientName = reference.get("PatientName", patient_id)
        if "SOPInstanceUID" in reference and "SOPClassUID" in reference:
            src = Dataset()
            src.ReferencedSOPClassUID = reference.SOPClassUID
            src.ReferencedSOPInstanceUID = reference.SOPInstanceUID
            ds.SourceImageSequence = DicomSequence([src])
    ds.ConversionType = "SYN"  # SC Equipment: synthetic image (a drawn mask)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    _set_pixel_module(ds, rows, cols, 1, "MONOCHROME2")
    _set_native_pixels(ds, out)
    return _save(ds, path)
