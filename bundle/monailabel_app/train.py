"""MONAI Label train tasks: train the bundle (automatic or interactive) from the datastore's labels.

``BundleTrainTask`` runs the bundle's own ``configs/train.json``; this subclass changes:

- the datalist: every image with a final label, plus its benign/malignant class from the label
  info or a sidecar file (:mod:`.classes`); without one the case trains the segmentation only;
- the cases go through the bundle's own up-front checks (a written datalist file and
  ``checked_datalist``) instead of replacing ``train#dataset#data`` with a bare list; bad cases
  are logged by name and skipped, and empty masks (no lesion) are allowed;
- with too few labels for a validation split (fewer than ``min_val`` cases would be held out),
  the training cases also validate, so the best-model checkpoint is still written;
- the interactive task merges ``configs/train_interactive.json`` (simulated clicks, weights in
  ``models/model_interactive.pt``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List

import monai.bundle
from monai.bundle import ConfigParser
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleConstants, BundleTrainTask

from .classes import class_for, read_sidecar
from .infer import INTERACTIVE_WEIGHTS

logger = logging.getLogger(__name__)

__all__ = ["MUNetTrainConstants", "MUNetTrainTask", "INTERACTIVE_TRAIN_CONFIG"]

INTERACTIVE_TRAIN_CONFIG = "train_interactive.json"
LABEL_TAG = "final"


class MUNetTrainConstants(BundleConstants):
    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def configs(self) -> List[str]:
        return ["train.json"]

    def model_pytorch(self) -> str:
        return INTERACTIVE_WEIGHTS if self.interactive else "model.pt"


class MUNetTrainTask(BundleTrainTask):
    """Train the served bundle from the labels saved in the MONAI Label datastore."""

    def __init__(self, path: str, conf: Dict[str, str], interactive: bool = False, min_val: int = 2) -> None:
        self.interactive = interactive
        self.min_val = min_val
        super().__init__(path, conf, const=MUNetTrainConstants(interactive), load_strict=True)
        self.description = ("Train the click-guided MUNet (simulated clicks) from the saved labels" if interactive
                             else "Train MUNet (mask, and class where known) from the saved labels")

    def _config_files(self, path: str) -> List[str]:
        """train.json, plus train_interactive.json merged over it for the interactive task."""
        names = ["train.json"] + ([INTERACTIVE_TRAIN_CONFIG] if self.interactive else [])
        return [os.path.join(path, "configs", name) for name in names]

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(self._config_files(path))
        parser.config.update({"bundle_root": path})  # type: ignore[union-attr]
        return parser

    def config(self) -> Dict[str, Any]:
        options = super().config()
        options["model_filename"] = self.const.model_pytorch()
        options["max_epochs"] = 20
        options["multi_gpu"] = False
        return options

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict:
        request = dict(request)
        request["model_filename"] = self.const.model_pytorch()  # the base class defaults to model.pt
        request.setdefault("val_split", 0.2)
        return super().__call__(request, datastore)

    def _fetch_datalist(self, request: Dict[str, Any], datastore: Datastore) -> List[Dict[str, Any]]:
        class_names = list(self.bundle_config.get_parsed_content("class_names"))
        studies = getattr(datastore, "_datastore_path", None)  # the local datastore's studies folder
        sidecar = read_sidecar(studies) if studies else {}
        items = []
        for image_id in datastore.get_labeled_images(LABEL_TAG):
            image = datastore.get_image_uri(image_id)
            label = datastore.get_label_uri(image_id, LABEL_TAG)
            info = datastore.get_label_info(image_id, LABEL_TAG)
            items.append({"image": image, "label": label, "class": class_for(image, info, sidecar, class_names)})
        known = sum(item["class"] >= 0 for item in items)
        logger.info(f"{len(items)} labelled images; {known} with a class, {len(items) - known} segmentation only")
        if not items:
            raise ValueError("no image in the datastore has a final label yet: save labels first (PUT /datastore/label)")
        return items

    def _update_overrides(self, overrides: Dict[str, Any]) -> Dict[str, Any]:
        train = overrides.pop(self.const.key_train_dataset_data())
        val = overrides.pop(self.const.key_validate_dataset_data(), None)
        if not val or len(val) < self.min_val:
            logger.info(f"{len(val or [])} validation cases: the {len(train)} training cases also validate")
            train = train + list(val or [])
            val = list(train)
        folder = Path(self.bundle_path) / "eval" / "monailabel"
        folder.mkdir(parents=True, exist_ok=True)
        datalist = folder / f"datalist{'_interactive' if self.interactive else ''}.json"
        datalist.write_text(json.dumps({"training": train, "validation": val}, indent=1))
        device = str(overrides.get(self.const.key_device(), "cpu"))
        # the base class sets the trainer's epochs only; the schedule and progress read max_epochs
        overrides["max_epochs"] = overrides.pop(self.const.key_train_trainer_max_epochs())
        overrides.update(
            datalist=str(datalist),
            dataset_dir=str(folder),
            require_lesion=False,
            skip_bad_cases=True,
            device=f"$torch.device('{device}')",
        )
        return overrides

    def run_single_gpu(self, request: Dict[str, Any], overrides: Dict[str, Any]) -> None:
        monai.bundle.run(
            run_id=request.get("run_id", "run"),
            init_id=None,
            final_id=None,
            meta_file=self.bundle_metadata_path,
            config_file=self._config_files(self.bundle_path),
            logging_file=os.path.join(self.bundle_path, "configs", "logging.conf"),
            **overrides,
        )
