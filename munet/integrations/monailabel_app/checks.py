"""Checks of MONAI Label requests before they reach the datastore or a task.

MONAI Label 0.8.5 stores whatever is uploaded as a label (a text file, a 10x10 mask for a 76x81
image, a transposed mask, class "maybe") and answers a bare 500 for an unknown model, non-JSON
``params`` or ``max_epochs: "abc"``. Each check here raises :class:`RequestError`, which the
server (:mod:`.server`) turns into a 4xx whose message starts with the field it is about and
never shows a server path (text from readers and clients goes through :func:`scrub_paths`). Nothing here imports MONAI Label,
so it is tested without it.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from munet.integrations.monailabel_app.classes import class_index

__all__ = [
    "RequestError",
    "scrub_paths",
    "parse_json_object",
    "check_tag",
    "check_plain_id",
    "check_inside",
    "check_infer_options",
    "check_infer_params",
    "check_clicks",
    "label_warnings",
    "CLIENT_INFER_PARAMS",
    "check_image_upload",
    "check_studies_folder",
    "check_train_options",
    "check_label_file",
    "check_label_class",
    "TRAIN_OPTION_LIMITS",
]

_TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: an id the datastore, sessions and tasks may use as a file name: no separator, no "..", no leading dot
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
# an absolute POSIX path of two or more parts (not a URL's //host/...): keep its last part only
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()\[\]<>]+/)+([^\s'\"/:,;()\[\]<>]*)")


class RequestError(ValueError):
    """A request the server refuses: ``field``, a message that names it, and the HTTP status."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        self.field = field
        self.status = status
        self.message = f"{field}: {message}"  # callers pass text from elsewhere through scrub_paths
        super().__init__(self.message)


def scrub_paths(text: str) -> str:
    """``text`` with every absolute path replaced by its last part (``/srv/studies/a.png`` -> ``a.png``)."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "<folder>", str(text))


def parse_json_object(text: Optional[str], field: str = "params", example: str = '{"class": "benign"}') -> Dict[str, Any]:
    """A form field that must hold a JSON object; empty means ``{}``."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as err:
        raise RequestError(field, f"not valid JSON ({err}); send a JSON object such as {example}") from None
    if not isinstance(value, dict):
        raise RequestError(field, f"expected a JSON object, got {type(value).__name__}")
    return value


def check_plain_id(field: str, value: str) -> str:
    """``value`` when it is a plain name (letters, digits, ``_``, ``.``, ``-``; no path, no ``..``);
    :class:`RequestError` (400) naming ``field`` otherwise. Every id a route turns into a file name
    (image, label, session, model) goes through here first: ``../x``, ``/etc/x``, ``%2e%2e%2fx``
    (decoded or not) and ``a\\b`` are refused before MONAI Label joins them to a folder."""
    text = str(value)
    if not _PLAIN_ID.match(text) or ".." in text:
        shown = scrub_paths(text)[:80] + ("..." if len(text) > 80 else "")
        raise RequestError(field, f"{shown!r} is not a plain id (letters, digits, '_', '.', '-'; no folder part, no '..')", 400)
    return text


def check_inside(field: str, path: str, folder: str) -> str:
    """``path`` when it resolves (symbolic links followed) inside ``folder``; 403 naming ``field`` otherwise."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        raise RequestError(field, f"{os.path.basename(path)!r} points outside the studies folder: refused", 403)
    return path


def check_infer_options(params: Mapping[str, Any], weights: Sequence[str], devices: Sequence[str]) -> None:
    """Infer parameters that name files or devices: ``model_filename`` must be the weights this model
    serves (MONAI Label otherwise ``torch.load``s any path it is given), ``device`` one this machine has
    (a 422 naming the choices, instead of a silent run on the CPU or a bare 500)."""
    name = params.get("model_filename")
    if name is not None and (not isinstance(name, str) or name not in weights):
        raise RequestError("params.model_filename", f"{scrub_paths(str(name))[:80]!r} is not served by this model (its weights: "
                                                    f"{', '.join(weights)}); leave it out")
    device = params.get("device")
    if device is not None and str(device) not in devices:
        raise RequestError("params.device", f"{str(device)[:40]!r} is not a device of this server (devices: {', '.join(devices)})")


#: infer parameters MONAI Label clients send besides a task's own (MONAI Label's request keys, 3D
#: Slicer's and OHIF's): accepted, and ignored where they do not apply (this server answers PNG)
CLIENT_INFER_PARAMS = frozenset({
    "device", "model_filename", "result_extension", "result_dtype", "result_compress", "restore_label_idx", "largest_cc",
    "label_info", "client_id", "logging", "roi_size", "sw_batch_size", "sw_overlap", "cache_transforms",
    "cache_transforms_in_memory", "cache_transforms_ttl", "foreground", "background", "lesion",
})
#: parameters holding clicks: [[x, y], ...] or Slicer's [[x, y, 0], ...]
CLICK_PARAMS = ("foreground", "background", "lesion")


def check_infer_params(params: Mapping[str, Any], task_params: Sequence[str]) -> None:
    """Refuse parameters no client and no task uses (a typo such as ``forground`` ran without its clicks)."""
    accepted = CLIENT_INFER_PARAMS | set(task_params)
    unknown = sorted(str(k) for k in params if k not in accepted)
    if unknown:
        shown = ", ".join(repr(scrub_paths(k)[:40]) for k in unknown[:5])
        raise RequestError("params", f"unknown parameter{'s' if len(unknown) > 1 else ''} {shown} "
                                     f"(accepted: {', '.join(sorted(accepted))})")


def check_clicks(params: Mapping[str, Any]) -> None:
    """Clicks are lists of ``[x, y]`` (column, row) or ``[x, y, 0]`` numbers: a 2D image has one slice.
    Whether a click is inside the image is checked when the image is read."""
    for key in CLICK_PARAMS:
        points = params.get(key)
        if points is None:
            continue
        if not isinstance(points, list):
            raise RequestError(f"params.{key}", f"{json.dumps(points)[:80]} is not a list of clicks; send [[x, y], ...]")
        for point in points:
            shown = json.dumps(point)[:80]
            if not isinstance(point, list) or len(point) not in (2, 3):
                raise RequestError(f"params.{key}", f"click {shown} must be [x, y] (column, row) or [x, y, 0]")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point):
                raise RequestError(f"params.{key}", f"click {shown} must hold numbers (column, row in pixels), not text")
            if len(point) == 3 and point[2] != 0:
                raise RequestError(f"params.{key}", f"click {shown} is on slice {point[2]:g}, but a 2D image has only slice 0")


def check_image_upload(path: str, upload_name: str) -> str:
    """An uploaded study image: an image suffix the bundle reads, and readable by it (422 naming the
    file otherwise; MONAI Label stored a text file, or weights, as an image). Returns the suffix."""
    from munet.data.formats import IMAGE_SUFFIXES, SUPPORTED

    name = os.path.basename(upload_name or "")
    suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        raise RequestError("file", f"{name[:80]!r} is not an image file ({SUPPORTED}; by its suffix)")
    try:
        _load(path)
    except Exception as err:  # any reader failure is the upload's problem
        raise RequestError("file", f"{name[:80]!r} is not a readable image ({_reason(err, path, name)})") from None
    return suffix


def check_studies_folder(studies: str) -> None:
    """A local studies folder with no image of its own but images in sub-folders (``demo_data``
    instead of ``demo_data/images``) would start a server with 0 images: refuse it, naming them."""
    if str(studies).startswith(("http://", "https://")) or not os.path.isdir(studies):
        return
    from munet.data.formats import IMAGE_SUFFIXES

    def images(folder: Path) -> list:
        return [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)]

    root = Path(studies)
    if images(root):
        return
    nested = {str(d.relative_to(root)): len(images(d)) for d in sorted(root.rglob("*"))
              if d.is_dir() and "labels" not in d.relative_to(root).parts and images(d)}
    if nested:
        found = ", ".join(f"{name}/ ({n} images)" for name, n in list(nested.items())[:5])
        raise ValueError(f"studies folder {root.name} holds no images itself, but its sub-folders do: {found}; "
                         f"start the server on one of those folders (the datastore does not look into sub-folders)")


def check_tag(tag: Optional[str]) -> str:
    """A label tag becomes a folder name under ``labels/``: letters, digits, ``_`` and ``-`` only."""
    tag = tag or "final"
    if not _TAG.match(tag):
        raise RequestError("tag", f"{scrub_paths(tag)[:80]!r} is not a label tag (letters, digits, '_' and '-', e.g. final)")
    return tag


#: (kind, minimum, maximum) of each numeric trainer option
TRAIN_OPTION_LIMITS: Dict[str, Tuple[str, float, float]] = {
    "max_epochs": ("int", 1, 10000),
    "warmup_epochs": ("int", 0, 1000),
    "val_split": ("float", 0.0, 0.95),
    "learning_rate": ("float", 1e-9, 10.0),
    "fine_tune_learning_rate": ("float", 1e-9, 10.0),
}
_BOOL_OPTIONS = ("pretrained", "multi_gpu")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def _number(name: str, value: Any) -> float:
    kind, low, high = TRAIN_OPTION_LIMITS[name]
    what = "a whole number" if kind == "int" else "a number"
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise RequestError(name, f"{json.dumps(value)} is not {what} (allowed: {low:g} to {high:g})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(name, f"{json.dumps(value)} is not {what} (allowed: {low:g} to {high:g})") from None
    if not math.isfinite(number) or (kind == "int" and number != int(number)):
        raise RequestError(name, f"{json.dumps(value)} is not {what} (allowed: {low:g} to {high:g})")
    if not low <= number <= high:
        raise RequestError(name, f"{json.dumps(value)} is out of range (allowed: {low:g} to {high:g})")
    return int(number) if kind == "int" else number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise RequestError(name, f"{json.dumps(value)} is not true or false")


def check_train_options(options: Any, defaults: Mapping[str, Any], devices: Sequence[str] = ()) -> Dict[str, Any]:
    """The trainer options of a ``/train/<model>`` body, checked and completed with ``defaults``.

    Numbers may come as JSON numbers or numeric strings; ``device`` is cpu or one of ``devices``
    (MONAI Label's device map: GPU names and cuda:N; cuda when there is one): a device this machine
    lacks is refused, not run on the CPU. Anything else the trainer does not know is passed on
    unchanged (MONAI Label's own options: tracking, gpus, run_id, ...).
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise RequestError("body", f"expected a JSON object of trainer options, got {type(options).__name__}")
    checked = dict(options)
    for name in TRAIN_OPTION_LIMITS:
        if name in options and options[name] not in ("", None):
            checked[name] = _number(name, options[name])
        elif name in defaults:
            checked[name] = defaults[name]
    for name in _BOOL_OPTIONS:
        if name in options:
            checked[name] = _boolean(name, options[name])
        elif name in defaults:
            checked[name] = defaults[name]
    if "device" in options:
        device = options["device"]
        if isinstance(device, (list, tuple)) and device:
            device = device[0]  # the option list MONAI Label offers: its first entry is the default
        here = {"cpu", *devices} | ({"cuda"} if any(str(d).startswith("cuda:") for d in devices) else set())
        if not isinstance(device, str) or device not in here:
            shown = json.dumps(options["device"])[:60]
            if isinstance(device, str) and _DEVICE.match(device):
                raise RequestError("device", f"{shown} is not a device of this server (devices: {', '.join(sorted(here))})")
            raise RequestError("device", f"{shown} is not a device ({', '.join(sorted(here))})")
        checked["device"] = device
    return checked


def _spatial(mask: np.ndarray) -> np.ndarray:
    """A label as rows x columns: one channel, or several equal ones; refuses colour labels."""
    if mask.ndim == 2:
        return mask
    if mask.ndim == 3 and mask.shape[-1] in (1, 3, 4):
        first = mask[..., 0]
        others = mask[..., 1:3] if mask.shape[-1] >= 3 else mask[..., :0]
        if all(np.array_equal(first, others[..., i]) for i in range(others.shape[-1])):
            return first
        raise RequestError("label", "a colour image; expected one channel (0 for background, one value for the lesion)")
    raise RequestError("label", f"not a 2D image (array shape {tuple(mask.shape)})")


def _load(path: str, mask: bool = False) -> np.ndarray:
    from munet.data.loading import load_image

    return np.asarray(load_image(path, mask=mask))


def _reason(err: BaseException, path: str, name: str) -> str:
    """A reader's error as one line, without the server's path (the temp file is called ``name``)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if text.startswith(f"{path}: "):
        text = text[len(path) + 2 :]
    text = scrub_paths(text.replace(path, name)).replace(os.path.basename(path), name)
    return text[:300]


def check_label_file(label_path: str, upload_name: str, image_path: str, image_id: str) -> Dict[str, Any]:
    """The uploaded label must be an image the bundle reads, with its image's rows x columns, and
    binary (0 and one lesion value). Returns its shape and values; raises :class:`RequestError`."""
    try:
        mask = _spatial(_load(label_path, mask=True))
    except RequestError:
        raise
    except Exception as err:  # unreadable: a text file, a truncated PNG, an unsupported type
        raise RequestError("label", f"{upload_name!r} is not a readable image ({_reason(err, label_path, upload_name)})") from None
    try:
        image = _load(image_path)
    except Exception as err:
        raise RequestError("image", f"{image_id!r} cannot be read ({_reason(err, image_path, image_id)})") from None
    rows, cols = image.shape[:2] if image.ndim >= 2 else (0, 0)
    if mask.shape != (rows, cols):
        hint = " (the label looks transposed: columns x rows)" if mask.shape == (cols, rows) else ""
        raise RequestError(
            "label", f"{mask.shape[0]}x{mask.shape[1]} (rows x columns) but image {image_id!r} is {rows}x{cols}{hint}; "
            "a label must have its image's rows x columns")
    values = np.unique(mask)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(f"{v:g}" for v in values[:6].astype(float)) + (" ..." if values.size > 6 else "")
        raise RequestError("label", f"not binary (values {shown}); expected 0 for background and one lesion value")
    return {"shape": [int(rows), int(cols)], "lesion_pixels": int((mask > 0).sum()), "warnings": label_warnings(mask > 0)}


#: a label whose lesion covers more of the image than this, or more of its border, is probably wrong
MOST_OF_IMAGE = 0.6
MOST_OF_BORDER = 0.5


def label_warnings(lesion: np.ndarray) -> list:
    """What looks wrong in a saved label (it is stored anyway): a lesion covering most of the image,
    or most of its border (background painted as lesion: an inverted mask)."""
    warnings = []
    if lesion.size == 0 or not lesion.any():
        return warnings
    border = np.concatenate([lesion[0], lesion[-1], lesion[1:-1, 0], lesion[1:-1, -1]])
    if border.mean() > MOST_OF_BORDER:
        warnings.append(f"label: the lesion touches {border.mean():.0%} of the image border; the label looks inverted "
                        "(background marked as lesion): check it before training")
    if lesion.mean() > MOST_OF_IMAGE:
        warnings.append(f"label: the lesion covers {lesion.mean():.0%} of the image; a lesion rarely does: check the label")
    return warnings


def check_label_class(params: Mapping[str, Any], class_names: Sequence[str]) -> Optional[int]:
    """The ``class`` a label's params give, as an index; None without one; refuses unknown classes."""
    if "class" not in params or params["class"] in (None, ""):
        return None
    try:
        return class_index(params["class"], class_names, "params.class")
    except ValueError:
        allowed = ", ".join(class_names) + " (or " + ", ".join(str(i) for i in range(len(class_names))) + ")"
        raise RequestError("params.class", f"{json.dumps(params['class'])} is not a class; expected one of {allowed}") from None
