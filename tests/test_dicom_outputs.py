"""DICOM inputs get a DICOM Segmentation (the PNG mask's pixels) and a Structured Report (the class
probabilities) next to the PNG outputs; both open in pydicom, read back in highdicom and pass
dciodvfy. Inputs are written by plain pydicom (tests/plain_dicom.py), the network has random
weights (nothing is trained)."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch
from bundle_helpers import REPO_ROOT
from monai.data import MetaTensor
from PIL import Image
from plain_dicom import as_ybr_jpeg, inference_overrides, lesion_image, save, tiny_bundle, us_dataset, with_region
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from munet.engines.bundle_folder import bundle_argv
from munet.engines.handlers import PredictionWriter
from munet.engines.inferer import VIEW_AGREEMENT_KEY
from munet.engines.postprocessing import CLASS_PROB_KEY, LESION_PROB_KEY
from munet.integrations.dicom_outputs import (
    DISPLAY_COPY_MARK,
    FINDING_CONCEPT,
    LESION_PROBABILITY_CONCEPT,
    REVIEW_CONCEPT,
    REVIEW_REASON_CONCEPT,
    DicomOutputError,
    DicomResultWriter,
    class_probability_code,
)

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
REGION = (3, 6, 84, 65)  # x0, y0, x1, y1 of the B-mode region in the 70 x 90 image
PACS_REASON = REPO_ROOT / ".pacs" / "INSTALL_FAILED"


def _images(folder: Path) -> dict:
    """One study: gray with a region (IM0001, no suffix), RGB, YBR JPEG, a 3-frame cine, and a PNG."""
    study = generate_uid()
    gray = lesion_image(70, 90)
    rgb = np.stack([lesion_image(60, 80, 1)] * 3, axis=-1)
    sources = {
        "IM0001": with_region(us_dataset(gray, study_uid=study), REGION),
        "rgb.dcm": us_dataset(rgb, photometric="RGB", study_uid=study, instance=2),
        "ybr.dcm": as_ybr_jpeg(us_dataset(rgb, study_uid=study, instance=3), rgb),
        "cine.dcm": us_dataset(np.stack([lesion_image(50, 66, k) for k in range(3)]), frames=3, study_uid=study, instance=4),
    }
    for name, ds in sources.items():
        save(ds, folder / name)
    Image.fromarray(lesion_image(40, 56)).save(folder / "plain.png")
    return sources


@pytest.fixture(scope="module")
def inferred(tmp_path_factory):
    """One real ``monai.bundle run inferring`` on a folder of DICOM and PNG images (dicom_frame 1)."""
    root = tmp_path_factory.mktemp("dicom_out")
    bundle = tiny_bundle(root / "bundle")
    sources = _images(root / "images")
    out = root / "out"
    result = subprocess.run(bundle_argv(*inference_overrides(bundle, root / "images", out, dicom_frame=1)),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {Path(row["image"]).name: row for row in csv.DictReader(open(out / "predictions.csv"))}
    return rows, sources, out, result.stdout + result.stderr


def _mask(row) -> np.ndarray:
    return np.asarray(Image.open(row["mask"])) > 0


def test_dicom_inputs_get_a_seg_and_an_sr_listed_in_predictions_csv(inferred):
    rows, sources, out, log = inferred
    assert set(rows) == set(sources) | {"plain.png"}
    for name in sources:
        stem = Path(name).stem
        assert rows[name]["dicom_seg"] == str(out / f"{stem}_seg.dcm") and Path(rows[name]["dicom_seg"]).is_file()
        assert rows[name]["dicom_sr"] == str(out / f"{stem}_sr.dcm") and Path(rows[name]["dicom_sr"]).is_file()
        assert rows[name]["source_sop_instance_uid"] == sources[name].SOPInstanceUID
        assert not rows[name].get("dicom_error")
    assert not rows["plain.png"]["dicom_seg"] and not (out / "plain_seg.dcm").exists()  # a PNG input has no DICOM UIDs
    assert "4 DICOM SEG + SR" in log


def test_seg_pixels_equal_the_png_mask_and_reference_the_source_image_and_frame(inferred):
    rows, sources, _, _ = inferred
    partial = 0
    for name, source in sources.items():
        row, mask = rows[name], _mask(rows[name])
        assert mask.shape == (source.Rows, source.Columns)  # full frame, also after the region crop
        partial += bool(0 < mask.mean() < 1)
        ds = pydicom.dcmread(row["dicom_seg"])
        assert (ds.SOPClassUID, ds.Modality, ds.SegmentationType) == (SEG_STORAGE, "SEG", "BINARY")
        assert (ds.StudyInstanceUID, ds.PatientID) == (source.StudyInstanceUID, source.PatientID)
        assert (ds.Rows, ds.Columns) == (source.Rows, source.Columns)
        segment = ds.SegmentSequence[0]
        assert segment.SegmentLabel == "lesion" and segment.SegmentAlgorithmType == "AUTOMATIC"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Lesion.value
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.SCT.MorphologicallyAbnormalStructure.value
        reference = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert reference.ReferencedSOPClassUID == source.SOPClassUID
        seg = hd.seg.segread(row["dicom_seg"])
        if name == "cine.dcm":  # dicom_frame 1 is the second frame: Referenced Frame Number 2
            assert int(reference.ReferencedFrameNumber) == 2
            pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, [2], segment_numbers=[1], combine_segments=True)
        else:
            assert "ReferencedFrameNumber" not in reference
            pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1], combine_segments=True)
        np.testing.assert_array_equal(pixels[0] > 0, mask)
        assert ds.ContentDescription.startswith("MUNet lesion" if mask.any() else "MUNet no lesion")
    assert partial >= 3, "the masks should hold lesion and background pixels"
    x0, y0, x1, y1 = REGION  # the region-cropped prediction is padded back with background
    region_mask = _mask(rows["IM0001"])
    assert not region_mask[:y0].any() and not region_mask[y1 + 1 :].any()
    assert not region_mask[:, :x0].any() and not region_mask[:, x1 + 1 :].any()


def test_sr_holds_the_class_probabilities_and_references_the_seg(inferred):
    rows, sources, _, _ = inferred
    for name, source in sources.items():
        row = rows[name]
        assert pydicom.dcmread(row["dicom_sr"]).SOPClassUID == COMPREHENSIVE_SR
        sr = hd.sr.srread(row["dicom_sr"])
        assert sr.StudyInstanceUID == source.StudyInstanceUID
        evidence = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                    for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
        assert evidence == {source.SOPInstanceUID, row["seg_sop_instance_uid"]}
        (group,) = sr.content.get_image_measurement_groups()
        values = {m.name.value: m.value for m in group.get_measurements()}
        assert values[class_probability_code("malignant").value] == pytest.approx(float(row["prob_malignant"]), abs=1e-6)
        assert values[class_probability_code("benign").value] == pytest.approx(float(row["prob_benign"]), abs=1e-6)
        assert class_probability_code("malignant") == codes.DCM.ProbabilityOfCancer
        (classification,) = group.get_qualitative_evaluations(codes.SCT.Classification)
        assert classification.value.meaning.lower() == row["predicted_class"]
        rois = sr.content.get_planar_roi_measurement_groups()
        assert len(rois) == int(_mask(row).any())
        if rois:
            assert rois[0].referenced_segmentation_frame.referenced_sop_instance_uid == row["seg_sop_instance_uid"]
    # the region declares 0.1 x 0.2 mm pixels: the lesion area in mm^2 is in the CSV and the SR
    (roi,) = hd.sr.srread(rows["IM0001"]["dicom_sr"]).content.get_planar_roi_measurement_groups()
    (area,) = roi.get_measurements(codes.SCT.Area)
    assert area.unit.value == "mm2"
    assert area.value == pytest.approx(float(rows["IM0001"]["lesion_area_mm2"]))
    assert area.value == pytest.approx(_mask(rows["IM0001"]).sum() * 0.2 * 0.1, rel=1e-4)


def test_seg_and_sr_pass_dciodvfy(inferred):
    if shutil.which("dciodvfy") is None:
        reason = PACS_REASON.read_text().strip() if PACS_REASON.is_file() else "run bash scripts/setup_env.sh --with-pacs"
        pytest.skip(f"dciodvfy (dicom3tools) is not installed: {reason}")
    rows, sources, _, _ = inferred
    for name in sources:
        for key in ("dicom_seg", "dicom_sr"):
            result = subprocess.run(["dciodvfy", rows[name][key]], capture_output=True, text=True, timeout=60)
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("Error")]
            assert not errors, f"{rows[name][key]}: {errors}"
            # the only warning allowed: the private coding scheme of the non-malignant probabilities
            assert all("99MUNET" in line for line in lines if line.startswith("Warning")), lines


def test_an_image_without_plane_geometry_gets_a_display_copy_the_seg_is_laid_over(inferred):
    """OHIF places a SEG by geometry, which scanner images lack: single-frame ones get a copy with
    a plane, same pixels, new series; the SEG lists the copy first, and is derived from the original."""
    rows, sources, _, _ = inferred
    for name, source in sources.items():
        row = rows[name]
        if int(source.get("NumberOfFrames", 1)) > 1:  # no copy for a cine loop (documented)
            assert not row.get("dicom_display_copy")
            continue
        copy = pydicom.dcmread(row["dicom_display_copy"])
        assert copy.SeriesInstanceUID != source.SeriesInstanceUID and copy.SOPInstanceUID != source.SOPInstanceUID
        assert (copy.StudyInstanceUID, copy.PatientID, copy.SOPClassUID) == (source.StudyInstanceUID, source.PatientID, source.SOPClassUID)
        assert copy.SeriesDescription.endswith(DISPLAY_COPY_MARK) and list(copy.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert copy.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert [float(v) for v in copy.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0] and copy.FrameOfReferenceUID
        np.testing.assert_array_equal(copy.pixel_array, pydicom.dcmread(row["image"]).pixel_array)
        seg = pydicom.dcmread(row["dicom_seg"])
        assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [copy.SeriesInstanceUID, source.SeriesInstanceUID]
        assert seg.FrameOfReferenceUID == copy.FrameOfReferenceUID
        assert seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient == copy.ImageOrientationPatient
    # the region declares 0.1 mm columns and 0.2 mm rows: the copy's Pixel Spacing is (row, column)
    assert [float(v) for v in pydicom.dcmread(rows["IM0001"]["dicom_display_copy"]).PixelSpacing] == [0.2, 0.1]
    if shutil.which("dciodvfy"):  # the copy adds no error to its source's (the test sources are minimal)
        def errors(path: str) -> set:
            result = subprocess.run(["dciodvfy", path], capture_output=True, text=True, timeout=60)
            return {line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}

        for name, row in rows.items():
            if row.get("dicom_display_copy"):
                added = errors(row["dicom_display_copy"]) - errors(row["image"])
                assert not added, f"{name}: {added}"


def test_an_image_with_plane_geometry_gets_its_seg_directly(tmp_path):
    ds = us_dataset(lesion_image(70, 90))
    ds.FrameOfReferenceUID, ds.ImageOrientationPatient, ds.ImagePositionPatient = generate_uid(), [1, 0, 0, 0, 1, 0], [0, 0, 0]
    ds.PixelSpacing, ds.PositionReferenceIndicator = [0.3, 0.3], ""
    path = save(ds, tmp_path / "planar.dcm")
    written = DicomResultWriter().write(str(path), lesion_image(70, 90) < 60, tmp_path, "planar", (0.4, 0.6))
    assert "dicom_display_copy" not in written
    seg = pydicom.dcmread(written["dicom_seg"])
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [ds.SeriesInstanceUID]
    assert seg.FrameOfReferenceUID == ds.FrameOfReferenceUID


# --- the writer alone -----------------------------------------------------------------------


def _sample(path: Path, mask: np.ndarray, probs=(0.2, 0.8)) -> dict:
    image = MetaTensor(torch.zeros(1, *mask.shape), meta={"filename_or_obj": str(path)})
    return {"image": image, "pred": torch.tensor(mask, dtype=torch.float32)[None], CLASS_PROB_KEY: torch.tensor(probs)}


def _write(writer: PredictionWriter, sample: dict) -> dict:
    writer._started(None)
    writer._write_sample(sample)
    return writer.rows[-1]


def test_write_dicom_seg_switch_and_an_image_without_uids(tmp_path, caplog):
    mask = np.zeros((30, 40), bool)
    mask[5:12, 8:30] = True
    path = save(us_dataset(lesion_image(30, 40)), tmp_path / "in" / "a.dcm")
    row = _write(PredictionWriter(str(tmp_path / "off")), _sample(path, mask))
    assert "dicom_seg" not in row and not list((tmp_path / "off").glob("*.dcm"))  # off unless asked
    row = _write(PredictionWriter(str(tmp_path / "on"), dicom_writer=DicomResultWriter()), _sample(path, mask))
    np.testing.assert_array_equal(hd.seg.segread(row["dicom_seg"]).get_pixels_by_source_instance(
        [pydicom.dcmread(path).SOPInstanceUID], combine_segments=True)[0] > 0, mask)
    # a file without a Series Instance UID cannot be referenced: PNG written, CSV and log say why
    bare = us_dataset(lesion_image(30, 40))
    del bare.SeriesInstanceUID
    bad = save(bare, tmp_path / "in" / "bare.dcm")
    with caplog.at_level(logging.WARNING, logger="munet"):
        row = _write(PredictionWriter(str(tmp_path / "bad"), dicom_writer=DicomResultWriter()), _sample(bad, mask))
    assert Path(row["mask"]).is_file() and "dicom_seg" not in row
    assert "no SeriesInstanceUID: a DICOM SEG cannot reference this image" in row["dicom_error"]
    assert "no DICOM SEG/SR for" in caplog.text and "bare.dcm" in caplog.text


def test_a_mask_of_another_size_or_an_unnamed_frame_is_refused(tmp_path):
    path = save(us_dataset(lesion_image(30, 40)), tmp_path / "a.dcm")
    with pytest.raises(DicomOutputError, match="mask is 30x30 but the image is 30x40"):
        DicomResultWriter().write(str(path), np.ones((30, 30), bool), tmp_path, "a", (0.5, 0.5))
    cine = save(us_dataset(np.stack([lesion_image(30, 40)] * 2), frames=2), tmp_path / "cine.dcm")
    with pytest.raises(DicomOutputError, match="multi-frame source \\(2 frames\\) but frame None"):
        DicomResultWriter(frame=None).write(str(cine), np.ones((30, 40), bool), tmp_path, "cine", (0.5, 0.5))


def test_an_empty_mask_gives_an_empty_seg_and_an_sr_without_a_region(tmp_path):
    path = save(us_dataset(lesion_image(30, 40)), tmp_path / "a.dcm")
    row = DicomResultWriter().write(str(path), np.zeros((30, 40), bool), tmp_path, "a", (0.9, 0.1))
    pixels = hd.seg.segread(row["dicom_seg"]).get_pixels_by_source_instance([row["source_sop_instance_uid"]], combine_segments=True)
    assert pixels.shape == (1, 30, 40) and not pixels.any()
    sr = hd.sr.srread(row["dicom_sr"])
    assert sr.content.get_planar_roi_measurement_groups() == []
    assert sr.content.get_image_measurement_groups()[0].get_qualitative_evaluations()[0].value == codes.SCT.Benign


def _coded(group, concept) -> list:
    return [e.value.value for e in group.get_qualitative_evaluations() if e.name.value == concept[0]]


def test_sr_carries_the_finding_the_presence_probability_and_the_review_flag(tmp_path):
    path = save(us_dataset(lesion_image(30, 40)), tmp_path / "in" / "a.dcm")
    mask = np.zeros((30, 40), bool)
    mask[5:12, 8:30] = True
    writer = PredictionWriter(str(tmp_path / "out"), dicom_writer=DicomResultWriter(), presence_threshold=0.05,
                              presence_uncertain_below=0.5, review_rule={"min_view_agreement": 0.7, "class_margin": None})
    sample = {**_sample(path, mask), LESION_PROB_KEY: 0.3, VIEW_AGREEMENT_KEY: 0.5}
    row = _write(writer, sample)
    assert row["finding"] == "uncertain" and row["needs_review"] == "yes" and row["review_reasons"] == "uncertain; views disagree"
    (group,) = hd.sr.srread(row["dicom_sr"]).content.get_image_measurement_groups()
    assert _coded(group, FINDING_CONCEPT) == ["MUNET-F-UNCERTAIN"] and _coded(group, REVIEW_CONCEPT) == ["MUNET-R-YES"]
    assert sorted(_coded(group, REVIEW_REASON_CONCEPT)) == ["MUNET-RR-UNCERTAIN", "MUNET-RR-VIEWS-DISAGREE"]
    values = {m.name.value: m.value for m in group.get_measurements()}
    assert values[LESION_PROBABILITY_CONCEPT[0]] == pytest.approx(0.3) and values[codes.DCM.ProbabilityOfCancer.value] == pytest.approx(0.8)
    # confident "no lesion": no class call anywhere
    row = _write(writer, {**_sample(path, np.zeros((30, 40), bool)), LESION_PROB_KEY: 0.01, VIEW_AGREEMENT_KEY: 1.0})
    assert row["finding"] == "no lesion" and "prob_malignant" not in row and "predicted_class" not in row and row["needs_review"] == "no"
    (group,) = hd.sr.srread(row["dicom_sr"]).content.get_image_measurement_groups()
    assert _coded(group, FINDING_CONCEPT) == ["MUNET-F-NONE"] and not group.get_qualitative_evaluations(codes.SCT.Classification)
    assert {m.name.value for m in group.get_measurements()} == {LESION_PROBABILITY_CONCEPT[0]}
