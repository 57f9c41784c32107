"""The images in a folder as a PACS or a scanner exports it, and every file left out, with why.

Such exports hold DICOM files without a suffix (``IM0001``) or named by UID, in sub-folders
(patient/study/series), a ``DICOMDIR`` index, objects without pixels (structured reports,
presentation states) and stray files (``.txt``, ``.DS_Store``). ``--datalist FOLDER`` used to
keep only a few suffixes and say nothing about the rest (4 of 7 images taken, 3 silently
dropped). :func:`scan_folder` walks every sub-folder, takes each file the loader reads (by
suffix, or DICOM by content: :mod:`.formats`), reads each DICOMDIR to learn what its records
are and which listed images are missing, and returns every other file with its reason.

A file that is an image by name or by its ``DICM`` marker is always taken, even when broken:
the up-front check then reports it as a bad case (``--skip_bad_cases`` leaves it out), since
the user meant it as an image. Only files that are no image at all are left out here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from munet.data.formats import has_dicm_marker, is_dicom_content, kind_by_name

__all__ = ["FolderScan", "scan_folder", "dicomdir_records", "DICOMDIR_SOP_CLASS"]

#: Media Storage Directory Storage: the SOP class of a DICOMDIR.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# DICOMDIR record types whose file may hold pixel data; the others (SR DOCUMENT, PRESENTATION,
# KEY OBJECT DOC, ENCAP DOC, WAVEFORM, ...) are not images
_IMAGE_RECORDS = ("IMAGE", "PRIVATE")


@dataclass
class FolderScan:
    """Result of :func:`scan_folder`: image files (sorted) and ``(file, reason)`` for the rest."""

    folder: Path
    images: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def _resolve(root: Path, parts: Sequence[str]) -> Path:
    """``root/parts``; component by component case-insensitively when not exact (CD exports are
    upper case, copies often lower case)."""
    exact = root.joinpath(*parts)
    if exact.exists():
        return exact
    current = root
    for part in parts:
        matches = [p for p in current.iterdir()] if current.is_dir() else []
        found = next((p for p in matches if p.name.lower() == part.lower()), None)
        if found is None:
            return exact
        current = found
    return current


def dicomdir_records(path: Path) -> Dict[Path, str]:
    """Each file a DICOMDIR references (resolved under its folder) -> its record type."""
    import pydicom

    ds = pydicom.dcmread(str(path), force=True)
    records: Dict[Path, str] = {}
    for record in ds.get("DirectoryRecordSequence", None) or []:
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(ref)] if isinstance(ref, str) else [str(p) for p in ref]
        records[_resolve(path.parent, parts).resolve()] = str(record.get("DirectoryRecordType", "")).strip().upper()
    return records


def _dicom_problem(path: Path, named: bool, marker: bool) -> Optional[str]:
    """Why a DICOM-looking file is not an image, or None.

    ``named``: a .dcm/.dicom name; ``marker``: the ``DICM`` marker. Either makes a broken file a
    bad case (reported by the check) rather than a file left out; only a parsed object without
    pixel data (a report, a presentation state, a DICOMDIR) is left out whatever its name.
    """
    with warnings.catch_warnings():  # a forced parse warns about whatever the bytes resemble
        warnings.simplefilter("ignore")
        return _parsed_problem(path, named, marker)


def _parsed_problem(path: Path, named: bool, marker: bool) -> Optional[str]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), force=not marker, defer_size=256)
    except Exception:
        return None if named or marker else "not an image: starts like DICOM but does not parse"
    if str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS:
        return "a DICOMDIR index, not an image"
    if "PixelData" in ds:
        return None
    sop = ds.get("SOPClassUID")
    if sop:
        return f"DICOM object without pixel data ({getattr(sop, 'name', sop)}): not an image"
    return None if named or marker else "not an image: starts like DICOM but holds no DICOM object"


def _problem(path: Path) -> Optional[str]:
    """Why ``path`` is left out, or None when it is an image to read."""
    kind = kind_by_name(path)
    if kind in ("pil", "nifti"):
        return None
    if path.stat().st_size == 0:
        # a .dcm name says "image": the check reports it; an unnamed empty file is nothing
        return None if kind == "dicom" else "empty file (0 bytes)"
    if kind is None and not is_dicom_content(path):
        suffix = "".join(path.suffixes[-2:]) or "no suffix"
        return f"not an image: unknown file type ({suffix}, and its content is not DICOM)"
    with open(path, "rb") as stream:
        marker = has_dicm_marker(stream.read(132))
    return _dicom_problem(path, named=kind == "dicom", marker=marker)


def scan_folder(folder: str | Path) -> FolderScan:
    """Every image file under ``folder`` (all sub-folders), and every other file with its reason."""
    root = Path(folder)
    scan = FolderScan(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    records: Dict[Path, str] = {}
    for path in files:
        if path.name.upper() == "DICOMDIR":
            try:
                listed = dicomdir_records(path)
            except Exception as err:  # an unreadable index: fall back to the files themselves
                scan.skipped.append((str(path), f"DICOMDIR cannot be read ({type(err).__name__}); its folder is searched instead"))
                continue
            records.update(listed)
            images = sum(kind in _IMAGE_RECORDS for kind in listed.values())
            scan.skipped.append((str(path), f"DICOMDIR index ({images} image records; the images are read from their files)"))
    indexes = {Path(p) for p, _ in scan.skipped}
    for path in files:
        if path in indexes:
            continue
        record = records.get(path.resolve())
        if record is not None and record not in _IMAGE_RECORDS:
            scan.skipped.append((str(path), f"listed in DICOMDIR as {record}, not an image"))
            continue
        problem = _problem(path)
        if problem is None:
            scan.images.append(str(path))
        else:
            scan.skipped.append((str(path), problem))
    found = {Path(p).resolve() for p in scan.images}
    for path, kind in records.items():
        if kind == "IMAGE" and not path.is_file() and path not in found:
            scan.images.append(str(path))  # the up-front check reports "image file not found"
    scan.images.sort()
    scan.skipped.sort()
    return scan
