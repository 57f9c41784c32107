"""Reading MONAI decathlon-style datalists, with errors that say which file and what is wrong."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

from monai.data import load_decathlon_datalist

from munet.data.folders import scan_folder
from munet.data.formats import IMAGE_SUFFIXES, SUPPORTED
from munet.errors import BadInputError

__all__ = ["DatalistError", "load_datalist", "image_items", "IMAGE_SUFFIXES"]

logger = logging.getLogger("munet")
_MAX_LISTED = 50


class DatalistError(BadInputError):
    """A datalist that cannot be used: missing, malformed, or empty."""


def load_datalist(path: str, key: str = "training", base_dir: Optional[str] = None) -> List[Dict]:
    """Entries of ``key`` in the datalist JSON at ``path``, with ``image``/``label`` joined to ``base_dir``.

    Each entry holds ``image``, ``label`` (the mask) and optionally ``class`` (0 benign, 1 malignant).
    """
    file = Path(path)
    if not file.is_file():
        raise DatalistError(f"datalist not found: {file} (make demo data with: munet data demo --output_dir DIR; or pass --datalist)")
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


def image_items(source: str, key: str = "test", base_dir: Optional[str] = None) -> List[Dict]:
    """Inference inputs: a datalist JSON's ``key`` entries (image only), one image file, or every image under a folder.

    A folder is searched as :func:`munet.data.folders.scan_folder` does (sub-folders, DICOM by
    content, DICOMDIR); every file left out is logged with its reason.
    """
    path = Path(source)
    if path.is_file() and path.suffix == ".json":
        return [{"image": item["image"]} for item in load_datalist(str(path), key, base_dir)]
    if path.is_file():
        return [{"image": str(path)}]  # one image file (checked, with a clear error, by validate_items)
    if path.is_dir():
        scan = scan_folder(path)
        lines = [f"  {Path(file).relative_to(path) if Path(file).is_relative_to(path) else file}: {why}" for file, why in scan.skipped]
        if len(lines) > _MAX_LISTED:
            lines = lines[:_MAX_LISTED] + [f"  ... and {len(lines) - _MAX_LISTED} more"]
        if not scan.images:
            raise DatalistError(
                f"no images found under {path} (readable: {SUPPORTED}); {len(scan.skipped)} files left out:\n" + "\n".join(lines)
            )
        total = len(scan.images) + len(scan.skipped)
        logger.info("found %d images in %d files under %s", len(scan.images), total, path)
        if scan.skipped:
            logger.warning("left out %d of %d files under %s:\n%s", len(scan.skipped), total, path, "\n".join(lines))
        return [{"image": file} for file in scan.images]
    raise DatalistError(f"inference input not found: {path} (an image file, a folder of images or a datalist .json)")
