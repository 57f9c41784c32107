"""MONAI Label infer tasks for this bundle: automatic and click-guided (interactive) MUNet.

Both are ``BundleInferTask`` subclasses, so MONAI Label reads the bundle's own configs
(``inference.json`` merged over ``train.json``: network, preprocessing, inferer, postprocessing)
and metadata. What they change, and why:

- the interactive task merges ``configs/inference_interactive.json`` (two guidance channels) and
  loads ``models/model_interactive.pt``; it is typed DEEPGROW so viewers send foreground and
  background clicks. Without clicks it gives the automatic mask.
- the bundle's postprocessing already maps the mask back to the uploaded image (``Invertd``), so
  MONAI Label's ``Restored`` is not appended (it would resize with the reader's (width, height)
  shape and transpose non-square images);
- the writer is :func:`munet.integrations.monailabel_app.results.write_label` (uint8 PNG, label value from the
  metadata) and the class probabilities go into the result JSON;
- the bundle folder's configs are the one source of the settings: weights whose sidecar
  (``models/model.json``, :mod:`munet.engines.weights_info`) records other settings (another
  image size, width, or the other task's input channels) are refused, not served, with the
  differences named in the log and ``/info/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from monai.bundle import ConfigParser
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleConstants, BundleInferTask

from munet.data.guidance import BACKGROUND_KEY, FOREGROUND_KEY
from munet.engines.bundle_folder import config_files
from munet.engines.inferer import VIEW_AGREEMENT_KEY
from munet.engines.postprocessing import LESION_PROB_KEY
from munet.engines.weights_info import WeightsMismatchError, check_weights_settings
from munet.integrations.monailabel_app.checks import scrub_paths
from munet.integrations.monailabel_app.results import result_json, write_label

logger = logging.getLogger(__name__)

__all__ = ["MUNetInferConstants", "MUNetInferTask", "INTERACTIVE_CONFIG", "INTERACTIVE_WEIGHTS"]

INTERACTIVE_CONFIG = "inference_interactive.json"
INTERACTIVE_WEIGHTS = "model_interactive.pt"
#: label-name keys DeepEdit-style viewers send instead of foreground/background
_LESION_KEYS = ("lesion",)
#: how many clicks the request had (the click lists themselves are consumed by preprocessing)
CLICKS_USED_KEY = "clicks_used"


def _bad_input(err: Exception) -> Exception:
    """An HTTP 422 carrying the innermost message (a click outside the image, an unreadable file),
    instead of MONAI Label's bare 500 "Internal Server Error"; other errors pass unchanged."""
    from fastapi import HTTPException

    inner: BaseException = err
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    if isinstance(inner, ValueError):  # ImageLoadError, DicomReadError and click errors are ValueErrors
        return HTTPException(status_code=422, detail=scrub_paths(str(inner)))
    return err


class MUNetInferConstants(BundleConstants):
    """Which config and weights file a task uses (the interactive one has its own weights)."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def configs(self) -> Sequence[str]:
        return ["inference.json"]

    def model_pytorch(self) -> str:
        return INTERACTIVE_WEIGHTS if self.interactive else "model.pt"

    def model_torchscript(self) -> str:
        return "model_interactive.ts" if self.interactive else "model.ts"


class MUNetInferTask(BundleInferTask):
    """Serve the bundle's best mask (label ``lesion`` = 1) and benign/malignant probabilities."""

    def __init__(self, path: str, conf: Dict[str, str], interactive: bool = False, **kwargs: Any) -> None:
        self.interactive = interactive  # read by _load_bundle_config, which the base __init__ calls
        self.name = "munet_interactive" if interactive else "munet"
        self.weights_note: Optional[str] = None  # what /info/ and the log say about the served settings
        self.refusal: Optional[str] = None  # why these weights cannot be served by this task
        super().__init__(
            path,
            conf,
            const=MUNetInferConstants(interactive),
            type=InferType.DEEPGROW if interactive else InferType.SEGMENTATION,
            add_post_restore=False,
            extend_load_image=False,
            load_strict=True,
            **kwargs,
        )
        if self.refusal:
            self.valid = False
        if self.is_valid():
            # the base class offers every models/*.pt as a choice; only this task's own weights fit
            self._config["model_filename"] = [self.const.model_pytorch()]
            self.description = ("MUNet lesion mask refined by foreground/background clicks" if interactive
                                else "MUNet automatic lesion mask and benign/malignant probabilities")

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        overlays = ["inference.json"] + ([INTERACTIVE_CONFIG] if self.interactive else [])
        parser = ConfigParser()
        parser.read_config(config_files(path, *overlays))
        parser.config.update({"bundle_root": path, "ensemble_bundles": []})  # type: ignore[union-attr]
        self._check_weights(parser, Path(path) / "models" / MUNetInferConstants(self.interactive).model_pytorch())
        return parser

    def _check_weights(self, parser: ConfigParser, weights: Path) -> None:
        """Refuse ``weights`` trained with other settings than the configs serve (reason in ``/info/``)."""
        if not weights.is_file():
            return
        try:
            self.weights_note = check_weights_settings(weights, parser.get_parsed_content("served_settings"))
        except WeightsMismatchError as err:
            self.refusal = f"{self.name} not served: {err}"
            logger.warning(self.refusal)

    def __call__(self, request: Dict[str, Any], callbacks: Optional[Dict] = None) -> Tuple[Union[str, None], Dict]:
        request = dict(request)
        if self.interactive:
            # DeepEdit-style viewers key the clicks by label name; DeepGrow-style ones by fg/bg
            for key in _LESION_KEYS:
                if not request.get(FOREGROUND_KEY) and request.get(key):
                    request[FOREGROUND_KEY] = request[key]
            request[FOREGROUND_KEY] = list(request.get(FOREGROUND_KEY) or [])
            request[BACKGROUND_KEY] = list(request.get(BACKGROUND_KEY) or [])
        else:
            request.pop(FOREGROUND_KEY, None)
            request.pop(BACKGROUND_KEY, None)
        request[CLICKS_USED_KEY] = {k: len(request.get(k, [])) for k in (FOREGROUND_KEY, BACKGROUND_KEY)}
        try:
            return super().__call__(request, callbacks)
        except (ValueError, RuntimeError) as err:
            bad = _bad_input(err)
            if bad is err:
                raise
            raise bad from err

    def writer(self, data: Dict[str, Any], extension: Optional[str] = None, dtype: Optional[str] = None) -> Tuple[Any, Any]:
        threshold = float(self.bundle_config.get_parsed_content("threshold"))
        class_names = list(self.bundle_config.get_parsed_content("class_names"))
        label_value = int(self.labels.get("lesion", 1)) if isinstance(self.labels, dict) else 1
        pred = data[self.output_label_key]
        path, pixels = write_label(pred, threshold, label_value)
        shape = tuple(pred.shape[-2:])
        config = self.bundle_config
        thresholds = (config.get_parsed_content("presence_threshold"), config.get("presence_uncertain_below"))
        result = result_json(data.get("class_prob", []), class_names, pixels, shape, data.get(CLICKS_USED_KEY, {}),
                             data.get(LESION_PROB_KEY), config.get_parsed_content("image_size"), thresholds,
                             data.get(VIEW_AGREEMENT_KEY), config.get("review_rule"))
        for warning in result.get("warnings", []):
            logger.warning(f"{scrub_paths(str(data.get('image_path', 'image')))}: {warning}")
        return path, result

    def info(self) -> Dict[str, Any]:
        info = super().info()
        info["class_names"] = list(self.bundle_config.get_parsed_content("class_names"))
        info["image_size"] = self.bundle_config.get_parsed_content("image_size")
        if self.refusal:
            info["refused"] = self.refusal
        if self.weights_note:
            info["weights_note"] = self.weights_note
        return info
