"""The one list of readable image files, and telling a file's type by its name or by its content.

Five hand-kept suffix lists (datalist, loader, DICOM reader, prediction writer, batch sampler)
used to disagree: a folder given to inference skipped ``.tif`` and ``.dicom`` files that the
loader reads. Every module now asks this one. DICOM needs more than a name: PACS and scanner
exports name files ``IM0001`` or by UID (``1.2.840.113619.2.5.7``, whose "suffix" is ``.7``),
and older scanners write datasets without the 128-byte preamble and ``DICM`` marker, so any
file without a known image suffix is recognised by its first bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "PIL_SUFFIXES",
    "NIFTI_SUFFIXES",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "SUPPORTED",
    "kind_by_name",
    "has_dicm_marker",
    "looks_like_bare_dataset",
    "is_dicom_content",
    "file_kind",
    "strip_image_suffix",
]

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii.gz", ".nii")  # longest first, so ".nii.gz" is stripped whole
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = PIL_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
#: What the loader reads, for messages.
SUPPORTED = "PNG/JPEG/BMP/TIFF, NIfTI or DICOM (any name: DICOM is recognised by its content)"

_HEAD_BYTES = 132
# Value representations, for recognising an explicit-VR element at the start of a bare dataset
_VRS = frozenset(
    v.encode()
    for v in "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
# A dataset's first element is in the file meta group (0002) or the identifying group (0008)
_FIRST_GROUPS = (0x0002, 0x0008)


def kind_by_name(path: Union[str, Path]) -> Optional[str]:
    """``"pil"``, ``"nifti"`` or ``"dicom"`` from the file name's suffix, None when it has no known one."""
    name = str(path).lower()
    if name.endswith(PIL_SUFFIXES):
        return "pil"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    return None


def has_dicm_marker(head: bytes) -> bool:
    """The DICOM Part 10 signature: ``DICM`` after a 128-byte preamble."""
    return head[128:132] == b"DICM"


def looks_like_bare_dataset(head: bytes) -> bool:
    """First bytes of a DICOM dataset written without preamble and marker (older scanners).

    The first element must be in group 0002 or 0008, little or big endian, followed by an
    explicit VR or a plausible implicit-VR length. Only a hint: the reader confirms by parsing.
    """
    if len(head) < 8:
        return False
    for order in "<>":
        group, _element = struct.unpack(order + "HH", head[:4])
        if group not in _FIRST_GROUPS:
            continue
        if head[4:6] in _VRS:
            return True
        length = struct.unpack(order + "I", head[4:8])[0]
        if length < 1 << 16 or length == 0xFFFFFFFF:
            return True
    return False


def _head(path: Union[str, Path]) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read(_HEAD_BYTES)
    except OSError:
        return b""


def is_dicom_content(path: Union[str, Path]) -> bool:
    """True when the file starts like DICOM: the ``DICM`` marker, or a bare dataset."""
    head = _head(path)
    return has_dicm_marker(head) or looks_like_bare_dataset(head)


def file_kind(path: Union[str, Path]) -> Optional[str]:
    """The reader ``path`` needs: by its suffix, else DICOM if its content says so, else None."""
    kind = kind_by_name(path)
    if kind is None and Path(path).is_file() and is_dicom_content(path):
        return "dicom"
    return kind


def strip_image_suffix(name: str) -> str:
    """``name`` without a readable-image suffix (``case.nii.gz`` -> ``case``; ``IM0001`` unchanged)."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name
