"""The PACS round trip on a real Orthanc (Debian packages orthanc + orthanc-dicomweb).

A private Orthanc is started on 127.0.0.1 with ``scripts/start_orthanc.sh`` (free port, storage in
a temporary folder), ultrasound images written by plain pydicom are uploaded with STOW-RS, then
``munet infer <DICOMweb URL>`` downloads a study through DICOMweb, runs the bundle's inference and
stores the SEG and SR back; the test reads them back through DICOMweb and checks the SEG pixels
against the PNG masks and the SR probabilities against predictions.csv. Orthanc is installed by
``bash scripts/setup_env.sh --with-pacs`` (run by scripts/run_tests.sh); the tests skip, with the
reason it wrote, only where that install failed.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from bundle_helpers import REPO_ROOT
from dicomweb_client import DICOMwebClient
from PIL import Image
from plain_dicom import as_ybr_jpeg, lesion_image, save, tiny_bundle, us_dataset, with_region
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from munet.integrations.dicom_outputs import class_probability_code

pytestmark = pytest.mark.timeout(900)

INSTALL_FAILED = REPO_ROOT / ".pacs" / "INSTALL_FAILED"
PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so")
PATIENT_A = "MUNET-PACS-A"


def _skip_unless_installed() -> None:
    orthanc = shutil.which("Orthanc") or (Path("/usr/sbin/Orthanc").is_file() or None)
    plugin = any(Path(p).is_file() for p in PLUGINS)
    if orthanc and plugin:
        return
    if INSTALL_FAILED.is_file():
        pytest.skip(f"Orthanc could not be installed here: {INSTALL_FAILED.read_text().strip()[-300:]}")
    missing = "Orthanc" if not orthanc else "the Orthanc DICOMweb plugin"
    pytest.skip(f"{missing} is not installed: run `bash scripts/setup_env.sh --with-pacs` (as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A running Orthanc with DICOMweb; yields its DICOMweb root URL, stops it afterwards."""
    _skip_unless_installed()
    storage = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    log = open(storage / "orthanc.log", "w")
    process = subprocess.Popen(["bash", str(REPO_ROOT / "scripts" / "start_orthanc.sh"), str(storage), "--http_port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"{base}/system", timeout=2).ok and "dicom-web" in requests.get(f"{base}/plugins", timeout=2).json():
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise AssertionError(f"Orthanc did not start:\n{(storage / 'orthanc.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"{base}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _upload(client: DICOMwebClient, folder: Path) -> dict:
    """Study A (one series: a gray image with a B-mode region read back from its file, and a
    YBR JPEG image kept in memory, i.e. stored without preamble) and study B (one image)."""
    study_a, series_a, study_b = generate_uid(), generate_uid(), generate_uid()
    gray = with_region(us_dataset(lesion_image(70, 90), study_uid=study_a, series_uid=series_a, patient_id=PATIENT_A), (3, 6, 84, 65))
    from_file = pydicom.dcmread(save(gray, folder / "IM0001"))
    rgb = np.stack([lesion_image(60, 80, 1)] * 3, axis=-1)
    ybr = as_ybr_jpeg(us_dataset(rgb, study_uid=study_a, series_uid=series_a, patient_id=PATIENT_A, instance=2), rgb)
    other = us_dataset(lesion_image(50, 66, 2), study_uid=study_b, patient_id="MUNET-PACS-B")
    response = client.store_instances([from_file, ybr, other])
    assert len(response.ReferencedSOPSequence) == 3 and not response.get("FailedSOPSequence")
    return {"study_a": study_a, "series_a": series_a, "study_b": study_b,
            "sources": {from_file.SOPInstanceUID: from_file, ybr.SOPInstanceUID: ybr}}


def _munet_infer(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "munet.cli", "infer", *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def round_trip(orthanc, tmp_path_factory):
    root = tmp_path_factory.mktemp("pacs")
    client = DICOMwebClient(orthanc)
    uploaded = _upload(client, root / "upload")
    bundle = tiny_bundle(root / "bundle")
    out = root / "out"
    result = _munet_infer(orthanc, "--study_uid", uploaded["study_a"], "--bundle", str(bundle),
                         "--output_dir", str(out))
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    return client, uploaded, bundle, rows, result


def _series(client: DICOMwebClient, study: str, modality: str) -> list:
    return [s["0020000E"]["Value"][0] for s in client.search_for_series(study, search_filters={"Modality": modality})]


def _instances(client: DICOMwebClient, study: str, series: str) -> list:
    return [client.retrieve_instance(study, series, item["00080018"]["Value"][0])
            for item in client.search_for_instances(study, series)]


def test_orthanc_round_trip_seg_pixels_equal_the_png_masks(round_trip):
    client, uploaded, _, rows, result = round_trip
    sources = uploaded["sources"]
    assert sorted(row["source_sop_instance_uid"] for row in rows) == sorted(sources)  # study A only
    assert "downloaded 2 instances of 1 series" in result.stdout
    (seg_series,) = _series(client, uploaded["study_a"], "SEG")  # one SEG series per study and run
    segs = _instances(client, uploaded["study_a"], seg_series)
    assert len(segs) == 2
    by_source = {row["source_sop_instance_uid"]: row for row in rows}
    partial = 0
    for ds in segs:  # read back through WADO-RS
        seg = hd.seg.Segmentation.from_dataset(ds)
        reference = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        row = by_source[reference.ReferencedSOPInstanceUID]
        assert ds.SOPInstanceUID == row["seg_sop_instance_uid"]
        assert reference.ReferencedSOPClassUID == sources[reference.ReferencedSOPInstanceUID].SOPClassUID
        mask = np.asarray(Image.open(row["mask"])) > 0
        pixels = seg.get_pixels_by_source_instance([reference.ReferencedSOPInstanceUID], segment_numbers=[1], combine_segments=True)
        np.testing.assert_array_equal(pixels[0] > 0, mask)
        assert ds.SegmentSequence[0].SegmentLabel == "lesion"
        partial += bool(0 < mask.mean() < 1)
    assert partial >= 1
    assert _series(client, uploaded["study_b"], "SEG") == []  # the other study was not asked for


def test_orthanc_round_trip_report_holds_the_class_probabilities(round_trip):
    client, uploaded, _, rows, _ = round_trip
    (sr_series,) = _series(client, uploaded["study_a"], "SR")
    reports = _instances(client, uploaded["study_a"], sr_series)
    assert len(reports) == 2
    by_sr = {row["sr_sop_instance_uid"]: row for row in rows}
    for ds in reports:
        row = by_sr[ds.SOPInstanceUID]
        sr = hd.sr.ComprehensiveSR.from_dataset(ds)
        (group,) = sr.content.get_image_measurement_groups()
        values = {m.name.value: m.value for m in group.get_measurements()}
        for name in ("benign", "malignant"):
            assert values[class_probability_code(name).value] == pytest.approx(float(row[f"prob_{name}"]), abs=1e-6)
        (classification,) = group.get_qualitative_evaluations(codes.SCT.Classification)
        assert classification.value.meaning.lower() == row["predicted_class"]
        rois = sr.content.get_planar_roi_measurement_groups()
        if rois:  # the report's lesion is the SEG stored in the PACS
            assert rois[0].referenced_segmentation_frame.referenced_sop_instance_uid == row["seg_sop_instance_uid"]


def test_query_finds_the_image_series_and_leaves_the_results_out(round_trip, orthanc, tmp_path):
    client, uploaded, bundle, _, _ = round_trip
    result = _munet_infer(orthanc, "--query", f"PatientID={PATIENT_A}", "--bundle", str(bundle),
                         "--output_dir", str(tmp_path / "out"), "--no_store")
    assert "downloaded 2 instances of 1 series" in result.stdout  # not the SEG and SR series of the first run
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    assert sorted(row["source_sop_instance_uid"] for row in rows) == sorted(uploaded["sources"])
    assert len(_series(client, uploaded["study_a"], "SEG")) == 1  # --no_store stored nothing
