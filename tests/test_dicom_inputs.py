"""Every input kind of docs/dicom.md, each on a file written by plain pydicom, nibabel or PIL.

Not by ``munet/dataset_tools/dicom_writer.py``: a writer and a reader of the same project can share a
mistake (a reader that ignores ``MONOCHROME1`` passes every test on files a writer never marks
so). Each test is named in the table of docs/dicom.md.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import Compose
from PIL import Image
from plain_dicom import us_dataset
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    BasicTextSRStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from munet.data import datalist, dicom_reader, formats, loading
from munet.data.datalist import DatalistError, image_items
from munet.data.dicom_reader import DicomReadError
from munet.data.folders import scan_folder
from munet.data.loading import ImageLoadError, load_image
from munet.data.preprocessing import deterministic_transforms
from munet.data.validation import DataValidationError, validate_items
from munet.engines.handlers import PredictionWriter

ROWS, COLS = 24, 32
REPO = Path(__file__).resolve().parents[1]


def _gray(dtype=np.uint8, top: int = 255) -> np.ndarray:
    """Asymmetric ramp with a bright block at the top-left (a transposed image cannot match)."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    image = (xx * 5 + yy * 3) % (top // 2)
    image[2:8, 3:9] = top
    return image.astype(dtype)


def _rgb() -> np.ndarray:
    g = _gray().astype(np.int32)
    return np.stack([g, np.clip(g // 2 + 60, 0, 255), np.clip(220 - g // 2, 0, 255)], axis=-1).astype(np.uint8)


def _dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", syntax: str = ExplicitVRLittleEndian,
             bits_stored: Optional[int] = None, frames: int = 1) -> Dataset:
    """An Ultrasound Image dataset around ``pixels`` (frames first when ``frames > 1``), by hand."""
    return us_dataset(pixels, photometric, frames=frames, patient_id="P1", syntax=syntax, bits_stored=bits_stored)


def _save(ds: Dataset, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def _loaded(path: str, **kwargs) -> np.ndarray:
    return np.asarray(load_image(path, **kwargs))


# --- pixel values: what the file says the image looks like -------------------------------------


def test_monochrome2_8bit_plain(tmp_path):
    path = _save(_dataset(_gray()), tmp_path / "m2_8.dcm")
    np.testing.assert_array_equal(_loaded(path), _gray())


def test_monochrome2_16bit_plain(tmp_path):
    pixels = _gray(np.uint16, 4095) * 16
    path = _save(_dataset(pixels, bits_stored=16), tmp_path / "m2_16.dcm")
    np.testing.assert_array_equal(_loaded(path), pixels)


@pytest.mark.parametrize("bits_stored,dtype", [(8, np.uint8), (12, np.uint16)])
def test_monochrome1_is_inverted(tmp_path, bits_stored, dtype):
    top = 2**bits_stored - 1
    pixels = _gray(dtype, top)
    path = _save(_dataset(pixels, photometric="MONOCHROME1", bits_stored=bits_stored), tmp_path / "m1.dcm")
    # the bright block is stored as the maximum, which MONOCHROME1 displays black
    np.testing.assert_array_equal(_loaded(path), top - pixels.astype(np.int64))
    assert _loaded(path)[4, 5] == 0


def test_monochrome1_and_monochrome2_give_the_same_network_input(tmp_path):
    negative = _save(_dataset(255 - _gray(), photometric="MONOCHROME1"), tmp_path / "neg.dcm")
    positive = _save(_dataset(_gray()), tmp_path / "pos.dcm")
    chain = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=None))
    a, b = chain({"image": negative})["image"], chain({"image": positive})["image"]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_rescale_slope_intercept_is_applied(tmp_path):
    ds = _dataset(_gray())
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-10"
    np.testing.assert_allclose(_loaded(_save(ds, tmp_path / "rescale.dcm")), _gray() * 2.0 - 10)


def test_modality_lut_sequence_is_applied(tmp_path):
    ds = _dataset(_gray())
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.LUTData = [v * 10 for v in range(256)]
    item["LUTData"].VR = "US"
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = DicomSequence([item])
    np.testing.assert_array_equal(_loaded(_save(ds, tmp_path / "mlut.dcm")), _gray().astype(np.int64) * 10)


def test_voi_window_is_applied_then_monochrome1_inverted(tmp_path):
    ds = _dataset(_gray(), photometric="MONOCHROME1")
    ds.WindowCenter, ds.WindowWidth = "64", "64"
    windowed = pydicom.pixels.apply_voi_lut(_gray(), ds)  # values within 0..255, clipped outside the window
    np.testing.assert_allclose(_loaded(_save(ds, tmp_path / "window.dcm")), 255.0 - windowed, atol=1e-4)
    assert _loaded(str(tmp_path / "window.dcm"))[4, 5] == 0  # above the window: white stored, black shown


def test_voi_lut_sequence_is_applied(tmp_path):
    ds = _dataset(_gray())
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.LUTData = [255 - v for v in range(256)]
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = DicomSequence([item])
    np.testing.assert_array_equal(_loaded(_save(ds, tmp_path / "voilut.dcm")), 255 - _gray().astype(np.int64))


def test_palette_colour_becomes_rgb(tmp_path):
    ds = _dataset(_gray(), photometric="PALETTE COLOR")
    ramp = np.arange(256, dtype=np.uint16)
    for colour, values in (("Red", ramp * 256), ("Green", (255 - ramp) * 256), ("Blue", np.zeros(256, np.uint16))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", values.astype("<u2").tobytes())
    image = _loaded(_save(ds, tmp_path / "palette.dcm"))
    assert image.shape == (ROWS, COLS, 3)
    np.testing.assert_array_equal(image[..., 0], _gray().astype(np.int64) * 256)


def test_rgb_plain(tmp_path):
    path = _save(_dataset(_rgb(), photometric="RGB"), tmp_path / "rgb.dcm")
    np.testing.assert_array_equal(_loaded(path), _rgb())


def test_ybr_full_422_jpeg_baseline_plain(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_rgb(), mode="RGB").save(buffer, format="JPEG", quality=95, subsampling="4:2:2")
    ds = _dataset(_rgb(), photometric="YBR_FULL_422", syntax=JPEGBaseline8Bit)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    image = _loaded(_save(ds, tmp_path / "ybr.dcm")).astype(float)
    assert image.shape == (ROWS, COLS, 3)
    assert np.abs(image - _rgb()).mean() < 8  # decoded to RGB, not left as YCbCr, not transposed


def test_multi_frame_needs_dicom_frame_plain(tmp_path):
    frames = np.stack([_gray() // (k + 1) for k in range(3)])
    path = _save(_dataset(frames, frames=3), tmp_path / "cine.dcm")
    with pytest.raises(DicomReadError, match="cine.dcm: multi-frame file \\(3 frames\\).*dicom_frame"):
        load_image(path)
    np.testing.assert_array_equal(_loaded(path, dicom_frame=2), frames[2])


def test_big_endian_16bit_plain(tmp_path):
    pixels = _gray(np.uint16, 4000) * 7
    path = _save(_dataset(pixels, syntax=ExplicitVRBigEndian), tmp_path / "be.dcm")
    np.testing.assert_array_equal(_loaded(path), pixels)


def _with_region(ds: Dataset, box) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1, region.RegionLocationMaxY1 = box
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.02
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])
    return ds


def test_declared_us_region_plain(tmp_path):
    path = _save(_with_region(_dataset(_gray()), (2, 3, 29, 20)), tmp_path / "region.dcm")
    meta = load_image(path).meta
    assert list(np.asarray(meta["us_region"])) == [2, 3, 29, 20]
    np.testing.assert_allclose(np.asarray(meta["us_spacing_mm"]), [0.2, 0.1])
    sample = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=None, crop_to_us_region=True))(
        {"image": path}
    )
    assert tuple(sample["image"].shape) == (1, 32, 32)  # 18 x 28 cropped, padded to multiples of 32
    assert validate_items([{"image": path}], "regions") == [{"image": path}]


def test_us_region_past_the_frame_edge_is_a_bad_case(tmp_path, caplog):
    path = _save(_with_region(_dataset(_gray()), (2, 3, COLS + 4, 20)), tmp_path / "overflow.dcm")
    with pytest.raises(DataValidationError) as info:
        validate_items([{"image": path}], "regions")
    assert re.search(r"overflow\.dcm: ultrasound region .* reaches past the 24x32 frame.*--crop_to_us_region False", str(info.value))
    good = _save(_dataset(_gray()), tmp_path / "good.dcm")
    with caplog.at_level("WARNING", logger="munet"):
        assert validate_items([{"image": path}, {"image": good}], "regions", skip_bad=True) == [{"image": good}]
    assert "overflow.dcm" in caplog.text
    # without the crop the region does not matter
    assert validate_items([{"image": path}], "regions", crop_to_us_region=False) == [{"image": path}]


# --- files without preamble, empty, undecodable ------------------------------------------------


def _bare(ds: Dataset, path: Path, implicit: bool = True, keep_meta: bool = False) -> str:
    """Write ``ds`` without the 128-byte preamble and ``DICM`` (and without file meta unless asked)."""
    if not keep_meta:
        del ds.file_meta
    else:
        ds.preamble = None
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    data = path.read_bytes()
    assert data[128:132] != b"DICM" and not data.startswith(b"\x00" * 128)
    return str(path)


@pytest.mark.parametrize("implicit", [True, False])
def test_no_preamble_dataset_is_read(tmp_path, implicit):
    path = _bare(_dataset(_gray()), tmp_path / "IM0001", implicit=implicit)
    np.testing.assert_array_equal(_loaded(path), _gray())
    assert formats.file_kind(path) == "dicom"


def test_no_preamble_with_file_meta_is_read(tmp_path):
    ds = _dataset(_gray())
    buffer = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(buffer, ds.file_meta, enforce_standard=True)
    body = io.BytesIO()
    ds.save_as(body, implicit_vr=False, little_endian=True, enforce_file_format=False)
    path = tmp_path / "meta_no_preamble.dcm"
    assert buffer.getvalue().startswith(b"\x02\x00")  # group 0002 first: no preamble, no DICM
    path.write_bytes(buffer.getvalue() + body.getvalue())
    np.testing.assert_array_equal(_loaded(str(path)), _gray())


def test_no_preamble_without_pixels_or_not_dicom_is_refused(tmp_path):
    no_pixels = _dataset(_gray())
    del no_pixels.PixelData
    path = _bare(no_pixels, tmp_path / "nopixels.dcm")
    with pytest.raises(DicomReadError, match="nopixels.dcm: unreadable DICOM file \\(no 'DICM' marker.*no image"):
        load_image(path)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x08\x00\x05\x00" + bytes(range(256)) * 3)
    with pytest.raises(DicomReadError, match="junk.dcm: unreadable DICOM file \\(no 'DICM' marker"):
        load_image(str(junk))


@pytest.mark.parametrize("name", ["empty.dcm", "IM0009", "empty.png"])
def test_zero_byte_file_is_reported_as_empty(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=f"{name}: empty file \\(0 bytes\\)"):
        load_image(str(path))
    with pytest.raises(DataValidationError, match=f"{name}: image cannot be read: empty file \\(0 bytes\\)"):
        validate_items([{"image": str(path)}], "empties")


def test_undecodable_jpeg2000_names_the_file_in_one_line(tmp_path, caplog):
    ds = _dataset(_gray(), syntax=JPEG2000Lossless)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"broken codestream" * 4])
    ds["PixelData"].VR = "OB"
    path = _save(ds, tmp_path / "j2k.dcm")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(DataValidationError) as info:
            validate_items([{"image": path}], "j2k")
    line = str(info.value).splitlines()[1]
    assert line.startswith(f"  {path}: image cannot be read: ") and line.count(path) == 1
    assert "JPEG 2000" in line and ("cannot be decoded" in line or "optional decoder" in line)
    assert "object at 0x" not in line and not line.endswith(":")
    assert not [r for r in caplog.records if r.name.startswith("pydicom") and r.levelno >= logging.ERROR]


# --- NIfTI: 2D with a singleton axis is read, volumes are refused --------------------------------


def test_nifti_2d_with_singleton_third_axis_is_read_as_2d(tmp_path):
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(_gray()[..., None], np.eye(4)), path)
    np.testing.assert_array_equal(_loaded(str(path)), _gray())
    mask = np.zeros((ROWS, COLS, 1), np.uint8)
    mask[5:15, 5:20] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "mask.nii.gz")
    item = {"image": str(path), "label": str(tmp_path / "mask.nii.gz")}
    sample = Compose(deterministic_transforms(class_key=None, image_size=64))(item)
    assert tuple(sample["image"].shape) == tuple(sample["label"].shape) == (1, 64, 64)
    assert validate_items([item], "nifti") == [item]


@pytest.mark.parametrize("slices", [3, 4])
def test_nifti_volume_is_refused_naming_the_file(tmp_path, slices):
    path = tmp_path / f"volume{slices}.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([_gray()] * slices, axis=-1), np.eye(4)), path)
    with pytest.raises(ImageLoadError, match=f"volume{slices}.nii.gz: NIfTI 24x32x{slices} is a volume of {slices} slices"):
        load_image(str(path))
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(_gray(), np.eye(4)), good)
    items = [{"image": str(path)}, {"image": str(good)}]
    with pytest.raises(DataValidationError, match=f"volume{slices}.nii.gz: image cannot be read: NIfTI"):
        validate_items(items, "volumes")
    assert validate_items(items, "volumes", skip_bad=True) == [{"image": str(good)}]


def test_tiff_is_read(tmp_path):
    Image.fromarray(_gray()).save(tmp_path / "scan.tif")
    np.testing.assert_array_equal(_loaded(str(tmp_path / "scan.tif")), _gray())


# --- folders as exported by a PACS or a scanner ----------------------------------------------------


def _export_folder(root: Path) -> Path:
    """Seven images of five kinds in sub-folders, and three files that are not images."""
    _save(_dataset(_gray()), root / "PT0" / "ST0" / "IM0001")
    _save(_dataset(_gray()), root / "PT0" / "ST0" / "1.2.840.113619.2.5.7")
    _bare(_dataset(_gray()), root / "PT0" / "ST0" / "IM0002")
    _save(_dataset(_gray()), root / "series" / "frame.dicom")
    _save(_dataset(_gray()), root / "series" / "frame.DCM")
    Image.fromarray(_gray()).save(root / "scan.tif")
    Image.fromarray(_gray()).save(root / "scan.png")
    (root / "notes.txt").write_text("exported by the scanner")
    (root / "PT0" / "IM0003").write_bytes(b"")
    report = _dataset(_gray())
    del report.PixelData
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    _save(report, root / "PT0" / "SR0001")
    return root


def test_folder_export_finds_every_image_and_names_every_skipped_file(tmp_path, caplog):
    root = _export_folder(tmp_path / "export")
    scan = scan_folder(root)
    found = sorted(str(Path(p).relative_to(root)) for p in scan.images)
    assert found == sorted(["PT0/ST0/IM0001", "PT0/ST0/1.2.840.113619.2.5.7", "PT0/ST0/IM0002",
                            "series/frame.dicom", "series/frame.DCM", "scan.tif", "scan.png"])
    skipped = {str(Path(p).relative_to(root)): why for p, why in scan.skipped}
    assert skipped.keys() == {"notes.txt", "PT0/IM0003", "PT0/SR0001"}
    assert "unknown file type" in skipped["notes.txt"] and "empty file" in skipped["PT0/IM0003"]
    assert "without pixel data (Basic Text SR Storage)" in skipped["PT0/SR0001"]
    with caplog.at_level("INFO", logger="munet"):
        items = image_items(str(root))
    assert len(items) == 7 and "found 7 images in 10 files" in caplog.text
    assert all(name in caplog.text for name in ("notes.txt", "PT0/IM0003", "PT0/SR0001"))
    # and every one of them loads
    assert validate_items(items, "export") == items


def test_folder_with_dicomdir_uses_its_records(tmp_path):
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for number in range(3):
        ds = _dataset(_gray())
        ds.InstanceNumber = number + 1
        fileset.add(ds)
    out = tmp_path / "cd"
    fileset.write(out)
    written = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert len(written) == 3 and all(not p.suffix for p in written)
    written[0].unlink()  # an image the DICOMDIR lists but the copy lost
    scan = scan_folder(out)
    assert len(scan.images) == 3
    reasons = dict(scan.skipped)
    assert list(reasons) == [str(out / "DICOMDIR")] and "DICOMDIR index (3 image records" in reasons[str(out / "DICOMDIR")]
    with pytest.raises(DataValidationError, match=f"(?s)1 of 3 cases.*{re.escape(str(written[0]))}: image file not found"):
        validate_items([{"image": p} for p in scan.images], "cd")


def test_folder_without_images_lists_what_it_found(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DatalistError, match="no images found under .*\n  readme.txt: not an image"):
        image_items(str(tmp_path))


# --- one list of readable suffixes ---------------------------------------------------------------


def test_one_list_of_readable_suffixes():
    assert datalist.IMAGE_SUFFIXES is formats.IMAGE_SUFFIXES
    assert dicom_reader.DICOM_SUFFIXES is formats.DICOM_SUFFIXES
    assert loading.PIL_SUFFIXES is formats.PIL_SUFFIXES and loading.NIFTI_SUFFIXES is formats.NIFTI_SUFFIXES
    assert set(formats.IMAGE_SUFFIXES) >= {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz", ".dcm", ".dicom"}
    # no other module keeps its own copy: no bare suffix literal outside formats.py
    literal = re.compile(r"""["'](\.(?:png|jpe?g|bmp|tiff?|nii(?:\.gz)?|dcm|dicom))["']""")
    copies = []
    for path in (REPO / "bundle").rglob("*.py"):
        if path.name == "formats.py":
            continue
        for match in literal.finditer(path.read_text()):
            if path.name in ("results.py", "server.py") and match.group(1) == ".png":
                continue  # MONAI Label's result / uploaded-label temp file names, not lists of readable inputs
            copies.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert not copies, copies


@pytest.mark.parametrize("name,stem", [("a.nii.gz", "a"), ("b.TIF", "b"), ("c.dicom", "c"), ("IM0001", "IM0001"),
                                       ("1.2.840.5", "1.2.840.5")])
def test_prediction_names_strip_every_readable_suffix(name, stem):
    assert PredictionWriter("/nonexistent")._unique_stem(f"/data/{name}") == stem


def test_batch_sampler_shapes_read_every_kind(tmp_path):
    from munet.data.sampling import case_shapes

    bare = _bare(_with_region(_dataset(_gray()), (2, 3, 29, 20)), tmp_path / "IM0001")
    uid = _save(_dataset(_gray()), tmp_path / "1.2.840.113619.2.5.7")
    nib.save(nib.Nifti1Image(_gray()[..., None], np.eye(4)), tmp_path / "slice.nii.gz")
    Image.fromarray(_gray()).save(tmp_path / "scan.TIFF")
    items = [{"image": p} for p in (bare, uid, str(tmp_path / "slice.nii.gz"), str(tmp_path / "scan.TIFF"))]
    assert case_shapes(items) == [(18, 28), (ROWS, COLS), (ROWS, COLS), (ROWS, COLS)]
