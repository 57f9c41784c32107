"""Inference on images in a PACS, results stored back there, through DICOMweb.

    munet infer http://pacs:8042/dicom-web --study_uid 1.2.3 [--series_uid 1.2.3.4] [--bundle runs/model] \\
        [--output_dir results/] [--dicom_frame 0]
    munet infer http://pacs:8042/dicom-web --query Modality=US --query StudyDate=20240101-20240131

1. finds the series: one (``--series_uid``, with or without ``--study_uid``), every series of a
   study (``--study_uid``), or every series a QIDO-RS query matches (``--query KEY=VALUE``,
   repeatable; series-level search, e.g. ``Modality=US``, ``PatientID=...``, ``StudyDate=...``).
   Series of modality SEG or SR (results, also this script's own) are not inputs;
2. downloads their instances with WADO-RS (dicomweb-client) into a temporary folder;
3. runs the bundle's normal inference on that folder
   (``python -m monai.bundle run inferring ... --datalist <folder> --write_dicom_seg True``, plus
   the config overrides given), which writes the PNG masks, overlays, ``predictions.csv`` and, per
   DICOM image, ``<name>_seg.dcm`` (DICOM Segmentation) and ``<name>_sr.dcm`` (Structured Report
   with the class probabilities) into ``--output_dir``;
4. stores every SEG and SR back with STOW-RS (``--no_store`` keeps them local), and prints one
   line per image.

Exit status: 0 when every DICOM image got its SEG and SR (and they were stored), 1 otherwise,
2 for bad arguments or nothing to do. Credentials: ``DICOMWEB_USERNAME`` and
``DICOMWEB_PASSWORD`` (HTTP basic) in the environment; an HTTPS server's certificate is checked
against ``REQUESTS_CA_BUNDLE`` when set.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from munet.engines.bundle_folder import REPO_ROOT, run_bundle_command, workflow_argv
from munet.integrations.dicom_outputs import DISPLAY_COPY_MARK

#: Series of these modalities hold results, not images to segment.
RESULT_MODALITIES = ("SEG", "SR")
_STUDY_UID, _SERIES_UID, _MODALITY, _SERIES_DESCRIPTION = "0020000D", "0020000E", "00080060", "0008103E"


def _value(item: Dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _read_part(data: bytes):
    """A retrieved instance; one without the 128-byte preamble and ``DICM`` is read with force."""
    import pydicom

    if data[128:132] == b"DICM":
        return pydicom.dcmread(BytesIO(data))
    ds = pydicom.dcmread(BytesIO(data), force=True)
    if "SOPInstanceUID" not in ds:
        raise ValueError("the PACS sent a part that is not a DICOM instance")
    return ds


def make_client(url: str):
    """A dicomweb-client ``DICOMwebClient`` (HTTP basic auth from the environment) whose WADO-RS
    retrieval asks for the stored transfer syntax and accepts instances without preamble.

    pydicom 3 writes a dataset made in memory without the 128-byte preamble and ``DICM``
    (``dcmwrite`` with its default ``enforce_file_format=False``), and dicomweb-client 0.61 stores
    instances that way; Orthanc keeps and returns them so, and dicomweb-client's own retrieval
    then fails (``File is missing DICOM File Meta Information header``). Retrieval here reads
    such parts with ``force=True`` (overriding the client's internal
    ``_http_get_multipart_application_dicom``; dicomweb-client is pinned in requirements.txt).
    ``transfer-syntax=*`` gets the pixels as stored instead of a transcoded copy.
    """
    from dicomweb_client import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    class _Client(DICOMwebClient):
        def _http_get_multipart_application_dicom(self, url, media_types=None, params=None, stream=False):
            headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
            response = self._http_get(url, params=params, headers=headers, stream=stream)
            if response.headers.get("Content-Type", "").startswith("application/dicom"):  # one part, not multipart
                return iter([_read_part(response.content)])
            return (_read_part(part) for part in self._decode_multipart_message(response, stream=stream))

    user, password = os.environ.get("DICOMWEB_USERNAME"), os.environ.get("DICOMWEB_PASSWORD")
    session = create_session_from_user_pass(user, password) if user and password else None
    return _Client(url=url.rstrip("/"), session=session)


def find_series(client, study_uid: str = "", series_uid: str = "", query: Sequence[str] = ()) -> List[Tuple[str, str, str]]:
    """``(study UID, series UID, modality)`` of every series to segment, results left out (SEG,
    SR, and the display copies a SEG is laid over)."""
    filters: Dict[str, str] = {}
    for pair in query:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--query needs KEY=VALUE, got {pair!r}")
        filters[key] = value
    if series_uid:
        filters["SeriesInstanceUID"] = series_uid
    if not (study_uid or filters):
        raise ValueError("give --study_uid, --series_uid or --query KEY=VALUE")
    fields = ["StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription"]
    found = client.search_for_series(study_instance_uid=study_uid or None, search_filters=filters or None,
                                     fields=fields, get_remaining=True)
    series = [(_value(item, _STUDY_UID) or study_uid, _value(item, _SERIES_UID), _value(item, _MODALITY)) for item in found
              if not _value(item, _SERIES_DESCRIPTION).endswith(DISPLAY_COPY_MARK)]
    return [s for s in series if s[2].upper() not in RESULT_MODALITIES]


def download(client, series: Sequence[Tuple[str, str, str]], folder: Path) -> int:
    """Every instance of ``series`` into ``folder/<series UID>/<SOP Instance UID>.dcm``; the count."""
    count = 0
    for study_uid, series_uid, _ in series:
        target = folder / series_uid
        target.mkdir(parents=True, exist_ok=True)
        for ds in client.retrieve_series(study_uid, series_uid):
            ds.save_as(target / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
            count += 1
    return count


def run_inference(bundle_root: Path, images: Path, output_dir: Path, extra: Sequence[str]) -> None:
    """The bundle folder's own inference workflow on the downloaded folder (raises when it fails)."""
    args = workflow_argv("inferring", bundle_root, datalist=str(images), dataset_dir=str(images), output_dir=str(output_dir),
                         write_dicom_seg=True) + list(extra)
    try:
        run_bundle_command(args)
    except RuntimeError as err:
        raise SystemExit(f"inference failed: {err}") from err


def store_results(client, rows: Sequence[Dict[str, str]]) -> List[str]:
    """STOW-RS every SEG and SR of ``rows`` (and the display copy a SEG is laid over); returns the problems (empty when all were stored)."""
    import pydicom

    problems = []
    for row in rows:
        if not row.get("dicom_seg"):
            continue
        datasets = [pydicom.dcmread(row[key]) for key in ("dicom_display_copy", "dicom_seg", "dicom_sr") if row.get(key)]
        try:
            response = client.store_instances(datasets, study_instance_uid=str(datasets[0].StudyInstanceUID))
        except Exception as err:  # HTTP errors: name the image and go on with the others
            problems.append(f"{row['image']}: STOW-RS failed: {err}")
            continue
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            problems.append(f"{row['image']}: the PACS refused {len(failed)} of {len(datasets)} objects")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:
        extra, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicomweb_url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--study_uid", default="")
    parser.add_argument("--series_uid", default="")
    parser.add_argument("--query", action="append", default=[], help="QIDO-RS series filter KEY=VALUE (repeatable)")
    parser.add_argument("--bundle_root", default=str(REPO_ROOT), help="bundle folder (its configs/ and models/model.pt)")
    parser.add_argument("--output_dir", default="", help="results folder (default: a new temporary folder)")
    parser.add_argument("--download_dir", default="", help="keep the downloaded images here (default: temporary)")
    parser.add_argument("--no_store", action="store_true", help="do not store the SEG and SR back in the PACS")
    args = parser.parse_args(argv)

    client = make_client(args.dicomweb_url)
    try:
        series = find_series(client, args.study_uid, args.series_uid, args.query)
    except ValueError as err:
        parser.error(str(err))  # exit status 2
    if not series:
        print("no image series found (SEG and SR series are not inputs)", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="munet_pacs_")).resolve()
    with tempfile.TemporaryDirectory(prefix="munet_pacs_in_") as tmp:
        images = Path(args.download_dir or tmp).resolve()
        count = download(client, series, images)
        print(f"downloaded {count} instances of {len(series)} series from {args.dicomweb_url} to {images}")
        run_inference(Path(args.bundle_root).resolve(), images, output_dir, extra)
    with open(output_dir / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    problems = [f"{row['image']}: no SEG/SR: {row['dicom_error']}" for row in rows if row.get("dicom_error")]
    if not args.no_store:
        problems += store_results(client, rows)
    for row in rows:
        if row.get("dicom_seg"):
            probs = {k[5:]: float(v) for k, v in row.items() if k.startswith("prob_") and v not in ("", None)}
            print(json.dumps({"image": row["source_sop_instance_uid"], "finding": row.get("finding"),
                              "predicted_class": row.get("predicted_class"), "probabilities": probs,
                              "seg": row["seg_sop_instance_uid"], "sr": row["sr_sop_instance_uid"],
                              "stored": not args.no_store}))
    print(f"results in {output_dir}" + ("" if args.no_store else f"; SEG and SR stored in {args.dicomweb_url}"))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
