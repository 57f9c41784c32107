"""The MONAI Label app: serves this MUNet bundle (start with ``scripts/start_monailabel.sh``).

Models (``GET /info/``):

- ``munet``: automatic lesion mask + benign/malignant probabilities (``models/model.pt``);
- ``munet_interactive``: the same network with two click channels (DeepGrow style), refined by
  foreground/background clicks (``models/model_interactive.pt``); listed once that file exists.

Trainers ``munet`` and ``munet_interactive`` train them from the datastore's final labels and
publish new weights only when they score at least as well as the served ones (:mod:`.train`).
The strategy ``most_uncertain`` (the default) offers the unlabelled image the automatic model is
least sure of (:mod:`.uncertainty`).

Weights that appear or change while the server runs (a training, a copy from elsewhere, a
restored ``.prev``) are picked up at the next ``/info/`` or ``/infer`` call, with the settings
their sidecar records (:mod:`munet.engines.weights_info`); no restart is needed. A model that
cannot be served is listed under ``not_served`` in ``/info/`` with the reason.

``--conf`` options: ``bundle_path`` (the bundle served and trained; default: this repository),
``preload`` (load the networks at start-up). The folder holding this file must be the ``--app``
and the repository must be importable (the start script sets PYTHONPATH).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from munet.engines.weights_info import sidecar_path
from munet.integrations.monailabel_app.checks import RequestError, check_studies_folder, scrub_paths
from munet.integrations.monailabel_app.dicomweb import DEFAULT_SEARCH_FILTER, PacsDatastore
from munet.integrations.monailabel_app.infer import INTERACTIVE_WEIGHTS, MUNetInferTask
from munet.integrations.monailabel_app.train import MUNetTrainTask
from munet.integrations.monailabel_app.uncertainty import MostUncertain, UncertaintyScoring, record_uncertainty

logger = logging.getLogger(__name__)

#: what MONAI Label 0.8.5 searches a DICOMweb server for when nothing is set
MONAI_LABEL_DEFAULT_SEARCH_FILTER = {"Modality": "CT"}

DEFAULT_BUNDLE = Path(__file__).resolve().parents[3]
#: (name, interactive) of the models and trainers
MODELS = (("munet", False), ("munet_interactive", True))


class MUNetApp(MONAILabelApp):
    """MONAI Label app for the MUNet ultrasound bundle."""

    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]) -> None:
        # not ``bundle_path``: MONAILabelApp has a method of that name (the trainer's bundle)
        self.served_bundle = os.path.abspath(conf.get("bundle_path") or str(DEFAULT_BUNDLE))
        metadata = Path(self.served_bundle) / "configs" / "metadata.json"
        if not metadata.is_file():
            raise FileNotFoundError(f"bundle_path {self.served_bundle}: no configs/metadata.json (not a MUNet bundle)")
        check_studies_folder(studies)
        meta = json.loads(metadata.read_text())
        self._refresh_lock = threading.RLock()
        self._weights_seen: Dict[str, Tuple] = {}  # name -> (weights, sidecar) (mtime, size) the task was built from
        self.not_served: Dict[str, str] = {}
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=meta.get("name", "MUNet"),
            description="MUNet: ultrasound lesion segmentation and benign/malignant classification",
            version=meta.get("version", "0"),
        )

    # -- a PACS as the datastore ----------------------------------------------------------------
    def init_remote_datastore(self) -> Datastore:
        """A DICOMweb root: :class:`.dicomweb.PacsDatastore` (an image per ultrasound instance,
        labels stored as the bundle's DICOM SEG). ``MONAI_LABEL_DICOMWEB_SEARCH_FILTER`` selects
        the instances; MONAI Label's own default, ``{"Modality": "CT"}``, which finds no
        ultrasound, is taken as unset: ``{"Modality": "US"}``. (MONAI Label's start-up exports
        every setting, its defaults included, into the environment: the default cannot be told
        from a value the user gave, and a CT filter has no use in this app.)"""
        search = dict(settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER or {})
        if search in ({}, MONAI_LABEL_DEFAULT_SEARCH_FILTER):
            logger.info(f"DICOMweb search filter {search} finds no ultrasound: using {DEFAULT_SEARCH_FILTER}")
            search = DEFAULT_SEARCH_FILTER
        cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
        return PacsDatastore(self.studies, cache, search)

    def _download_dcmqi_tools(self) -> None:
        """Never: labels are written by the bundle's highdicom writer, not dcmqi (MONAI Label
        downloads dcmqi from the internet at start-up otherwise)."""

    # -- models that follow their weights files ---------------------------------------------
    def _weights(self, interactive: bool) -> Path:
        return Path(self.served_bundle) / "models" / (INTERACTIVE_WEIGHTS if interactive else "model.pt")

    def _signature(self, interactive: bool) -> Tuple:
        def stat(path: Path) -> Optional[Tuple[int, int]]:
            try:
                s = path.stat()
            except OSError:
                return None
            return s.st_mtime_ns, s.st_size
        weights = self._weights(interactive)
        return stat(weights), stat(sidecar_path(weights))

    def _make_infer(self, name: str, interactive: bool) -> Optional[MUNetInferTask]:
        self._weights_seen[name] = self._signature(interactive)
        try:
            task = MUNetInferTask(self.served_bundle, self.conf, interactive=interactive)
        except Exception as err:  # e.g. weights that do not fit the configured network
            reason = f"models/{self._weights(interactive).name} cannot be loaded: {scrub_paths(str(err))[:300]}"
            logger.exception(f"{name}: not served")
        else:
            if task.is_valid():
                self.not_served.pop(name, None)
                return task
            reason = task.refusal or f"models/{self._weights(interactive).name} is missing (train it first)"
        self.not_served[name] = reason
        logger.warning(f"{name}: not served, {reason}")
        return None

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for name, interactive in MODELS:
            task = self._make_infer(name, interactive)
            if task is not None:
                infers[name] = task
        return infers

    def refresh_models(self) -> None:
        """Rebuild a model whose weights or sidecar changed since it was built (or appeared, or went)."""
        with self._refresh_lock:
            for name, interactive in MODELS:
                if self._signature(interactive) == self._weights_seen.get(name):
                    continue
                logger.info(f"{name}: models/{self._weights(interactive).name} changed: reloading")
                task = self._make_infer(name, interactive)
                if task is not None:
                    self._infers[name] = task
                else:
                    self._infers.pop(name, None)

    def served_models(self) -> List[str]:
        self.refresh_models()
        return sorted(k for k, v in self._infers.items() if v.is_valid())

    def info(self) -> Dict[str, Any]:
        self.refresh_models()
        meta = super().info()
        if self.not_served:
            meta["not_served"] = dict(self.not_served)
        return meta

    def infer(self, request: Dict[str, Any], datastore: Any = None) -> Dict[str, Any]:
        self.refresh_models()
        model = request.get("model")
        if model not in self._infers:
            why = self.not_served.get(str(model))
            raise RequestError("model", f"{model!r} is not served here" + (f": {why}" if why else "")
                               + f" (served: {', '.join(self.served_models()) or 'none'})", 404)
        result = super().infer(request, datastore)
        image = request.get("image")
        if model == "munet" and isinstance(image, str) and not os.path.exists(image):  # a datastore id, not an upload
            try:
                record_uncertainty(datastore or self.datastore(), image, result.get("params") or {})
            except Exception as err:  # noqa: BLE001 - the suggestion order is a convenience; the answer stands
                logger.warning(f"could not record the uncertainty of {image}: {scrub_paths(str(err))[:200]}")
        return result

    # -- training ---------------------------------------------------------------------------
    def init_trainers(self) -> Dict[str, TrainTask]:
        return {name: MUNetTrainTask(self.served_bundle, self.conf, interactive=interactive) for name, interactive in MODELS}

    def check_train_request(self, model: str, options: Any) -> Dict[str, Any]:
        """The options of ``POST /train/<model>``, checked and completed (:class:`RequestError` otherwise)."""
        trainer = self._trainers.get(model)
        if not isinstance(trainer, MUNetTrainTask):
            raise RequestError("model", f"{model!r} is not a trainer here (trainers: {', '.join(sorted(self._trainers))})", 404)
        return trainer.check_options(options)

    def train(self, request: Dict[str, Any]) -> Dict[str, Any]:
        model = request.get("model")
        if model not in self._trainers:
            raise RequestError("model", f"{model!r} is not a trainer here (trainers: {', '.join(sorted(self._trainers))})", 404)
        result = super().train(request)
        self.refresh_models()
        return result

    def class_names(self) -> List[str]:
        trainer = self._trainers.get("munet")
        if isinstance(trainer, MUNetTrainTask):
            return list(trainer.bundle_config.get_parsed_content("class_names"))
        return ["benign", "malignant"]

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"most_uncertain": MostUncertain(UncertaintyScoring(self.infer)), "random": Random(), "first": First()}

    def init_scoring_methods(self) -> Dict[str, ScoringMethod]:
        return {"munet_uncertainty": UncertaintyScoring(self.infer)}
