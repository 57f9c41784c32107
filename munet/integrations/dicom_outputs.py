"""Results of a DICOM input as DICOM objects a PACS keeps: a Segmentation and a Structured Report.

For each DICOM image, :class:`DicomResultWriter` writes (with highdicom):

- ``<name>_seg.dcm``: a binary **Segmentation** (SEG) of the lesion mask at the source's full
  rows x columns, exactly the pixels of ``<name>_mask.png``. Its one segment is labelled
  ``lesion`` (SCT 52988006 "Lesion", category SCT 49755003 "Morphologically abnormal
  structure", algorithm type AUTOMATIC, algorithm MUNet and the bundle version). Its frame
  references the source image's SOP Instance, and for a multi-frame source (cine loop, read with
  ``dicom_frame``) the frame the mask belongs to (Referenced Frame Number). A short summary
  (``MUNet lesion; malignant 0.83``) is its Content Description, for people.
- ``<name>_sr.dcm``: a **Comprehensive SR** holding a TID 1500 Measurement Report with the class
  probabilities, coded, so a PACS and viewers (OHIF, Slicer) index and show them next to the
  SEG: an image-level measurement group (TID 1501, referencing the source image and frame) with
  one NUM per class (``malignant``: DCM 111047 "Probability of cancer"; other classes: code
  ``MUNET-P-<NAME>`` of the private scheme ``99MUNET``, declared in the Coding Scheme
  Identification Sequence), unit ``1`` (UCUM, no units), and the predicted class as a
  qualitative evaluation (SCT "Classification" = SCT "Benign"/"Malignant"); when the mask is not
  empty, a planar ROI group (TID 1410) that references the SEG's frame, with the lesion area in
  mm^2 when the file declares its spacing (ultrasound regions).

Why an SR and not only the SEG's Content Description: that is one free-text string of at most 64
characters that no system can query; the SR is coded and structured, references the source image
and the SEG, and keeps every class probability at full precision.

Why a few fix-ups after highdicom (each checked by highdicom's reader and dciodvfy in the tests):

- highdicom builds a SEG without a Frame of Reference (ultrasound has none) only from a
  single-frame source; an old-style multi-frame source is given to it as a single-frame header,
  and the references are set back to the real SOP Class and given the frame number.
- highdicom copies Type 2 patient/study attributes from the source and fails when a scanner left
  them out; a header copy gets them empty, which is what Type 2 allows.
- the General Image module's Type 2C Patient Orientation is added empty (dciodvfy error without).
- the SR's segmentation-frame reference carries both frame and segment number, which the
  standard forbids (Referenced Segment Number is 1C: only without Referenced Frame Number); the
  segment number is dropped (a SEG frame belongs to one segment).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from munet.data.dicom_reader import read_dataset
from munet.errors import BadInputError

__all__ = [
    "DicomOutputError",
    "DicomResultWriter",
    "DISPLAY_COPY_MARK",
    "display_copy",
    "has_plane_geometry",
    "label_segmentation",
    "with_plane_geometry",
    "PRIVATE_SCHEME",
    "bundle_version",
    "class_probability_code",
    "finding_code",
    "FINDING_CONCEPT",
    "LESION_PROBABILITY_CONCEPT",
    "REVIEW_CONCEPT",
    "REVIEW_REASON_CONCEPT",
    "review_code",
    "review_reason_code",
    "source_frame_number",
]

logger = logging.getLogger("munet")
# highdicom logs every module it copies at INFO (a dozen lines per object); its warnings stay
logging.getLogger("highdicom").setLevel(logging.WARNING)

#: Private coding scheme of codes the standard lacks (per-class probabilities other than malignant).
PRIVATE_SCHEME = "99MUNET"
ALGORITHM_NAME = "MUNet"
DISPLAY_COPY_SERIES_NUMBER = 9900
#: the end of a display copy's Series Description (how the MONAI Label PACS datastore leaves them out)
DISPLAY_COPY_MARK = "[plane geometry for viewers]"
SEG_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
# Type 2 attributes highdicom copies from the source (present, may be empty)
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")
# what a SEG must reference; without them no reference is possible
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
_REPO_METADATA = Path(__file__).resolve().parents[2] / "configs" / "metadata.json"


class DicomOutputError(BadInputError):
    """A DICOM source a SEG cannot reference (missing UIDs, a mask of another size)."""


def bundle_version(bundle_root: Optional[str] = None) -> str:
    """The ``version`` of ``<bundle_root>/configs/metadata.json`` (else this repository's), or ``"0"``."""
    for path in ([Path(bundle_root) / "configs" / "metadata.json"] if bundle_root else []) + [_REPO_METADATA]:
        try:
            return str(json.loads(path.read_text())["version"])
        except (OSError, ValueError, KeyError):
            continue
    return "0"


def source_frame_number(ds: Any, frame: Optional[int]) -> Optional[int]:
    """1-based frame of a multi-frame source the mask belongs to (``frame`` as ``dicom_frame``
    gives it, negative from the end), None for a single-frame source."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames <= 1:
        return None
    if frame is None or not -frames <= int(frame) < frames:
        raise DicomOutputError(f"{getattr(ds, 'filename', '<dataset>')}: multi-frame source ({frames} frames) "
                               f"but frame {frame} does not say which one the mask belongs to")
    return int(frame) % frames + 1


def class_probability_code(name: str) -> Any:
    """Concept name of the probability of class ``name``: DCM 111047 for malignant, else private."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if name.lower() == "malignant":
        return codes.DCM.ProbabilityOfCancer
    key = "".join(c if c.isalnum() else "-" for c in name.upper())[:10]
    return hd.sr.CodedConcept(f"MUNET-P-{key}", PRIVATE_SCHEME, f"Probability of {name}")


def _private(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning)


#: the image's finding (:mod:`munet.engines.finding`) and the presence head's probability: no
#: standard code says "lesion / no lesion / uncertain (review)" for one image, so private ones
FINDING_CONCEPT = ("MUNET-FINDING", "Lesion finding")
LESION_PROBABILITY_CONCEPT = ("MUNET-P-LESION", "Probability of a lesion")
_FINDING_VALUES = {"lesion": ("MUNET-F-LESION", "Lesion"), "no lesion": ("MUNET-F-NONE", "No lesion"),
                   "uncertain": ("MUNET-F-UNCERTAIN", "Uncertain: review")}


def finding_code(finding: str) -> Any:
    """The coded value of a finding ("lesion", "no lesion", "uncertain")."""
    return _private(*_FINDING_VALUES[finding])


#: whether a reader should look at the result twice (:mod:`munet.engines.review`), and why
REVIEW_CONCEPT = ("MUNET-REVIEW", "Needs review")
REVIEW_REASON_CONCEPT = ("MUNET-REVIEW-REASON", "Review reason")


def review_code(reasons: Sequence[str]) -> Any:
    """The coded value of the review flag: "Yes" when there is a reason, else "No"."""
    return _private("MUNET-R-YES", "Yes") if reasons else _private("MUNET-R-NO", "No")


def review_reason_code(reason: str) -> Any:
    """One review reason as a coded value ("uncertain", "views disagree", "class near the decision")."""
    key = "".join(c if c.isalnum() else "-" for c in reason.upper())[:16]
    return _private(f"MUNET-RR-{key}", reason)


def _class_value_code(name: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    known = {"benign": codes.SCT.Benign, "malignant": codes.SCT.Malignant}
    if name.lower() in known:
        return known[name.lower()]
    key = "".join(c if c.isalnum() else "-" for c in name.upper())[:10]
    return hd.sr.CodedConcept(f"MUNET-C-{key}", PRIVATE_SCHEME, name)


def _walk(ds: Any, path: Tuple[str, ...] = ()):
    """``(keywords of the sequences down to it, item)`` for every item of every sequence in ``ds``."""
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield path + (element.keyword,), item
                yield from _walk(item, path + (element.keyword,))


def _frame_reference_allowed(path: Tuple[str, ...]) -> bool:
    """Whether a reference at ``path`` may name a frame: a SEG frame's derivation source, or an
    SR IMAGE content item; not the instance lists (Common Instance Reference, SR evidence)."""
    return path[-2:] == ("DerivationImageSequence", "SourceImageSequence") or (
        path[-1] == "ReferencedSOPSequence" and "ContentSequence" in path
    )


def _header(ds: Any) -> Any:
    """A copy of the source header highdicom accepts: Type 2 attributes present, one frame."""
    from pydicom.uid import UltrasoundImageStorage

    header = copy.deepcopy(ds)
    if has_plane_geometry(header):  # highdicom's Pixel Measures need both (Type 2 in the Image Plane module: may be absent)
        if not header.get("PixelSpacing"):
            header.PixelSpacing = _pixel_spacing(header)
        if not header.get("SliceThickness"):
            header.SliceThickness = 1.0
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, "")
    if "NumberOfFrames" in header:
        # highdicom: "only a single frame is supported when the source image has no Frame of
        # Reference UID", and it takes any multi-frame class for an enhanced one; the SOP Class
        # and the frame are put back in the references afterwards
        del header.NumberOfFrames
        header.SOPClassUID = UltrasoundImageStorage
    return header


def has_plane_geometry(ds: Any) -> bool:
    """Whether ``ds`` places its image in a patient frame (what OHIF needs to lay a SEG over it)."""
    return bool(ds.get("FrameOfReferenceUID") and ds.get("ImageOrientationPatient") and ds.get("ImagePositionPatient"))


def display_copy(source: Any, series_uid: str) -> Any:
    """A copy of the single-frame image ``source`` (with its pixels) that has a plane geometry,
    in a new series, for viewers to lay the SEG over.

    Why: OHIF 3.10's segmentation mode refuses a SEG whose plane differs from its source image's
    ("Segmentations orthogonal to the acquisition plane ... not yet supported"), and a scanner's
    ultrasound image has no plane at all; it cannot be changed in the PACS. The copy has the same
    pixels and patient/study, Image Type DERIVED\\SECONDARY, a Source Image Sequence naming the
    original, the geometry of :func:`with_plane_geometry`, and :data:`DISPLAY_COPY_MARK` at the
    end of its Series Description."""
    from pydicom import Dataset
    from pydicom.uid import generate_uid

    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomOutputError(f"{getattr(source, 'filename', '<dataset>')}: a display copy is made for single-frame images only")
    display = with_plane_geometry(copy.deepcopy(source))
    original = Dataset()
    original.ReferencedSOPClassUID = source.SOPClassUID
    original.ReferencedSOPInstanceUID = source.SOPInstanceUID
    display.SourceImageSequence = [original]
    display.DerivationDescription = "copy of the source image with a plane geometry, for viewers to show a SEG over it"
    display.ImageType = ["DERIVED", "SECONDARY"] + list(source.get("ImageType", ["", ""]))[2:]
    display.SOPInstanceUID = generate_uid()
    display.SeriesInstanceUID = series_uid
    display.SeriesNumber = DISPLAY_COPY_SERIES_NUMBER
    display.SeriesDescription = f"{str(source.get('SeriesDescription', '') or '')[:34]} {DISPLAY_COPY_MARK}".strip()
    if hasattr(display, "file_meta"):
        display.file_meta.MediaStorageSOPInstanceUID = display.SOPInstanceUID
    return display


def _reference_original(seg: Any, source: Any, display: Any) -> None:
    """A SEG laid over ``display`` is derived from ``source``: each frame's derivation source
    names the original (OHIF then places it over the copy by geometry), and the Referenced Series
    Sequence lists the copy, which viewers open, then the original, so that a query from the
    original finds its SEG."""
    from pydicom import Dataset

    for path, item in _walk(seg):
        if path[-2:] == ("DerivationImageSequence", "SourceImageSequence") and item.get("ReferencedSOPInstanceUID") == display.SOPInstanceUID:
            item.ReferencedSOPClassUID = source.SOPClassUID
            item.ReferencedSOPInstanceUID = source.SOPInstanceUID

    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedInstanceSequence = [instance]
    seg.ReferencedSeriesSequence.append(series)


def _pixel_spacing(ds: Any) -> List[float]:
    """(row, column) mm from the ultrasound region's physical deltas; 1 mm where the file gives none."""
    from munet.data.dicom_reader import ultrasound_region

    _, spacing = ultrasound_region(ds)
    return [round(float(v), 6) if np.isfinite(v) else 1.0 for v in spacing]


def with_plane_geometry(header: Any) -> Any:
    """``header`` with a plane geometry when it has none, so that the SEG made from it carries one.

    Why: OHIF 3.10's segmentation mode, the one that opens ultrasound, places a SEG by its Plane
    Position/Orientation and Pixel Measures; a SEG without them (what highdicom rightly writes for
    an ultrasound image, which has no patient frame) crashes it. The geometry added is the one the
    image implies: the image plane at the origin, rows down and columns across, pixel spacing
    from the ultrasound region's physical deltas (1 mm when the file gives none), in a Frame of
    Reference made for it (derived from the SOP Instance UID: the same image gives the same one).
    A header that has a Frame of Reference is returned unchanged."""
    from pydicom.uid import generate_uid

    if header.get("FrameOfReferenceUID") and header.get("ImageOrientationPatient") and header.get("ImagePositionPatient"):
        return header
    header.FrameOfReferenceUID = generate_uid(entropy_srcs=[str(header.SOPInstanceUID), "plane"])
    header.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    header.ImagePositionPatient = [0, 0, 0]
    header.PixelSpacing = _pixel_spacing(header)
    header.SliceThickness = 1.0
    header.PositionReferenceIndicator = ""
    return header


def _fix_source_references(dataset: Any, source: Any, frame_number: Optional[int]) -> None:
    """Point every reference to ``source`` at its real SOP Class and, for a multi-frame source,
    where a frame may be named, at the frame the mask belongs to."""
    for path, item in _walk(dataset):
        if item.get("ReferencedSOPInstanceUID") != source.SOPInstanceUID:
            continue
        item.ReferencedSOPClassUID = source.SOPClassUID
        if frame_number is not None and _frame_reference_allowed(path):
            item.ReferencedFrameNumber = frame_number


@dataclass
class _Series:
    seg_uid: str
    sr_uid: str
    display_uid: str
    count: int = 0


class DicomResultWriter:
    """Write the SEG and SR of each DICOM input (module docstring); one SEG series and one SR
    series per study and run, instances numbered in writing order.

    Args:
        class_names: names of the class probabilities, in the network's order.
        frame: ``dicom_frame`` of the run (which frame of a multi-frame source was segmented).
        algorithm_version: the bundle version written as the algorithm's and software's version.
        manufacturer: Manufacturer of the SEG/SR (the software that made them).
        device_serial_number: required by the SEG's Enhanced General Equipment module.
    """

    def __init__(
        self,
        class_names: Sequence[str] = ("benign", "malignant"),
        frame: Optional[int] = None,
        algorithm_version: Optional[str] = None,
        manufacturer: str = "MUNet bundle",
        device_serial_number: str = "1",
    ) -> None:
        self.class_names = list(class_names)
        self.frame = frame
        self.algorithm_version = algorithm_version or bundle_version()
        self.manufacturer = manufacturer
        self.device_serial_number = device_serial_number
        self._series: Dict[str, _Series] = {}

    def start(self) -> None:
        """Start a new run: its SEG and SR objects go into new series (one of each per study and run)."""
        self._series = {}

    # -- the two objects --------------------------------------------------------------------

    def _next_instance(self, study_uid: str) -> Tuple[_Series, int]:
        from pydicom.uid import generate_uid

        series = self._series.setdefault(study_uid, _Series(generate_uid(), generate_uid(), generate_uid()))
        series.count += 1
        return series, series.count

    def segmentation(self, source: Any, mask: np.ndarray, summary: str, series_uid: str, number: int,
                     manual: bool = False, display: Any = None) -> Any:
        """The SEG of ``mask`` (rows x columns, bool) on ``source`` (a pydicom header); ``manual``:
        an annotator's label (segment algorithm type MANUAL, no algorithm named); ``display``:
        the :func:`display_copy` of ``source`` the SEG is laid over (it references both)."""
        import highdicom as hd
        from pydicom.sr.codedict import codes
        from pydicom.uid import generate_uid

        name = getattr(source, "filename", "<dataset>")
        missing = [k for k in _REQUIRED if not source.get(k)]
        if missing:
            raise DicomOutputError(f"{name}: no {', '.join(missing)}: a DICOM SEG cannot reference this image")
        rows, columns = int(source.Rows), int(source.Columns)
        if mask.shape != (rows, columns):
            raise DicomOutputError(f"{name}: mask is {mask.shape[0]}x{mask.shape[1]} but the image is {rows}x{columns}")
        frame_number = source_frame_number(source, self.frame)
        algorithm = hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME, version=self.algorithm_version, family=codes.cid7162.ArtificialIntelligence
        )
        segment = hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="lesion",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=None if manual else algorithm,
        )
        seg = hd.seg.Segmentation(
            source_images=[_header(display) if display is not None else _header(source)],
            pixel_array=mask.astype(bool),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=series_uid,
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=self.manufacturer,
            manufacturer_model_name=ALGORITHM_NAME,
            software_versions=self.algorithm_version,
            device_serial_number=self.device_serial_number,
            content_label="LESION",
            content_description=summary[:64],
            series_description="Lesion label (annotator)" if manual else f"{ALGORITHM_NAME} lesion segmentation",
        )
        seg.PatientOrientation = source.get("PatientOrientation", "")
        if display is not None:
            _reference_original(seg, source, display)
        else:
            _fix_source_references(seg, source, frame_number)
        return seg

    def report(self, source: Any, seg: Any, probs: Optional[Sequence[float]], area_mm2: Optional[float],
               lesion: bool, series_uid: str, number: int, finding: Optional[str] = None,
               lesion_prob: Optional[float] = None, review: Optional[Sequence[str]] = None) -> Any:
        """The SR (TID 1500) with the finding, the presence and class probabilities, referencing
        ``source`` and ``seg``. ``probs`` is None where no class is reported ("no lesion")."""
        import highdicom as hd
        from pydicom.dataset import Dataset
        from pydicom.sr.codedict import codes
        from pydicom.uid import generate_uid

        frame_number = source_frame_number(source, self.frame)
        header = _header(source)
        algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=self.algorithm_version)
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(), name=ALGORITHM_NAME, manufacturer_name=self.manufacturer,
                model_name=ALGORITHM_NAME,
            ),
        )
        groups: List[Any] = []
        measurements, evaluations = [], []
        if finding is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(name=_private(*FINDING_CONCEPT), value=finding_code(finding)))
        if review is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(name=_private(*REVIEW_CONCEPT), value=review_code(review)))
            evaluations += [hd.sr.QualitativeEvaluation(name=_private(*REVIEW_REASON_CONCEPT), value=review_reason_code(r))
                            for r in review]
        if lesion_prob is not None:
            measurements.append(hd.sr.Measurement(name=_private(*LESION_PROBABILITY_CONCEPT), value=float(lesion_prob),
                                                  unit=codes.UCUM.NoUnits, algorithm_id=algorithm))
        if probs is not None:
            for name, p in zip(self.class_names, probs):
                measurements.append(hd.sr.Measurement(name=class_probability_code(name), value=float(p),
                                                      unit=codes.UCUM.NoUnits, algorithm_id=algorithm))
            predicted = self.class_names[int(np.argmax(probs))]
            evaluations.append(hd.sr.QualitativeEvaluation(name=codes.SCT.Classification, value=_class_value_code(predicted)))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{ALGORITHM_NAME} image classification"),
            finding_type=codes.SCT.Lesion,
            algorithm_id=algorithm,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(header)],
            measurements=measurements or None,
            qualitative_evaluations=evaluations or None,
        ))
        if lesion:
            area = [hd.sr.Measurement(name=codes.SCT.Area, value=float(area_mm2), unit=codes.UCUM.SquareMillimeter,
                                      algorithm_id=algorithm)] if area_mm2 is not None else None
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="lesion 1"),
                referenced_segment=hd.sr.ReferencedSegmentationFrame(
                    sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=1,
                    segment_number=1,
                    source_image=hd.sr.SourceImageForSegmentation(header.SOPClassUID, header.SOPInstanceUID),
                ),
                finding_type=codes.SCT.Lesion,
                algorithm_id=algorithm,
                measurements=area,
            ))
        content = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.SCT.DiagnosticUltrasonography,
            imaging_measurements=groups,
        )
        sr = hd.sr.ComprehensiveSR(
            evidence=[header, seg],
            content=content,
            series_instance_uid=series_uid,
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=self.manufacturer,
            is_complete=True,
            series_description=f"{ALGORITHM_NAME} lesion report",
        )
        for _, item in _walk(sr):  # Referenced Segment Number is 1C: only without Referenced Frame Number
            if item.get("ReferencedSOPInstanceUID") == seg.SOPInstanceUID and "ReferencedFrameNumber" in item:
                if "ReferencedSegmentNumber" in item:
                    del item.ReferencedSegmentNumber
        _fix_source_references(sr, source, frame_number)
        scheme = Dataset()
        scheme.CodingSchemeDesignator = PRIVATE_SCHEME
        scheme.CodingSchemeName = "MUNet bundle codes"
        scheme.CodingSchemeResponsibleOrganization = "MUNet bundle contributors"
        sr.CodingSchemeIdentificationSequence = [scheme]
        return sr

    # -- per case ------------------------------------------------------------------------------

    def write(self, source_path: str, mask: np.ndarray, output_dir: Path, stem: str,
              probs: Optional[Sequence[float]] = None, area_mm2: Optional[float] = None, finding: Optional[str] = None,
              lesion_prob: Optional[float] = None, review: Optional[Sequence[str]] = None) -> Dict[str, str]:
        """Write ``<stem>_seg.dcm`` and ``<stem>_sr.dcm``; returns the CSV columns they add."""
        source = read_dataset(source_path, stop_before_pixels=True)
        study = str(source.get("StudyInstanceUID", ""))
        series, number = self._next_instance(study)
        single_frame = int(source.get("NumberOfFrames", 1) or 1) == 1
        display = None if has_plane_geometry(source) or not single_frame else display_copy(read_dataset(source_path), series.display_uid)
        lesion = bool(mask.any())
        summary = f"{ALGORITHM_NAME} {finding or ('lesion' if lesion else 'no lesion')}"
        if probs is not None:
            best = int(np.argmax(probs))
            summary += f"; {self.class_names[best]} {float(probs[best]):.2f}"
        with warnings.catch_warnings():
            # highdicom warns about every one-component Patient's Name ("ANON", "SYN-5-0000"),
            # which it copies unchanged from the source: nothing to fix here
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
            seg = self.segmentation(source, mask, summary, series.seg_uid, number, display=display)
            sr = self.report(source, seg, probs, area_mm2, lesion, series.sr_uid, number, finding, lesion_prob, review)
        seg_path, sr_path = Path(output_dir) / f"{stem}_seg.dcm", Path(output_dir) / f"{stem}_sr.dcm"
        seg.save_as(seg_path, enforce_file_format=True)
        sr.save_as(sr_path, enforce_file_format=True)
        written = {"dicom_seg": str(seg_path), "dicom_sr": str(sr_path), "source_sop_instance_uid": str(source.SOPInstanceUID),
                   "seg_sop_instance_uid": str(seg.SOPInstanceUID), "sr_sop_instance_uid": str(sr.SOPInstanceUID)}
        if display is not None:
            display_path = Path(output_dir) / f"{stem}_display.dcm"
            display.save_as(display_path, enforce_file_format=True)
            written["dicom_display_copy"] = str(display_path)
        return written


def label_segmentation(source_path: str, mask: np.ndarray, class_name: Optional[str] = None) -> Tuple[Any, Optional[Any]]:
    """An annotator's label of the DICOM image ``source_path`` as a DICOM SEG (MANUAL segment,
    its own new series; the class, when given, in the Content Description), and the
    :func:`display_copy` it is laid over when the image has no plane geometry (else None)."""
    from pydicom.uid import generate_uid

    source = read_dataset(source_path)
    single_frame = int(source.get("NumberOfFrames", 1) or 1) == 1
    display = None if has_plane_geometry(source) or not single_frame else display_copy(source, generate_uid())
    summary = "Lesion label" + (f"; {class_name}" if class_name else "")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        seg = DicomResultWriter().segmentation(source, np.asarray(mask, dtype=bool), summary, generate_uid(), 1, manual=True, display=display)
    return seg, display
