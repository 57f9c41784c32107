"""Reading MONAI decathlon-style datalists, with errors that say which file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from monai.data import load_decathlon_datalist

__all__ = ["DatalistError", "load_datalist", "image_items", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".nii", ".nii.gz")


class DatalistError(ValueError):
    """A datalist that cannot be used: missing, malformed, or empty."""


def load_datalist(path: str, key: str = "training", base_dir: Optional[str] = None) -> List[Dict]:
    """Entries of ``key`` in the datalist JSON at ``path``, with ``image``/``label`` joined to ``base_dir``.

    Each entry holds ``image``, ``label`` (the mask) and optionally ``class`` (0 benign, 1 malignant).
    """
    file = Path(path)
    if not file.is_file():
        raise DatalistError(f"datalist not found: {file} (generate demo data with scripts/make_demo_data.py, or pass --datalist)")
    try:
        content = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise DatalistError(f"{file}: not valid JSON ({err})") from None
    if key not in content:
        raise DatalistError(f"{file}: has no {key!r} list (keys: {', '.join(map(str, content))})")
    if not content[key]:
        raise DatalistError(f"{file}: the {key!r} list is empty")
    items = load_decathlon_datalist(str(file), is_segmentation=True, data_list_key=key, base_dir=base_dir)
    for index, item in enumerate(items):
        if "image" not in item:
            raise DatalistError(f"{file}: entry {index} of {key!r} has no 'image'")
    return items


def image_items(source: str, key: str = "test", base_dir: Optional[str] = None, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> List[Dict]:
    """Inference inputs: a datalist JSON's ``key`` entries (image only), or every image file under a folder."""
    path = Path(source)
    if path.is_file() and path.suffix == ".json":
        return [{"image": item["image"]} for item in load_datalist(str(path), key, base_dir)]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(tuple(suffixes)))
        if not files:
            raise DatalistError(f"no images ({', '.join(suffixes)}) found under {path}")
        return [{"image": str(p)} for p in files]
    raise DatalistError(f"inference input not found: {path} (a datalist .json or a folder of images)")
