"""Tests of the synthetic ultrasound generator (munet/dataset_tools/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage as ndi

from munet.dataset_tools.demo_dataset import _draw_size, generate_demo_dataset
from munet.dataset_tools.ultrasound_simulator import make_case

SMALL = {"n_train": 6, "n_val": 3, "n_test": 3, "min_size": 128, "max_size": 160}


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    datalist = generate_demo_dataset(str(out), n_train=10, n_val=5, n_test=5, min_size=128, max_size=160, seed=1)
    return out, datalist


@pytest.fixture(scope="module")
def cases() -> list[tuple[int, np.ndarray, np.ndarray]]:
    """60 small cases (30 benign, 30 malignant) drawn directly with make_case."""
    out = []
    for i in range(60):
        rng = np.random.default_rng([2024, i])
        h, w = int(rng.integers(128, 161)), int(rng.integers(128, 161))
        label = i % 2
        img, mask = make_case(rng, h, w, malignant=bool(label))
        out.append((label, img, mask))
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def test_make_case_types_and_mask() -> None:
    rng = np.random.default_rng(0)
    for malignant in (False, True):
        img, mask = make_case(rng, 141, 157, malignant)
        assert img.shape == (141, 157) and mask.shape == (141, 157)
        assert img.dtype == np.uint8 and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 1}
        assert 0 < mask.sum() < mask.size
        assert img.std() > 10  # not a flat image


def test_determinism(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_demo_dataset(str(a), seed=5, **SMALL)
    generate_demo_dataset(str(b), seed=5, **SMALL)
    generate_demo_dataset(str(c), seed=6, **SMALL)
    files_a, files_b, files_c = _all_bytes(a), _all_bytes(b), _all_bytes(c)
    assert len(files_a) == 2 * 12 + 1
    assert files_a == files_b
    diff = [k for k in files_a if k.startswith("images/") and files_a[k] != files_c.get(k)]
    assert len(diff) == 12


def test_datalist_structure(dataset: tuple[Path, dict]) -> None:
    out, datalist = dataset
    on_disk = json.loads((out / "datalist.json").read_text())
    assert on_disk == datalist
    assert datalist["labels"] == {"0": "background", "1": "lesion"}
    assert datalist["classes"] == {"0": "benign", "1": "malignant"}
    assert isinstance(datalist["name"], str) and isinstance(datalist["description"], str)
    expected = {"training": 10, "validation": 5, "test": 5}
    seen: set[str] = set()
    sizes = set()
    for split, n in expected.items():
        entries = datalist[split]
        assert len(entries) == n
        assert sum(e["class"] for e in entries) == round(n * 0.4)
        for e in entries:
            assert set(e) == {"image", "label", "class"}
            assert e["class"] in (0, 1)
            for key in ("image", "label"):
                assert not os.path.isabs(e[key])
                assert (out / e[key]).is_file()
            assert e["image"] not in seen
            seen.add(e["image"])
            img = Image.open(out / e["image"])
            msk = Image.open(out / e["label"])
            assert img.mode == "L" and msk.mode == "L"
            assert img.size == msk.size
            w, h = img.size
            assert 128 <= w <= 160 and 128 <= h <= 160
            sizes.add((h, w))
            m = np.asarray(msk)
            assert set(np.unique(m).tolist()) == {0, 255}
    assert len(sizes) > 1  # varied, non-square sizes
    assert any(h != w for h, w in sizes)


def test_lesion_is_darker(cases: list) -> None:
    diffs = []
    for _, img, mask in cases:
        m = mask.astype(bool)
        ring = ndi.binary_dilation(m, iterations=5) & ~m
        diffs.append(img[ring].mean() - img[m].mean())
    diffs = np.array(diffs)
    assert (diffs > 0).mean() >= 0.95
    assert diffs.mean() > 20


def test_orientation(cases: list) -> None:
    ratios = {0: [], 1: []}
    for label, _, mask in cases[:40]:
        y0, y1, x0, x1 = _bbox(mask)
        ratios[label].append((x1 - x0 + 1) / (y1 - y0 + 1))  # width / height
    assert np.mean(ratios[0]) > 1.15  # benign: wider than tall
    assert np.mean(ratios[1]) < 0.95  # malignant: taller than wide


def _posterior_ratio(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean intensity in the column below the lesion / mean at the same depth beside it."""
    y0, y1, x0, x1 = _bbox(mask)
    h, w = y1 - y0 + 1, x1 - x0 + 1
    r0, r1 = min(y1 + 2, img.shape[0] - 1), min(y1 + 2 + h, img.shape[0])
    below = img[r0:r1, x0 + w // 4 : x1 - w // 4 + 1].astype(float)
    side = np.ones(img.shape[1], bool)
    side[max(0, x0 - 3) : x1 + 4] = False
    lateral = img[r0:r1][:, side].astype(float)
    return float(below.mean() / max(lateral.mean(), 1.0))


def test_malignant_shadowing(cases: list) -> None:
    ratios = {0: [], 1: []}
    for label, img, mask in cases:
        ratios[label].append(_posterior_ratio(img, mask))
    assert np.mean(ratios[1]) < np.mean(ratios[0]) - 0.1
    assert np.mean(ratios[1]) < 0.95  # darker below malignant lesions than beside them


def test_single_feature_is_informative_but_not_perfect(cases: list) -> None:
    labels = np.array([c[0] for c in cases])
    feature = []
    for _, _, mask in cases:
        y0, y1, x0, x1 = _bbox(mask)
        feature.append(np.log((y1 - y0 + 1) / (x1 - x0 + 1)))  # log(height / width)
    feature = np.array(feature)
    best = max(((feature > t) == labels).mean() for t in np.unique(feature))
    assert 0.7 < best < 1.0


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_demo_dataset(str(tmp_path), min_size=200, max_size=100)
    with pytest.raises(ValueError):
        generate_demo_dataset(str(tmp_path), malignant_fraction=1.5)
    with pytest.raises(ValueError):
        make_case(np.random.default_rng(0), 16, 64, True)
    with pytest.raises(ValueError):
        generate_demo_dataset(str(tmp_path), image_format="nifti")


# ----------------------------------------------------------------------------------------------
# image_format="dicom"
# ----------------------------------------------------------------------------------------------
DICOM_SEED = 3


@pytest.fixture(scope="module")
def dicom_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic_dicom")
    datalist = generate_demo_dataset(str(out), seed=DICOM_SEED, image_format="dicom", **SMALL)
    return out, datalist


def _entries(datalist: dict) -> list[dict]:
    return [e for split in ("training", "validation", "test") for e in datalist[split]]


def _region(ds) -> tuple[int, int, int, int]:
    item = ds.SequenceOfUltrasoundRegions[0]
    return (
        int(item.RegionLocationMinX0),
        int(item.RegionLocationMinY0),
        int(item.RegionLocationMaxX1),
        int(item.RegionLocationMaxY1),
    )


def test_dicom_files_are_ultrasound_dicom(dicom_dataset: tuple[Path, dict]) -> None:
    out, datalist = dicom_dataset
    assert json.loads((out / "datalist.json").read_text()) == datalist
    entries = _entries(datalist)
    assert len(entries) == 12
    uids = set()
    for e in entries:
        assert e["image"].startswith("images/") and e["image"].endswith(".dcm")
        assert e["label"].startswith("masks/") and e["label"].endswith(".png")
        ds = pydicom.dcmread(out / e["image"])
        assert ds.Modality == "US"
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        uids.add(ds.SOPInstanceUID)
        assert len(ds.SequenceOfUltrasoundRegions) == 1
        item = ds.SequenceOfUltrasoundRegions[0]
        assert item.RegionSpatialFormat == 1 and item.RegionDataType == 1
        assert item.PhysicalUnitsXDirection == 3 and item.PhysicalUnitsYDirection == 3
        assert 0.008 <= item.PhysicalDeltaX <= 0.012 and item.PhysicalDeltaY == item.PhysicalDeltaX  # cm
        pixels = ds.pixel_array
        rows, cols = int(ds.Rows), int(ds.Columns)
        assert pixels.shape[:2] == (rows, cols)
        assert pixels.ndim == (2 if ds.SamplesPerPixel == 1 else 3)
        x0, y0, x1, y1 = _region(ds)
        assert 0 < x0 < x1 < cols - 1 and 8 <= y0 < y1 < rows - 1  # black frame on every side
        assert 128 <= x1 - x0 + 1 <= 160 and 128 <= y1 - y0 + 1 <= 160  # the tissue has the drawn size
        # the mask covers the whole frame, same size as the image, lesion inside the region
        mask = np.asarray(Image.open(out / e["label"]))
        assert mask.shape == (rows, cols)
        assert set(np.unique(mask).tolist()) == {0, 255}
        inside = np.zeros_like(mask, dtype=bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        assert mask[~inside].max() == 0
        gray = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
        assert gray[:y0].max() > 150  # burnt-in "text" in the top band
        # the lesion is still the dark structure the mask says it is
        m = mask > 0
        ring = ndi.binary_dilation(m, iterations=4) & ~m & inside
        assert gray[ring].mean() - gray[m].mean() > 5
    assert len(uids) == 12


def test_dicom_variant_mix(dicom_dataset: tuple[Path, dict]) -> None:
    out, datalist = dicom_dataset
    kinds = []
    for e in _entries(datalist):
        ds = pydicom.dcmread(out / e["image"])
        kinds.append((str(ds.PhotometricInterpretation), str(ds.file_meta.TransferSyntaxUID)))
        if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50":
            assert ds.LossyImageCompression == "01"
    explicit, jpeg = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"
    assert set(kinds) == {("MONOCHROME2", explicit), ("RGB", explicit), ("YBR_FULL_422", jpeg), ("MONOCHROME2", jpeg)}
    assert kinds.count(("MONOCHROME2", explicit)) >= 5  # most stay grayscale uncompressed
    assert 2 <= sum(k[1] == jpeg for k in kinds) <= 4  # about 1 in 4 JPEG
    assert 2 <= kinds.count(("RGB", explicit)) <= 4  # about 1 in 4 RGB


def test_dicom_colour_overlays_avoid_the_lesion(dicom_dataset: tuple[Path, dict]) -> None:
    out, datalist = dicom_dataset
    n_rgb = 0
    for e in _entries(datalist):
        ds = pydicom.dcmread(out / e["image"])
        if ds.PhotometricInterpretation != "RGB":
            continue
        n_rgb += 1
        px = ds.pixel_array.astype(int)
        coloured = (px[..., 0] != px[..., 1]) | (px[..., 1] != px[..., 2])
        assert coloured.sum() >= 10  # a caliper cross or a text box
        lesion = ndi.binary_dilation(np.asarray(Image.open(out / e["label"])) > 0, iterations=2)
        assert not (coloured & lesion).any()
    assert n_rgb >= 2


def test_dicom_tissue_matches_png_mode(dicom_dataset: tuple[Path, dict]) -> None:
    """Inside the declared region, a grayscale uncompressed file holds exactly the PNG-mode image."""
    out, datalist = dicom_dataset
    for case_idx, e in enumerate(_entries(datalist)):
        ds = pydicom.dcmread(out / e["image"])
        if ds.PhotometricInterpretation == "MONOCHROME2" and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1":
            break
    else:
        pytest.fail("no grayscale uncompressed file")
    assert e["image"] == f"images/case_{case_idx:04d}.dcm"
    rng = np.random.default_rng([DICOM_SEED, 1, case_idx])
    h, w = _draw_size(rng, SMALL["min_size"], SMALL["max_size"]), _draw_size(rng, SMALL["min_size"], SMALL["max_size"])
    image, mask = make_case(rng, h, w, malignant=bool(e["class"]))
    x0, y0, x1, y1 = _region(ds)
    np.testing.assert_array_equal(ds.pixel_array[y0 : y1 + 1, x0 : x1 + 1], image)
    full_mask = np.asarray(Image.open(out / e["label"]))
    np.testing.assert_array_equal(full_mask[y0 : y1 + 1, x0 : x1 + 1], mask * 255)


def test_dicom_determinism(dicom_dataset: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dicom_dataset
    again = tmp_path / "again"
    generate_demo_dataset(str(again), seed=DICOM_SEED, image_format="dicom", **SMALL)
    first, second = _all_bytes(out), _all_bytes(again)
    assert len(first) == 2 * 12 + 1
    assert first == second
