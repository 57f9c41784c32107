"""Benign/malignant labels for datastore images, which MONAI Label itself cannot carry.

A class comes, in this order, from the label's own info (``{"class": "malignant"}`` sent as
``params`` with ``PUT /datastore/label``), or from a sidecar file at the studies folder's root:
``classes.json`` (``{"<image id or file name>": "benign" | "malignant" | 0 | 1}``) or
``classes.csv`` (columns ``image,class``). An image with neither trains the segmentation alone
(class -1: the focal term is left out for it).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from munet.constants import MISSING_CLASS

__all__ = ["SIDE_CAR_NAMES", "class_index", "read_sidecar", "class_for"]

SIDE_CAR_NAMES = ("classes.json", "classes.csv")


def class_index(value: Any, class_names: Sequence[str], source: str) -> int:
    """``"malignant"``/``1``/``"1"`` -> 1; None or "" -> -1; anything else raises naming ``source``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return MISSING_CLASS
    names = [n.lower() for n in class_names]
    text = str(value).strip().lower()
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit() and int(text) in (MISSING_CLASS, *range(len(names))):
        return int(text)
    raise ValueError(f"{source}: class {value!r} is not one of {', '.join(class_names)} (or 0..{len(names) - 1})")


def read_sidecar(studies: str) -> Dict[str, Any]:
    """The sidecar mapping (image id or file name -> class) of a studies folder; {} without one."""
    root = Path(studies)
    path = root / SIDE_CAR_NAMES[0]
    if path.is_file():
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(content, dict):
            raise ValueError(f"{path}: expected an object {{image: class}}")
        return content
    path = root / SIDE_CAR_NAMES[1]
    if path.is_file():
        with open(path, newline="") as fp:
            rows = list(csv.DictReader(fp))
        if rows and not {"image", "class"} <= set(rows[0]):
            raise ValueError(f"{path}: needs the columns image,class")
        return {row["image"]: row["class"] for row in rows}
    return {}


def class_for(image_path: str, label_info: Optional[Mapping[str, Any]], sidecar: Mapping[str, Any], class_names: Sequence[str]) -> int:
    """The class of one image: from its label info, else the sidecar (by id or file name), else -1."""
    if label_info and label_info.get("class") not in (None, ""):
        return class_index(label_info["class"], class_names, f"label info of {image_path}")
    name = Path(image_path).name
    image_id = name.split(".")[0]
    for key in (image_id, name):
        if key in sidecar:
            return class_index(sidecar[key], class_names, f"sidecar entry {key!r}")
    return MISSING_CLASS
