"""Bad input gets a clear error naming the file and the problem, before training starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from munet.data.datalist import DatalistError, load_datalist
from munet.data.validation import DataValidationError, checked_datalist, validate_items
from munet.networks import MUNet


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture()
def good_case(tmp_path):
    image = np.full((40, 56), 120, np.uint8)
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:30] = 255
    return {"image": _png(tmp_path / "img.png", image), "label": _png(tmp_path / "mask.png", mask), "class": 1}


def _problem(items) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_items(items, "test list")
    return str(info.value)


def test_good_case_passes(good_case):
    assert validate_items([good_case], "test list") == [good_case]


def test_missing_image_file(good_case, tmp_path):
    case = {**good_case, "image": str(tmp_path / "gone.png")}
    message = _problem([case])
    assert "gone.png" in message and "image file not found" in message


def test_missing_mask_file(good_case, tmp_path):
    message = _problem([{**good_case, "label": str(tmp_path / "nomask.png")}])
    assert "nomask.png" in message and "mask file not found" in message


def test_mask_size_differs_from_image(good_case, tmp_path):
    small = _png(tmp_path / "small.png", np.zeros((40, 50), np.uint8))
    message = _problem([{**good_case, "label": small}])
    assert "small.png" in message and "40x50" in message and "40x56" in message


def test_mask_not_binary(good_case, tmp_path):
    ramp = _png(tmp_path / "ramp.png", np.tile(np.arange(56, dtype=np.uint8), (40, 1)))
    message = _problem([{**good_case, "label": ramp}])
    assert "ramp.png" in message and "not binary" in message


def test_empty_lesion_where_required(good_case, tmp_path):
    empty = _png(tmp_path / "empty.png", np.zeros((40, 56), np.uint8))
    message = _problem([{**good_case, "label": empty}])
    assert "empty.png" in message and "empty" in message
    # allowed for normal images when asked
    assert validate_items([{**good_case, "label": empty}], "normals", require_lesion=False)


def test_unknown_class_value(good_case):
    message = _problem([{**good_case, "class": 3}])
    assert "img.png" in message and "unknown class value 3" in message


def test_truncated_png(good_case, tmp_path):
    data = Path(good_case["image"]).read_bytes()
    broken = tmp_path / "truncated.png"
    broken.write_bytes(data[: len(data) // 2])
    message = _problem([{**good_case, "image": str(broken)}])
    assert "truncated.png" in message and "cannot be read" in message


def test_unreadable_dicom(good_case, tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 64 + b"not a dicom file at all")
    message = _problem([{**good_case, "image": str(junk)}])
    assert "junk.dcm" in message and "unreadable DICOM" in message


def test_every_bad_case_is_listed_at_once(good_case, tmp_path):
    message = _problem([{**good_case, "class": 9}, {**good_case, "image": str(tmp_path / "x.png")}, good_case])
    assert message.startswith("2 of 3 cases")


def test_skip_bad_cases_keeps_the_good_ones(good_case, tmp_path, caplog):
    items = [{**good_case, "class": 9}, good_case]
    with caplog.at_level("WARNING", logger="munet"):
        assert validate_items(items, "test list", skip_bad=True) == [good_case]
    assert "skipped 1 of 2 cases" in caplog.text


def test_empty_datalist(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": []}))
    with pytest.raises(DatalistError, match="'training' list is empty"):
        load_datalist(str(path), "training")
    with pytest.raises(DatalistError, match="is empty"):
        validate_items([], "nothing")


def test_missing_datalist_and_split(tmp_path):
    with pytest.raises(DatalistError, match="datalist not found"):
        load_datalist(str(tmp_path / "none.json"))
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.png"}]}))
    with pytest.raises(DatalistError, match="has no 'validation' list"):
        checked_datalist(str(path), "validation", str(tmp_path))


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        MUNet(backbone="resnet51")
    assert "resnet51" in str(info.value) and "efficientnet_lite0" in str(info.value)
