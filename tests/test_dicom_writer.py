"""Round trips of munet/dataset_tools/dicom_writer.py through pydicom: pixels, orientation, tags, regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from munet.dataset_tools.dicom_writer import deterministic_uid, write_mask_dicom, write_ultrasound_dicom

EXPLICIT = "1.2.840.10008.1.2.1"
JPEG = "1.2.840.10008.1.2.4.50"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
ROWS, COLS = 40, 56


def _gray(offset: int = 0) -> np.ndarray:
    """Smooth asymmetric test image, 40 rows x 56 cols, with a bright square at the top-left."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    img = 30 + xx + yy // 2 + offset  # at most 30 + 55 + 19 + offset: no wrap-around, darker than the square
    img[2:12, 3:13] = 235
    return img.astype(np.uint8)


def _rgb(offset: int = 0) -> np.ndarray:
    g = _gray(offset).astype(np.int32)
    rgb = np.stack([g, np.clip(g // 2 + 60, 0, 255), np.clip(220 - g // 2, 0, 255)], axis=-1)
    return rgb.astype(np.uint8)


def _read(path: Path):
    ds = pydicom.dcmread(path)
    assert ds.Modality == "US"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert (ds.Rows, ds.Columns) == (ROWS, COLS)
    return ds


def _assert_bright_top_left(pixels: np.ndarray) -> None:
    """Orientation: the bright square is at rows 2-11, columns 3-12 (not transposed or flipped)."""
    gray = pixels if pixels.ndim == 2 else pixels[..., 0]  # red carries the gray pattern in _rgb
    assert gray[4:10, 5:11].mean() > 200
    assert gray[-12:-2, -13:-3].mean() < gray[4:10, 5:11].mean() - 50


def test_monochrome2_uncompressed(tmp_path: Path) -> None:
    src = _gray()
    path = write_ultrasound_dicom(tmp_path / "g.dcm", src)
    assert path == tmp_path / "g.dcm"
    ds = _read(path)
    assert ds.SOPClassUID == US_IMAGE
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
    assert "NumberOfFrames" not in ds
    np.testing.assert_array_equal(ds.pixel_array, src)
    _assert_bright_top_left(ds.pixel_array)


def test_rgb_uncompressed(tmp_path: Path) -> None:
    src = _rgb()
    ds = _read(write_ultrasound_dicom(tmp_path / "rgb.dcm", src, photometric="RGB"))
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3 and ds.PlanarConfiguration == 0
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert ds.pixel_array.shape == (ROWS, COLS, 3)
    np.testing.assert_array_equal(ds.pixel_array, src)


def test_ybr_full_422_jpeg(tmp_path: Path) -> None:
    src = _rgb()
    ds = _read(write_ultrasound_dicom(tmp_path / "ybr.dcm", src, photometric="YBR_FULL_422", compression="jpeg"))
    assert ds.file_meta.TransferSyntaxUID == JPEG
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.SamplesPerPixel == 3 and ds.PlanarConfiguration == 0
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(ds.LossyImageCompressionRatio) > 1.0
    px = ds.pixel_array  # pydicom 3 converts YCbCr to RGB by default
    assert px.shape == (ROWS, COLS, 3) and px.dtype == np.uint8
    assert np.abs(px.astype(int) - src).mean() < 3
    # channels not swapped: blue is the largest channel in the dark bottom-right corner, red in the bright square
    assert px[-5, -5, 2] > px[-5, -5, 0]
    assert px[6, 6, 0] > px[6, 6, 2]
    _assert_bright_top_left(px)


def test_grayscale_jpeg(tmp_path: Path) -> None:
    src = _gray()
    ds = _read(write_ultrasound_dicom(tmp_path / "gj.dcm", src, compression="jpeg"))
    assert ds.file_meta.TransferSyntaxUID == JPEG
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.LossyImageCompression == "01"
    assert ds.pixel_array.shape == (ROWS, COLS)
    assert np.abs(ds.pixel_array.astype(int) - src).mean() < 3
    _assert_bright_top_left(ds.pixel_array)


@pytest.mark.parametrize(
    "photometric, compression",
    [("MONOCHROME2", None), ("RGB", None), ("MONOCHROME2", "jpeg"), ("YBR_FULL_422", "jpeg")],
)
def test_multiframe(tmp_path: Path, photometric: str, compression: str | None) -> None:
    make = _gray if photometric == "MONOCHROME2" else _rgb
    src = np.stack([make(offset=10 * k) for k in range(5)])  # frames differ
    ds = _read(write_ultrasound_dicom(tmp_path / "mf.dcm", src, photometric=photometric, compression=compression))
    assert ds.SOPClassUID == US_MULTIFRAME
    assert int(ds.NumberOfFrames) == 5
    assert ds.FrameIncrementPointer == pydicom.tag.Tag(0x0018, 0x1063) and float(ds.FrameTime) > 0
    px = ds.pixel_array
    assert px.shape == src.shape
    if compression is None:
        np.testing.assert_array_equal(px, src)
    else:
        assert np.abs(px.astype(int) - src).mean() < 3
    means = [float(f.mean()) for f in px]
    assert means == sorted(means)  # frame order kept
    for frame in px:
        _assert_bright_top_left(frame)


def test_region_tags(tmp_path: Path) -> None:
    ds = _read(write_ultrasound_dicom(tmp_path / "r.dcm", _gray(), spacing_mm=(0.08, 0.12), region=(3, 5, 50, 37)))
    assert len(ds.SequenceOfUltrasoundRegions) == 1
    item = ds.SequenceOfUltrasoundRegions[0]
    assert (item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags) == (1, 1, 0)
    bounds = (item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1)
    assert bounds == (3, 5, 50, 37)
    assert (item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection) == (3, 3)
    assert item.PhysicalDeltaX == pytest.approx(0.008) and item.PhysicalDeltaY == pytest.approx(0.012)  # cm per pixel
    assert (item.ReferencePixelX0, item.ReferencePixelY0) == (0, 0)
    # default region: the whole image
    item = _read(write_ultrasound_dicom(tmp_path / "d.dcm", _gray())).SequenceOfUltrasoundRegions[0]
    bounds = (item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1)
    assert bounds == (0, 0, COLS - 1, ROWS - 1)
    assert item.PhysicalDeltaX == pytest.approx(0.01)
    # spacing unknown: no region sequence
    assert "SequenceOfUltrasoundRegions" not in _read(write_ultrasound_dicom(tmp_path / "n.dcm", _gray(), spacing_mm=None))


def test_uids_and_identifiers(tmp_path: Path) -> None:
    uids = {k: deterministic_uid("test", k) for k in ("study", "series", "sop")}
    assert deterministic_uid("test", "study") == uids["study"] and len(set(uids.values())) == 3
    kwargs = dict(study_uid=uids["study"], series_uid=uids["series"], sop_uid=uids["sop"], patient_id="P7", instance_number=4, description="demo")
    a = write_ultrasound_dicom(tmp_path / "a.dcm", _gray(), **kwargs)
    b = write_ultrasound_dicom(tmp_path / "b.dcm", _gray(), **kwargs)
    assert a.read_bytes() == b.read_bytes()  # nothing random or clock-dependent once the UIDs are given
    ds = _read(a)
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (uids["study"], uids["series"], uids["sop"])
    assert ds.PatientID == "P7" and ds.InstanceNumber == 4 and ds.SeriesDescription == "demo"
    c, d = _read(write_ultrasound_dicom(tmp_path / "c.dcm", _gray())), _read(write_ultrasound_dicom(tmp_path / "d.dcm", _gray()))
    assert c.SOPInstanceUID != d.SOPInstanceUID and c.StudyInstanceUID != d.StudyInstanceUID


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _gray().astype(np.float32))
    with pytest.raises(ValueError, match="YBR_FULL_422"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _rgb(), photometric="RGB", compression="jpeg")
    with pytest.raises(ValueError, match="jpeg"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _rgb(), photometric="YBR_FULL_422")
    with pytest.raises(ValueError, match="RGB"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _gray(), photometric="RGB")
    with pytest.raises(ValueError, match="photometric"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _gray(), photometric="PALETTE COLOR")
    with pytest.raises(ValueError, match="compression"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _gray(), compression="jpeg2000")
    with pytest.raises(ValueError, match="region"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _gray(), region=(0, 0, COLS, ROWS - 1))
    with pytest.raises(ValueError, match="spacing"):
        write_ultrasound_dicom(tmp_path / "x.dcm", _gray(), spacing_mm=(0.0, 0.1))


@pytest.mark.parametrize("scale", [1, 255])
def test_mask_dicom(tmp_path: Path, scale: int) -> None:
    image = write_ultrasound_dicom(tmp_path / "img.dcm", _gray(), patient_id="P1")
    ref = pydicom.dcmread(image)
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[5:20, 30:50] = scale
    ds = pydicom.dcmread(write_mask_dicom(tmp_path / "mask.dcm", mask, ref))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.Modality == "OT"
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8
    assert (ds.Rows, ds.Columns) == (ROWS, COLS)
    np.testing.assert_array_equal(ds.pixel_array, (mask > 0).astype(np.uint8) * 255)
    assert ds.StudyInstanceUID == ref.StudyInstanceUID and ds.PatientID == "P1"
    assert ds.SOPInstanceUID != ref.SOPInstanceUID and ds.SeriesInstanceUID != ref.SeriesInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == ref.SOPInstanceUID
    # without a reference; bool input
    alone = pydicom.dcmread(write_mask_dicom(tmp_path / "alone.dcm", mask > 0))
    np.testing.assert_array_equal(alone.pixel_array, (mask > 0).astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="binary"):
        write_mask_dicom(tmp_path / "bad.dcm", mask * 0 + np.arange(COLS, dtype=np.uint8)[None])
    with pytest.raises(ValueError, match="reference"):
        write_mask_dicom(tmp_path / "bad.dcm", mask[:-1], ref)
