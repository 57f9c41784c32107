"""An up-front check of every case in a datalist, so bad files stop a run before training starts.

A hospital export always has a few broken cases; finding them on file 4,812 after six hours, or
training on them silently, is what users fear most. :func:`checked_datalist` reads every image and
mask once with the same pinned readers as training (so what passes here loads there), in a few
threads, logs progress, and either raises one error listing every bad case with its file and
problem, or (``skip_bad=True``) drops them with a warning and a count.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from munet.constants import MISSING_CLASS, US_REGION_KEY
from munet.data.datalist import DatalistError, image_items, load_datalist
from munet.data.loading import load_image
from munet.errors import BadInputError

__all__ = ["DataValidationError", "check_case", "validate_items", "checked_datalist", "checked_inputs"]

logger = logging.getLogger("munet")
_MAX_LISTED = 50


class DataValidationError(BadInputError):
    """One or more cases of a datalist are unusable; the message lists each file and problem."""


def _spatial(array: np.ndarray, path: str) -> tuple:
    if array.ndim == 2:
        return tuple(array.shape)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return tuple(array.shape[:2])
    if array.ndim == 3 and array.shape[-1] == 1:
        return tuple(array.shape[:2])
    raise ValueError(f"not a 2D image: array shape {tuple(array.shape)}")


def check_case(
    item: Dict[str, Any],
    dicom_frame: Optional[int] = None,
    num_classes: int = 2,
    require_lesion: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    class_key: str = "class",
    crop_to_us_region: bool = True,
) -> Optional[str]:
    """The problem with one datalist entry, or None when it is usable.

    With ``crop_to_us_region`` a DICOM's declared ultrasound region must lie inside its frame:
    the crop would otherwise stop the run mid-way, on the first batch that holds the file.
    """
    image_path = item.get(image_key)
    if not image_path:
        return "entry has no image"
    if not Path(image_path).is_file():
        return "image file not found"
    try:
        loaded = load_image(image_path, dicom_frame)
        image = np.asarray(loaded)
        image_shape = _spatial(image, image_path)
    except Exception as err:  # any reader failure is reported, not raised one case at a time
        return f"image cannot be read: {_reason(err, image_path)}"
    if crop_to_us_region:
        region = _region_problem(getattr(loaded, "meta", {}) or {}, image_shape)
        if region:
            return region
    value = item.get(class_key)
    if value is not None and value != "":
        try:
            label_value = int(value)
        except (TypeError, ValueError):
            return f"class {value!r} is not an integer"
        if label_value != MISSING_CLASS and not 0 <= label_value < num_classes:
            return f"unknown class value {label_value} (expected 0..{num_classes - 1} or missing)"
    if label_key not in item:
        return None
    mask_path = item.get(label_key)
    if not mask_path or not Path(mask_path).is_file():
        return f"mask file not found: {mask_path}"
    try:
        mask = np.asarray(load_image(mask_path, dicom_frame, mask=True))
        mask_shape = _spatial(mask, mask_path)
    except Exception as err:
        return f"mask {mask_path} cannot be read: {_reason(err, mask_path)}"
    if mask_shape != image_shape:
        return f"mask {mask_path} is {mask_shape[0]}x{mask_shape[1]} (rows x columns) but the image is {image_shape[0]}x{image_shape[1]}"
    if mask.ndim == 3:
        mask = mask[..., 0]
    values = np.unique(mask)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if values.size > 6 else "")
        return f"mask {mask_path} is not binary (values {shown}); expected 0 and one lesion value"
    if require_lesion and not (mask > 0).any():
        return f"mask {mask_path} is empty but a lesion is required (set require_lesion=False for normal images)"
    return None


def _region_problem(meta: Dict[str, Any], shape: tuple) -> Optional[str]:
    """Why the declared ultrasound region cannot be cropped from a ``shape`` frame, or None."""
    box = np.asarray(meta.get(US_REGION_KEY, [-1, -1, -1, -1])).reshape(-1)
    if box.size != 4 or (box < 0).any():
        return None
    x0, y0, x1, y1 = (int(v) for v in box)
    rows, cols = shape
    if x1 < cols and y1 < rows and x0 <= x1 and y0 <= y1:
        return None
    return (
        f"ultrasound region (x0, y0, x1, y1) = ({x0}, {y0}, {x1}, {y1}) reaches past the {rows}x{cols} frame "
        "(fix the file's Sequence of Ultrasound Regions, or pass --crop_to_us_region False)"
    )


def _reason(err: BaseException, path: Optional[str] = None) -> str:
    """The error as one line, without the file name that the report already shows."""
    text = " ".join(str(err).split()) or type(err).__name__
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2 :]
    return text if len(text) <= 300 else text[:297] + "..."


def validate_items(
    items: List[Dict[str, Any]],
    name: str = "datalist",
    num_classes: int = 2,
    require_lesion: bool = True,
    skip_bad: bool = False,
    dicom_frame: Optional[int] = None,
    workers: int = 4,
    crop_to_us_region: bool = True,
) -> List[Dict[str, Any]]:
    """Check every entry; raise :class:`DataValidationError` or drop bad ones (``skip_bad``)."""
    if not items:
        raise DatalistError(f"{name} is empty: there is nothing to train or evaluate on")
    start = time.perf_counter()
    step = max(len(items) // 10, 1)
    problems: List[Optional[str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(check_case, item, dicom_frame, num_classes, require_lesion, crop_to_us_region=crop_to_us_region)
            for item in items
        ]
        for done, future in enumerate(futures, start=1):
            problems.append(future.result())
            if len(items) >= 200 and done % step == 0 and done < len(items):
                logger.info("checked %d/%d cases of %s (%.1fs)", done, len(items), name, time.perf_counter() - start)
    logger.info("checked %d cases of %s in %.1fs", len(items), name, time.perf_counter() - start)
    bad = [(item, problem) for item, problem in zip(items, problems) if problem]
    if not bad:
        return list(items)
    lines = [f"  {item.get('image')}: {problem}" for item, problem in bad[:_MAX_LISTED]]
    if len(bad) > _MAX_LISTED:
        lines.append(f"  ... and {len(bad) - _MAX_LISTED} more")
    if not skip_bad:
        raise DataValidationError(
            f"{len(bad)} of {len(items)} cases in {name} are unusable (fix them, or pass --skip_bad_cases True "
            "to leave them out):\n" + "\n".join(lines)
        )
    for line in lines:
        logger.warning("skipping%s", line)
    good = [item for item, problem in zip(items, problems) if not problem]
    logger.warning("skipped %d of %d cases in %s; %d remain", len(bad), len(items), name, len(good))
    if not good:
        raise DataValidationError(f"every case in {name} is unusable:\n" + "\n".join(lines))
    return good


def checked_datalist(
    path: str,
    key: str = "training",
    base_dir: Optional[str] = None,
    num_classes: int = 2,
    require_lesion: bool = True,
    skip_bad: bool = False,
    dicom_frame: Optional[int] = None,
    crop_to_us_region: bool = True,
    normal_repeats: int = 1,
) -> List[Dict[str, Any]]:
    """:func:`load_datalist` followed by :func:`validate_items` on its ``key`` list.

    ``normal_repeats`` lists each normal (lesion-free, class-less) case that many times, appended
    after the list (oversampling: BUSI's training split has about one normal image per five lesion
    images); the recommended recipe uses 2 for training and 1 elsewhere.
    """
    if int(normal_repeats) < 1 or int(normal_repeats) != normal_repeats:
        raise ValueError(f"normal_repeats must be a whole number >= 1, got {normal_repeats!r}")
    items = load_datalist(path, key, base_dir)
    good = validate_items(
        items, f"{path} [{key}]", num_classes, require_lesion, skip_bad, dicom_frame, crop_to_us_region=crop_to_us_region
    )
    return good + [item for item in good if "class" not in item] * (int(normal_repeats) - 1)


def checked_inputs(
    source: str,
    key: str = "test",
    base_dir: Optional[str] = None,
    skip_bad: bool = False,
    dicom_frame: Optional[int] = None,
    crop_to_us_region: bool = True,
) -> List[Dict[str, Any]]:
    """Inference inputs (:func:`image_items`: a datalist's ``key`` list or a folder), checked.

    The error names the list as the user gave it: ``datalist.json [test]`` or the folder.
    """
    items = image_items(source, key, base_dir)
    name = f"{source} [{key}]" if str(source).endswith(".json") else f"the images under {source}"
    return validate_items(items, name, skip_bad=skip_bad, dicom_frame=dicom_frame, crop_to_us_region=crop_to_us_region)
