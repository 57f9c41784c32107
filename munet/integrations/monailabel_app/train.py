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

And it never replaces a good model with a worse one:

- fine-tuning from the served weights (``pretrained``, the default, when they exist) uses its
  own learning rate (``fine_tune_learning_rate``, 1e-4) with a warm-up (``warmup_epochs``: the
  first epochs ramp up from a tenth of it), not the from-scratch 1e-3 that Adam restarts at;
  served weights trained with other settings than the bundle's configs (their sidecar,
  :mod:`munet.engines.weights_info`) are refused with a 409 naming the difference;
- training writes into a staging folder, ``eval/monailabel/<trainer>/``, not ``models/``;
- afterwards the served weights and the new best weights are scored with the same evaluator on
  the same validation images (``val_score``, the bundle's key metric: mean of Dice and AUC, Dice
  alone without classes); the new weights are published only when their score is at least the
  served one's. The replaced weights stay in ``models/<weights>.prev`` (and their sidecar in
  ``models/<name>.json.prev``); copying them back restores them, and the server picks that up;
- the answer and ``/info/`` ``train_stats`` give both scores and the decision;
- a request without ``max_epochs`` trains :data:`DEFAULT_MAX_EPOCHS` epochs, not 20 or 50.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import monai.bundle
import torch
from monai.bundle import ConfigParser
from monai.utils import set_determinism
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleConstants, BundleTrainTask
from monailabel.utils.others.generic import device_map

from munet.engines.checkpoint import atomic_copy
from munet.engines.model_history import labels_digest, record_publication
from munet.engines.weights_info import WeightsMismatchError, check_weights_settings, copy_weights_info, sidecar_path
from munet.integrations.monailabel_app.checks import RequestError, check_train_options
from munet.integrations.monailabel_app.classes import class_for, read_sidecar
from munet.integrations.monailabel_app.infer import INTERACTIVE_WEIGHTS

logger = logging.getLogger(__name__)

__all__ = [
    "MUNetTrainConstants", "MUNetTrainTask", "INTERACTIVE_TRAIN_CONFIG", "DEFAULT_MAX_EPOCHS",
    "DEFAULT_FINE_TUNE_LR", "DEFAULT_WARMUP_EPOCHS", "DEFAULT_MIN_VALIDATION_IMAGES", "KEY_METRIC", "PREVIOUS_SUFFIX",
]

INTERACTIVE_TRAIN_CONFIG = "train_interactive.json"
LABEL_TAG = "final"
#: epochs of a request that does not say (MONAI Label's default is 50, this app had 20)
DEFAULT_MAX_EPOCHS = 5
#: Adam learning rate when training continues from the served weights (from scratch: train.json's)
DEFAULT_FINE_TUNE_LR = 1e-4
#: epochs over which the fine-tune learning rate ramps up from WARMUP_START_FACTOR of itself
DEFAULT_WARMUP_EPOCHS = 1
WARMUP_START_FACTOR = 0.1
#: labelled validation images a new model must be scored on to be published (one inverted label
#: once validated, and published, a candidate over a good model)
DEFAULT_MIN_VALIDATION_IMAGES = 10
#: the score both models are compared on (the bundle's key metric)
KEY_METRIC = "val_score"
#: metrics reported for each model
REPORTED_METRICS = ("val_score", "val_dice", "val_auc", "val_accuracy")
#: the replaced weights: models/model.pt -> models/model.pt.prev
PREVIOUS_SUFFIX = ".prev"
STATS_FILE = "train_stats.json"


class MUNetTrainConstants(BundleConstants):
    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def configs(self) -> List[str]:
        return ["train.json"]

    def model_pytorch(self) -> str:
        return INTERACTIVE_WEIGHTS if self.interactive else "model.pt"


def _finite(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 6) if math.isfinite(number) else None


def _image_id(path: str) -> str:
    return Path(path).name.split(".")[0]


class MUNetTrainTask(BundleTrainTask):
    """Train the served bundle from the labels saved in the MONAI Label datastore."""

    def __init__(self, path: str, conf: Dict[str, str], interactive: bool = False, min_val: int = 2) -> None:
        self.interactive = interactive
        self.min_val = min_val
        #: fewer labelled validation images than this: train, but never publish (--conf min_validation_images)
        self.min_publish = int(conf.get("min_validation_images", DEFAULT_MIN_VALIDATION_IMAGES))
        self.name = "munet_interactive" if interactive else "munet"
        super().__init__(path, conf, const=MUNetTrainConstants(interactive), load_strict=True)
        self.description = ("Train the click-guided MUNet (simulated clicks) from the saved labels" if interactive
                            else "Train MUNet (mask, and class where known) from the saved labels")
        # train.json's handlers as written: the base class inserts its checkpoint loader into the
        # parsed config's own list, which then stays for every later request
        self._handlers = copy.deepcopy(self.bundle_config.get(self.const.key_train_handlers(), []))
        self._lock = threading.Lock()
        self._plan: Dict[str, Any] = {}

    # -- paths -----------------------------------------------------------------------------
    def served_weights(self) -> Path:
        return Path(self.bundle_path) / "models" / self.const.model_pytorch()

    def staging_dir(self) -> Path:
        return Path(self.bundle_path) / "eval" / "monailabel" / self.name

    def _config_files(self, path: str) -> List[str]:
        """train.json, plus train_interactive.json merged over it for the interactive task."""
        names = ["train.json"] + ([INTERACTIVE_TRAIN_CONFIG] if self.interactive else [])
        return [os.path.join(path, "configs", name) for name in names]

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(self._config_files(path))
        parser.config.update({"bundle_root": path})  # type: ignore[union-attr]
        return parser

    # -- options ---------------------------------------------------------------------------
    def defaults(self) -> Dict[str, Any]:
        return {
            "max_epochs": DEFAULT_MAX_EPOCHS,
            "val_split": 0.2,
            "learning_rate": float(self.bundle_config.get("learning_rate", 1e-3)),
            "fine_tune_learning_rate": DEFAULT_FINE_TUNE_LR,
            "warmup_epochs": DEFAULT_WARMUP_EPOCHS,
            "pretrained": True,
        }

    def check_options(self, request: Mapping[str, Any]) -> Dict[str, Any]:
        """The request's trainer options checked (:class:`RequestError` naming the field) and completed."""
        return check_train_options(request, self.defaults(), devices=sorted(set(device_map()) | set(device_map().values())))

    def config(self) -> Dict[str, Any]:
        options = super().config()
        options.update(self.defaults())
        options["model_filename"] = self.const.model_pytorch()
        options["multi_gpu"] = False
        return options

    def stats(self) -> Dict[str, Any]:
        """The last training's result (both scores, the decision), also from a training subprocess."""
        path = self.staging_dir() / STATS_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    # -- training --------------------------------------------------------------------------
    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict:
        options = self.check_options(request)
        request = {**dict(request), **options}
        request["model_filename"] = self.const.model_pytorch()  # the base class defaults to model.pt
        served = self.served_weights()
        fine_tune = bool(options["pretrained"]) and served.is_file()
        served_note = self._check_served(served) if fine_tune else None
        staging = self.staging_dir()
        with self._lock:
            staging.mkdir(parents=True, exist_ok=True)
            for stale in (self.const.model_pytorch(), str(self.bundle_config.get("last_checkpoint_filename", ""))):
                if stale and (staging / stale).is_file():
                    (staging / stale).unlink()
            learning_rate = options["fine_tune_learning_rate"] if fine_tune else options["learning_rate"]
            warmup = int(options["warmup_epochs"]) if fine_tune else 0
            self._plan = {
                "fine_tune": fine_tune, "served": served, "staging": staging, "learning_rate": learning_rate,
                "warmup_epochs": warmup, "max_epochs": int(options["max_epochs"]),
            }
            logger.info(
                f"{self.name}: {'fine-tuning from ' + served.name if fine_tune else 'training from scratch'}, "
                f"{options['max_epochs']} epochs, learning rate {learning_rate:g}"
                + (f", {warmup} warm-up epoch(s)" if warmup else "") + f"; candidate weights in {staging.name}/")
            if fine_tune and served_note:
                logger.warning(f"{self.name}: {served_note}; fine-tuning with the bundle's configs")
            started = time.time()
            super().__call__(request, datastore)
            result = self._gate(served, staging, started)
            self._write_stats(result)
        return result

    def _load_checkpoint(self, model_pytorch: str, pretrained: bool, train_handlers: List) -> None:
        """Not here: :meth:`_update_overrides` adds the loader to a copy of the handlers, only when fine-tuning."""

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
        # by image id, so the validation split (the last val_split of the list) is the same on every run
        items.sort(key=lambda item: _image_id(item["image"]))
        known = sum(item["class"] >= 0 for item in items)
        logger.info(f"{len(items)} labelled images; {known} with a class, {len(items) - known} segmentation only")
        if not items:
            raise RequestError("labels", "no image in the datastore has a final label yet: save labels first (PUT /datastore/label)", 409)
        return items

    @staticmethod
    def _scheduler(learning_rate: float, epochs: int, warmup: int) -> Dict[str, Any]:
        """Cosine decay to 1% (as train.json), after a linear warm-up from 10% over ``warmup`` epochs."""
        cosine = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "optimizer": "@optimizer",
                  "T_max": max(1, epochs - warmup), "eta_min": learning_rate * 0.01}
        if warmup <= 0:
            return cosine
        linear = {"_target_": "torch.optim.lr_scheduler.LinearLR", "optimizer": "@optimizer",
                  "start_factor": WARMUP_START_FACTOR, "end_factor": 1.0, "total_iters": warmup}
        if epochs <= warmup:
            return linear
        return {"_target_": "torch.optim.lr_scheduler.SequentialLR", "optimizer": "@optimizer",
                "schedulers": [linear, cosine], "milestones": [warmup]}

    def _update_overrides(self, overrides: Dict[str, Any]) -> Dict[str, Any]:
        train = overrides.pop(self.const.key_train_dataset_data())
        val = overrides.pop(self.const.key_validate_dataset_data(), None)
        self._plan["validation_is_training_set"] = not val or len(val) < self.min_val
        if not val or len(val) < self.min_val:
            logger.info(f"{len(val or [])} validation cases: the {len(train)} training cases also validate")
            train = train + list(val or [])
            val = list(train)
        self._plan["validation_images"] = [_image_id(item["image"]) for item in val]
        self._plan["validation_labels_sha256"] = labels_digest([item["label"] for item in val])
        folder = Path(self.bundle_path) / "eval" / "monailabel"
        folder.mkdir(parents=True, exist_ok=True)
        datalist = folder / f"datalist{'_interactive' if self.interactive else ''}.json"
        datalist.write_text(json.dumps({"training": train, "validation": val}, indent=1))
        device = str(overrides.get(self.const.key_device(), "cpu"))
        # the base class sets the trainer's epochs only; the schedule and progress read max_epochs
        overrides["max_epochs"] = overrides.pop(self.const.key_train_trainer_max_epochs())
        plan = self._plan
        handlers = copy.deepcopy(self._handlers)
        if plan["fine_tune"]:
            handlers.insert(0, {"_target_": "CheckpointLoader", "load_path": str(plan["served"]),
                                "load_dict": {self.model_dict_key: f"$@{self.const.key_network()}"}, "strict": True})
        staging = str(plan["staging"])
        overrides.update(
            datalist=str(datalist),
            dataset_dir=str(folder),
            require_lesion=False,
            skip_bad_cases=True,
            device=f"$torch.device('{device}')",
            ckpt_dir=staging,
            output_dir=staging,
            learning_rate=plan["learning_rate"],
            lr_scheduler=self._scheduler(plan["learning_rate"], plan["max_epochs"], plan["warmup_epochs"]),
        )
        overrides[self.const.key_train_handlers()] = handlers
        plan["overrides"] = {k: v for k, v in overrides.items() if k not in (self.const.key_train_handlers(), "lr_scheduler")}
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

    # -- scoring and publishing --------------------------------------------------------------
    def _check_served(self, served: Path) -> Optional[str]:
        """The served weights must fit the bundle's configs to be fine-tuned (409 naming the difference)."""
        parser = self._load_bundle_config(self.bundle_path, "")
        parser["pretrained"] = None  # the settings only: no ImageNet weights loaded to read them
        try:
            return check_weights_settings(served, parser.get_parsed_content("served_settings"))
        except WeightsMismatchError as err:
            raise RequestError("pretrained", f"{err}; or train from scratch with pretrained false", 409) from err

    def _score(self, weights: Path) -> Dict[str, Optional[float]]:
        """The validation metrics of ``weights`` on this run's validation images, with the same
        evaluator and seed for every model."""
        parser = ConfigParser()
        parser.read_meta(self.bundle_metadata_path)
        parser.read_config(self._config_files(self.bundle_path))
        parser.config.update({"bundle_root": self.bundle_path})  # type: ignore[union-attr]
        for key, value in self._plan["overrides"].items():
            parser[key] = value
        parser["validate#evaluator#val_handlers"] = None  # no checkpoint, early stop or metrics files
        parser["cache"] = "none"
        parser.parse()
        network = parser.get_parsed_content("network")
        device = next(network.parameters()).device
        state = torch.load(weights, map_location=device, weights_only=True)
        if isinstance(state, dict) and isinstance(state.get(self.model_dict_key), dict):
            state = state[self.model_dict_key]
        network.load_state_dict(state, strict=True)
        evaluator = parser.get_parsed_content("validate#evaluator")
        set_determinism(seed=int(parser.get_parsed_content("seed")))
        evaluator.run()
        metrics = evaluator.state.metrics
        return {name: _finite(metrics.get(name)) for name in REPORTED_METRICS}

    def _gate(self, served: Path, staging: Path, started: float) -> Dict[str, Any]:
        plan = self._plan
        candidate = staging / self.const.model_pytorch()
        weights_name = f"models/{served.name}"
        result: Dict[str, Any] = {
            "model": self.name,
            "published": False,
            "metric": KEY_METRIC,
            "before": None,
            "after": None,
            "weights": weights_name,
            "previous": None,
            "fine_tune": plan["fine_tune"],
            "learning_rate": plan["learning_rate"],
            "warmup_epochs": plan["warmup_epochs"],
            "max_epochs": plan["max_epochs"],
            "validation_images": plan.get("validation_images", []),
            "validation_is_training_set": plan.get("validation_is_training_set", False),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        }
        if not candidate.is_file():
            result["reason"] = "training saved no weights (no validation ran?): nothing published"
            return self._finish(result, started)
        result["after"] = self._score(candidate)
        after = result["after"][KEY_METRIC]
        if served.is_file():
            try:
                result["before"] = self._score(served)
            except Exception as err:  # weights that do not load: keep them, say why
                logger.exception(f"{self.name}: the served {served.name} could not be scored")
                result["reason"] = (f"the served {weights_name} could not be scored ({type(err).__name__}): nothing replaced; "
                                    f"move it away to publish without a comparison")
                return self._finish(result, started)
        before = result["before"][KEY_METRIC] if result["before"] else None
        n_val = len(plan.get("validation_images", []))
        result["min_validation_images"] = self.min_publish
        if plan.get("validation_is_training_set") or n_val < self.min_publish:
            what = "the training images themselves" if plan.get("validation_is_training_set") else "held out"
            result["reason"] = (f"validated on {n_val} labelled image(s) ({what}); publishing needs at least {self.min_publish} "
                                f"held-out ones: trained, {weights_name} kept (save more labels)")
        elif after is None:
            result["reason"] = f"the new weights have no {KEY_METRIC} (NaN): {weights_name} kept"
        elif result["before"] is not None and before is None:
            result["reason"] = f"the served weights have no {KEY_METRIC} (NaN) to compare with: {weights_name} kept"
        elif before is not None and after < before:
            result["reason"] = f"new {KEY_METRIC} {after:.4f} < served {before:.4f} on the same validation images: {weights_name} kept"
        else:
            result["previous"] = self._publish(candidate, served, result)
            result["published"] = True
            result["reason"] = (f"new {KEY_METRIC} {after:.4f} >= served {before:.4f} on the same validation images: published"
                                if before is not None else f"no served weights to compare with: published (new {KEY_METRIC} {after:.4f})")
        return self._finish(result, started)

    def _finish(self, result: Dict[str, Any], started: float) -> Dict[str, Any]:
        result["seconds"] = round(time.time() - started, 1)
        log = logger.info if result["published"] else logger.warning
        log(f"{self.name}: {result['reason']}")
        return result

    def _publish(self, candidate: Path, served: Path, result: Mapping[str, Any]) -> Optional[str]:
        """Copy the candidate over the served weights (atomically), keeping the replaced ones as ``.prev``."""
        previous = None
        side, side_prev = sidecar_path(served), Path(str(sidecar_path(served)) + PREVIOUS_SUFFIX)
        if served.is_file():
            prev = Path(str(served) + PREVIOUS_SUFFIX)
            atomic_copy(served, prev)
            if side.is_file():
                atomic_copy(side, side_prev)
            elif side_prev.is_file():
                side_prev.unlink()  # a stale one would pair with the wrong weights
            previous = f"models/{prev.name}"
        atomic_copy(candidate, served)
        validation = {"metric": KEY_METRIC, "before": result["before"], "after": result["after"],
                      "images": result["validation_images"], "labels_sha256": self._plan.get("validation_labels_sha256")}
        copy_weights_info(candidate, served, extra={"published_by": f"MONAI Label trainer {self.name}", "validation": validation})
        record_publication(self.bundle_path, served.name, {"published_by": f"MONAI Label trainer {self.name}", "validation": validation})
        logger.info(f"{self.name}: published new weights to models/{served.name}" + (f"; previous ones in {previous}" if previous else ""))
        return previous

    def _write_stats(self, result: Mapping[str, Any]) -> None:
        path = self.staging_dir() / STATS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, path)
