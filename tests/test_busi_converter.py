"""Tests of the BUSI -> datalist converter (munet/dataset_tools/busi.py, ``munet data busi``).

The real-data tests need the prepared BUSI folder at ``../shared/data/busi`` (relative to the
repository) and are skipped without it; the error-handling tests run everywhere.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from munet.dataset_tools.busi import BusiError, convert_busi, parse_flags, read_manifest

_REPO = Path(__file__).resolve().parents[1]

BUSI_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "busi"
needs_busi = pytest.mark.skipif(
    not (BUSI_DIR / "manifest.csv").is_file(),
    reason=f"prepared BUSI folder not found at {BUSI_DIR} (../shared/data/busi relative to the repository)",
)
SPLIT_KEYS = {"train": "training", "val": "validation", "test": "test"}
LIMIT = 4


def _manifest() -> dict[str, dict[str, str]]:
    with open(BUSI_DIR / "manifest.csv", newline="", encoding="utf-8") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def _check_splits_and_classes(datalist: dict, manifest: dict[str, dict[str, str]], with_normal: bool) -> None:
    for split, key in SPLIT_KEYS.items():
        entries = datalist[key]
        assert len(entries) == LIMIT
        assert Counter(e["class"] for e in entries) == {0: LIMIT // 2, 1: LIMIT // 2}  # both classes kept
        for e in entries:
            assert set(e) == {"image", "label", "class", "id"}
            row = manifest[e["id"]]
            assert row["split"] == split  # split preserved from the manifest
            assert e["class"] == {"benign": 0, "malignant": 1}[row["label"]]
        # deterministic: the first rows of each class of the split, in manifest order
        for label, cls in (("benign", 0), ("malignant", 1)):
            first = [i for i, r in manifest.items() if r["split"] == split and r["label"] == label][: LIMIT // 2]
            assert [e["id"] for e in entries if e["class"] == cls] == first
        if with_normal:
            normal = datalist[f"normal_{key}"]
            assert len(normal) == LIMIT
            for e in normal:
                assert set(e) == {"image", "label", "id"}
                assert manifest[e["id"]]["label"] == "normal" and manifest[e["id"]]["split"] == split
        else:
            assert f"normal_{key}" not in datalist


@needs_busi
def test_png_datalist(tmp_path: Path) -> None:
    manifest = _manifest()
    out = tmp_path / "png"
    datalist = convert_busi(BUSI_DIR, out, limit_per_split=LIMIT, log=None)
    assert json.loads((out / "datalist.json").read_text()) == datalist
    assert datalist["classes"] == {"0": "benign", "1": "malignant"}
    _check_splits_and_classes(datalist, manifest, with_normal=False)
    for key in SPLIT_KEYS.values():
        for e in datalist[key]:
            row = manifest[e["id"]]
            assert e["image"] == str(BUSI_DIR.resolve() / row["image"]) and os.path.isabs(e["image"])
            assert e["label"] == str(BUSI_DIR.resolve() / row["mask"])
            assert Path(e["image"]).is_file() and Path(e["label"]).is_file()
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json"]  # nothing copied


@needs_busi
def test_dicom_conversion(tmp_path: Path) -> None:
    """Through the CLI (Fire parsing included): DICOM pixels equal the PNG pixels exactly."""
    manifest = _manifest()
    out = tmp_path / "dicom"
    cmd = [
        sys.executable, "-m", "munet.cli", "data", "busi",
        "--busi_dir", str(BUSI_DIR),
        "--output_dir", str(out),
        "--to_dicom", "True",
        "--include_normal", "True",
        "--limit_per_split", str(LIMIT),
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "benign" in done.stdout and "malignant" in done.stdout  # the summary table
    datalist = json.loads((out / "datalist.json").read_text())
    _check_splits_and_classes(datalist, manifest, with_normal=True)
    n_files = 0
    for key in [*SPLIT_KEYS.values(), *(f"normal_{k}" for k in SPLIT_KEYS.values())]:
        for e in datalist[key]:
            assert e["image"] == f"dicom/{e['id']}.dcm" and e["label"] == f"masks/{e['id']}.dcm"
            row = manifest[e["id"]]
            image = pydicom.dcmread(out / e["image"])
            mask = pydicom.dcmread(out / e["label"])
            assert image.Modality == "US" and image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
            assert image.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert "SequenceOfUltrasoundRegions" not in image  # BUSI spacing is unknown
            png = np.asarray(Image.open(BUSI_DIR / row["image"]))
            np.testing.assert_array_equal(image.pixel_array, png)
            png_mask = np.asarray(Image.open(BUSI_DIR / row["mask"]))
            np.testing.assert_array_equal(mask.pixel_array, png_mask)
            assert mask.StudyInstanceUID == image.StudyInstanceUID and mask.PatientID == image.PatientID
            if row["label"] == "normal":
                assert mask.pixel_array.max() == 0
            else:
                assert mask.pixel_array.max() == 255
            n_files += 2
    assert n_files == 2 * 2 * 3 * LIMIT
    assert len(list((out / "dicom").iterdir())) == len(list((out / "masks").iterdir())) == n_files // 2

    # reproducible: UIDs come from the case ids
    again = tmp_path / "again"
    convert_busi(BUSI_DIR, again, to_dicom=True, include_normal=True, limit_per_split=LIMIT, log=None)
    for sub in ("dicom", "masks"):
        for f in (out / sub).iterdir():
            assert f.read_bytes() == (again / sub / f.name).read_bytes()


@needs_busi
def test_drop_flags(tmp_path: Path) -> None:
    manifest = _manifest()
    flags = "label_conflict,normal_duplicates_lesion_image"
    datalist = convert_busi(BUSI_DIR, tmp_path, include_normal=True, drop_flags=flags, log=None)
    listed = {e["id"] for k, v in datalist.items() if isinstance(v, list) and v and isinstance(v[0], dict) for e in v}
    dropped = {i for i, r in manifest.items() if set(r["flags"].split(";")) & set(parse_flags(flags))}
    assert dropped and not listed & dropped
    assert listed | dropped == set(manifest)
    # without dropping, the full manifest is listed, split by split
    full = convert_busi(BUSI_DIR, tmp_path / "full", include_normal=True, log=None)
    for split, key in SPLIT_KEYS.items():
        expected = Counter(r["label"] for r in manifest.values() if r["split"] == split)
        assert len(full[key]) == expected["benign"] + expected["malignant"]
        assert len(full[f"normal_{key}"]) == expected["normal"]


def test_parse_flags() -> None:
    assert parse_flags(None) == ()
    assert parse_flags("a, b;c,,a") == ("a", "b", "c")
    assert parse_flags(("a", "b")) == ("a", "b")


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(BusiError, match="not found"):
        convert_busi(tmp_path / "nowhere", tmp_path / "out", log=None)
    with pytest.raises(BusiError, match="manifest.csv"):
        convert_busi(tmp_path, tmp_path / "out", log=None)
    (tmp_path / "manifest.csv").write_text("id,image,label\nbenign_001,images/benign_001.png,benign\n")
    with pytest.raises(BusiError, match="missing column.*mask.*split"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("id,image,mask,label,split,flags\nb1,images/b1.png,masks/b1.png,benign,train,\n")
    with pytest.raises(BusiError, match="image not found"):
        convert_busi(tmp_path, tmp_path / "out", log=None)
    with pytest.raises(BusiError, match="unknown flag"):
        convert_busi(tmp_path, tmp_path / "out", drop_flags="lable_conflict", log=None)
    (tmp_path / "manifest.csv").write_text("id,image,mask,label,split\nb1,images/b1.png,masks/b1.png,benign,holdout\n")
    with pytest.raises(BusiError, match="split"):
        read_manifest(tmp_path)
    # the command turns the error into a one-line exit message (in-process: no second interpreter start)
    from munet.cli import data

    with pytest.raises(SystemExit, match="error: BUSI folder not found"):
        data("busi", busi_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path / "o"))
