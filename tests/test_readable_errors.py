"""Bad input ends a run with one short message, not two chained tracebacks.

The errors are raised inside config expressions, which ``python -m monai.bundle run`` wraps in
``RuntimeError('Failed to evaluate ConfigExpression ...')``; ``munet.errors`` (installed when the
configs import ``bundle``) prints only the bad-input message. The last two tests run the real
command in a subprocess, for training and for inference, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from bundle_helpers import INFERENCE, LOGGING, META, REPO_ROOT, TINY, TRAIN, cli_args, config_arg
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

import munet
from munet import errors
from munet.data.validation import DataValidationError
from munet.engines.bundle_folder import bundle_argv

MAX_ERROR_LINES = 15


def _wrapped(error: BaseException) -> RuntimeError:
    """``error`` as MONAI's config evaluation hands it on."""
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: $munet.data...") from inner
    except RuntimeError as outer:
        return outer


def test_the_hook_is_installed_when_bundle_is_imported():
    assert munet.errors is errors
    assert sys.excepthook is errors._excepthook


def test_bad_input_is_found_under_monai_wrapper():
    inner = DataValidationError("2 of 3 cases in x are unusable")
    assert errors.bad_input_in_chain(_wrapped(inner)) is inner
    assert errors.bad_input_in_chain(_wrapped(KeyError("k"))) is None


def test_hook_prints_only_the_message(capsys, monkeypatch):
    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    outer = _wrapped(DataValidationError("1 of 1 cases in x are unusable:\n  a.png: image file not found"))
    errors._excepthook(RuntimeError, outer, outer.__traceback__)
    assert capsys.readouterr().err == "error: 1 of 1 cases in x are unusable:\n  a.png: image file not found\n"


def test_other_errors_and_the_debug_switch_keep_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    other = _wrapped(KeyError("a bug"))
    errors._excepthook(RuntimeError, other, other.__traceback__)
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(errors.TRACEBACK_ENV, "1")
    bad = _wrapped(DataValidationError("bad"))
    errors._excepthook(RuntimeError, bad, bad.__traceback__)
    assert "Traceback" in capsys.readouterr().err


# --- the real command ------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def _region_past_edge(path: Path) -> str:
    """An ultrasound DICOM (plain pydicom) whose declared region ends 10 columns past the frame."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = UltrasoundImageStorage, generate_uid(), "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 40, 56, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((40, 56), 100, np.uint8).tobytes()
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 0, 0, 65, 39
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def _five_bad_images(folder: Path) -> list:
    """Five images that are each unusable in another way: a 3-slice NIfTI, an empty file, a file that
    is no DICOM, a truncated PNG, a DICOM whose ultrasound region ends past the frame."""
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((40, 56, 3), np.uint8), np.eye(4)), folder / "volume.nii.gz")
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "junk.dcm").write_bytes(b"\x08\x00\x05\x00" + bytes(range(256)) * 2)
    broken = folder / "truncated.png"
    _png(broken, np.full((40, 56), 90))
    broken.write_bytes(broken.read_bytes()[:60])
    return [str(folder / "volume.nii.gz"), str(folder / "empty.dcm"), str(folder / "junk.dcm"), str(broken),
            _region_past_edge(folder / "region.dcm")]


def _run(args: list, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop(errors.TRACEBACK_ENV, None)
    return subprocess.run(bundle_argv("run", *args), cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _assert_short_report(result: subprocess.CompletedProcess, bad: list, header: str) -> list:
    err_lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(err_lines) <= MAX_ERROR_LINES, result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "Failed to evaluate" not in result.stderr
    report = err_lines[-(len(bad) + 1):]  # the message closes the output
    assert report[0].startswith("error: ") and header in report[0] and "--skip_bad_cases True" in report[0]
    for path in bad:
        assert sum(line.startswith(f"  {path}: ") for line in report[1:]) == 1, (path, report)
        assert result.stderr.count(path) == 1, path  # each path written once
    return err_lines


def test_training_with_five_bad_cases_ends_with_a_short_message(tmp_path):
    data = tmp_path / "data"
    image = np.full((40, 56), 120, np.uint8)
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:30] = 255
    good = {"image": _png(data / "good.png", image), "label": _png(data / "mask.png", mask), "class": 1}
    bad = _five_bad_images(data / "bad")
    training = [good] + [{"image": path, "label": good["label"], "class": 0} for path in bad]
    (data / "datalist.json").write_text(json.dumps({"training": training, "validation": [good], "test": [good]}))
    values = {"bundle_root": str(tmp_path / "root"), "dataset_dir": str(data), **TINY}
    result = _run(["training", "--meta_file", META, "--config_file", config_arg(TRAIN), "--logging_file", LOGGING, *cli_args(values)], tmp_path)
    lines = _assert_short_report(result, bad, f"5 of 6 cases in {data / 'datalist.json'} [training] are unusable")
    print(f"\n{len(lines)} lines of error output:\n" + "\n".join(lines))


def test_inference_on_a_folder_with_bad_images_ends_with_a_short_message(tmp_path):
    folder = tmp_path / "export"
    _png(folder / "good.png", np.full((40, 56), 120))
    (folder / "notes.txt").write_text("not an image: left out, named in the log")
    bad = _five_bad_images(folder / "bad")
    values = {"bundle_root": str(tmp_path / "root"), "datalist": str(folder), **TINY}
    result = _run(["inferring", "--meta_file", META, "--config_file", config_arg(INFERENCE), "--logging_file", LOGGING,
                   *cli_args(values)], tmp_path)
    _assert_short_report(result, bad, f"5 of 6 cases in the images under {folder} are unusable")
    assert "notes.txt: not an image" in result.stdout and "found 6 images in 7 files" in result.stdout


def test_docs_document_the_short_errors_and_link_the_input_table():
    training = (REPO_ROOT / "docs" / "training.md").read_text()
    assert "--skip_bad_cases True" in training and errors.TRACEBACK_ENV in training and "(dicom.md)" in training
    assert "(docs/dicom.md)" in (REPO_ROOT / "README.md").read_text()


def test_every_test_named_in_the_input_table_exists():
    table = (REPO_ROOT / "docs" / "dicom.md").read_text()
    named = set(re.findall(r"(test_\w+\.py)::(test_\w+)", table))
    assert len(named) >= 30
    missing = [f"{file}::{name}" for file, name in sorted(named)
               if not re.search(rf"^def {name}\(", (REPO_ROOT / "tests" / file).read_text(), re.M)]
    assert not missing, missing
