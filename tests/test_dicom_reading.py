"""Ultrasound DICOM through the bundle's loader: pixels, orientation, colour, frames, regions, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import Compose, Invertd
from PIL import Image

from munet.data.dicom_reader import DicomReadError
from munet.data.loading import ImageLoadError, load_image
from munet.data.preprocessing import deterministic_transforms
from munet.data.validation import DataValidationError, validate_items
from munet.dataset_tools.dicom_writer import write_mask_dicom, write_ultrasound_dicom

ROWS, COLS = 40, 56


def _gray() -> np.ndarray:
    """Asymmetric test image: 40 rows x 56 columns, a bright block at the top-left."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    image = (40 + xx + yy // 2).astype(np.uint8)
    image[2:12, 3:13] = 240
    return image


def _rgb() -> np.ndarray:
    g = _gray().astype(np.int32)
    return np.stack([g, np.clip(g // 2 + 60, 0, 255), np.clip(220 - g // 2, 0, 255)], axis=-1).astype(np.uint8)


def _mask() -> np.ndarray:
    """Asymmetric lesion: an L shape, so a transposed or flipped mask cannot match."""
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[5:30, 8:14] = 1
    mask[24:30, 8:40] = 1
    return mask


def test_grayscale_monochrome2_exact_pixels_and_orientation(tmp_path):
    path = write_ultrasound_dicom(tmp_path / "gray.dcm", _gray())
    image = load_image(str(path))
    assert tuple(image.shape) == (ROWS, COLS)
    np.testing.assert_array_equal(np.asarray(image), _gray())


def test_rgb_keeps_its_channels_last_then_first_and_exact_pixels(tmp_path):
    path = write_ultrasound_dicom(tmp_path / "rgb.dcm", _rgb(), photometric="RGB")
    image = load_image(str(path))
    assert tuple(image.shape) == (ROWS, COLS, 3)
    np.testing.assert_array_equal(np.asarray(image), _rgb())
    sample = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=None, in_channels=3))(
        {"image": str(path)}
    )
    assert tuple(sample["image"].shape) == (3, 64, 64)  # channel first, padded to multiples of 32


def test_ybr_full_422_jpeg_decodes_to_rgb_close_to_the_source(tmp_path):
    path = write_ultrasound_dicom(tmp_path / "ybr.dcm", _rgb(), photometric="YBR_FULL_422", compression="jpeg")
    assert pydicom.dcmread(path).PhotometricInterpretation == "YBR_FULL_422"
    image = np.asarray(load_image(str(path))).astype(float)
    assert image.shape == (ROWS, COLS, 3)
    assert np.abs(image - _rgb()).mean() < 6  # lossy JPEG, but RGB (not raw YCbCr) and not transposed
    assert image[4:10, 5:11, 0].mean() > 200


def test_grayscale_becomes_one_channel_and_colour_is_turned_gray(tmp_path):
    gray = write_ultrasound_dicom(tmp_path / "g.dcm", _gray())
    rgb = write_ultrasound_dicom(tmp_path / "c.dcm", np.repeat(_gray()[..., None], 3, axis=2), photometric="RGB")
    chain = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=None))
    a, b = chain({"image": str(gray)})["image"], chain({"image": str(rgb)})["image"]
    assert a.shape == b.shape == (1, 64, 64)
    torch.testing.assert_close(a, b, atol=1e-2, rtol=0)


def test_multi_frame_needs_an_explicit_frame(tmp_path):
    frames = np.stack([_gray() // (k + 1) for k in range(5)])
    path = write_ultrasound_dicom(tmp_path / "cine.dcm", frames)
    with pytest.raises(DicomReadError, match="multi-frame file \\(5 frames\\).*dicom_frame"):
        load_image(str(path))
    np.testing.assert_array_equal(np.asarray(load_image(str(path), dicom_frame=3)), frames[3])
    with pytest.raises(DicomReadError, match="frame 7 requested but the file has 5 frames"):
        load_image(str(path), dicom_frame=7)
    with pytest.raises(DataValidationError, match="cine.dcm.*multi-frame"):
        validate_items([{"image": str(path)}], "cine")


def test_multi_frame_rgb_frame_keeps_rows_columns_channels(tmp_path):
    frames = np.stack([_rgb()] * 4)
    frames[2, 30:35, 40:50] = (255, 0, 0)
    path = write_ultrasound_dicom(tmp_path / "cine_rgb.dcm", frames, photometric="RGB")
    np.testing.assert_array_equal(np.asarray(load_image(str(path), dicom_frame=2)), frames[2])


def test_truncated_dicom_is_a_clear_error(tmp_path):
    path = write_ultrasound_dicom(tmp_path / "full.dcm", _gray())
    data = path.read_bytes()
    broken = tmp_path / "truncated.dcm"
    broken.write_bytes(data[: len(data) - 500])
    with pytest.raises((DicomReadError, ImageLoadError), match="truncated.dcm"):
        load_image(str(broken))


def test_compressed_syntax_without_its_decoder_names_the_packages(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here; the missing-decoder message cannot be shown")
    path = write_ultrasound_dicom(tmp_path / "ls.dcm", _gray())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "ls.dcm", enforce_file_format=True)
    with pytest.raises(DicomReadError, match="ls.dcm.*JPEG-LS.*pylibjpeg"):
        load_image(str(tmp_path / "ls.dcm"))


def test_ultrasound_region_crop_keeps_spacing_and_inverts_to_the_full_frame(tmp_path):
    frame = np.zeros((ROWS, COLS), np.uint8)
    frame[:6, :] = 255  # burnt-in text band above the region
    frame[8:38, 4:50] = _gray()[8:38, 4:50]
    # spacing_mm is (column mm, row mm), region (x0, y0, x1, y1) as DICOM states them
    path = write_ultrasound_dicom(tmp_path / "region.dcm", frame, spacing_mm=(0.1, 0.2), region=(4, 8, 49, 37))
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    chain = Compose(deterministic_transforms(image_size=None, class_key=None, keep_original_label=True, crop_to_us_region=True))
    sample = chain({"image": str(path), "label": str(tmp_path / "mask.png")})
    meta = sample["image"].meta
    assert list(np.asarray(meta["us_region"])) == [4, 8, 49, 37]
    # PhysicalDeltaX/Y are stored in cm: 0.1 mm columns, 0.2 mm rows
    np.testing.assert_allclose(np.asarray(meta["us_spacing_mm"]), [0.2, 0.1], rtol=1e-6)
    # cropped to 30 x 46, then padded (symmetrically: 1 row, 9 columns before) to 32 x 64;
    # the bright band is gone and the mask was cropped the same way
    assert tuple(sample["image"].shape) == (1, 32, 64)
    region = sample["image"][0, 1:31, 9:55]
    np.testing.assert_allclose(np.asarray(region), (frame[8:38, 4:50] - frame[8:38, 4:50].min()) / np.ptp(frame[8:38, 4:50]), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(sample["label"][0, 1:31, 9:55]), (mask[8:38, 4:50] > 0).astype(float))
    assert float(sample["label"].sum()) == float((mask > 0).sum())
    # Invertd brings a prediction back to the full 40 x 56 frame, zero outside the region
    sample["pred"] = sample["image"].clone()
    restored = Invertd(keys="pred", transform=chain, orig_keys="image", nearest_interp=False)(sample)["pred"]
    assert tuple(restored.shape) == (1, ROWS, COLS)
    assert float(restored[0, :8].abs().max()) == 0.0
    np.testing.assert_allclose(np.asarray(restored[0, 8:38, 4:50]), np.asarray(region), atol=1e-5)


@pytest.mark.parametrize("mask_format", ["png", "nii", "dcm"])
def test_mask_orientation_matches_the_dicom_image_for_every_mask_reader(tmp_path, mask_format):
    image_path = write_ultrasound_dicom(tmp_path / "image.dcm", _gray(), spacing_mm=None)
    mask = _mask()
    if mask_format == "png":
        mask_path = tmp_path / "mask.png"
        Image.fromarray(mask * 255).save(mask_path)
    elif mask_format == "nii":
        mask_path = tmp_path / "mask.nii.gz"
        nib.save(nib.Nifti1Image(mask, np.eye(4)), mask_path)
    else:
        mask_path = write_mask_dicom(tmp_path / "mask.dcm", mask, reference=pydicom.dcmread(image_path))
    chain = Compose(deterministic_transforms(image_size=None, class_key=None))
    sample = chain({"image": str(image_path), "label": str(mask_path)})
    assert sample["image"].shape == sample["label"].shape == (1, 64, 64)
    # DivisiblePadd pads symmetrically: 12 rows and 4 columns before the 40 x 56 frame
    np.testing.assert_array_equal(np.asarray(sample["label"][0, 12:52, 4:60]), mask)
    assert float(sample["image"][0, 12 + 6, 4 + 8]) == 1.0  # the bright block is at the top-left of the frame
    # the bright image block and the mask are placed in the same (rows, columns) frame
    np.testing.assert_array_equal(np.asarray(load_image(str(mask_path))) > 0, mask > 0)
