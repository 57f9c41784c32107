"""The MONAI Label app: serves this MUNet bundle (start with ``scripts/start_monailabel.sh``).

Models (``GET /info/``):

- ``munet``: automatic lesion mask + benign/malignant probabilities (``models/model.pt``);
- ``munet_interactive``: the same network with two click channels (DeepGrow style), refined by
  foreground/background clicks (``models/model_interactive.pt``); listed once that file exists.

Trainers ``munet`` and ``munet_interactive`` train them from the datastore's final labels.

``--conf`` options: ``bundle_path`` (the bundle served and trained; default: this repository),
``preload`` (load the networks at start-up). The folder holding this file must be the ``--app``
and the repository must be importable (the start script sets PYTHONPATH).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from bundle.monailabel_app.infer import MUNetInferTask
from bundle.monailabel_app.train import MUNetTrainTask

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2]


class MUNetApp(MONAILabelApp):
    """MONAI Label app for the MUNet ultrasound bundle."""

    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]) -> None:
        # not ``bundle_path``: MONAILabelApp has a method of that name (the trainer's bundle)
        self.served_bundle = os.path.abspath(conf.get("bundle_path") or str(DEFAULT_BUNDLE))
        metadata = Path(self.served_bundle) / "configs" / "metadata.json"
        if not metadata.is_file():
            raise FileNotFoundError(f"bundle_path {self.served_bundle}: no configs/metadata.json (not a MUNet bundle)")
        meta = json.loads(metadata.read_text())
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=meta.get("name", "MUNet"),
            description="MUNet: ultrasound lesion segmentation and benign/malignant classification",
            version=meta.get("version", "0"),
        )

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for name, interactive in (("munet", False), ("munet_interactive", True)):
            task = MUNetInferTask(self.served_bundle, self.conf, interactive=interactive)
            if task.is_valid():
                infers[name] = task
            else:
                weights = "model_interactive.pt" if interactive else "model.pt"
                logger.warning(f"{name}: not served, {self.served_bundle}/models/{weights} is missing (train it first)")
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        return {name: MUNetTrainTask(self.served_bundle, self.conf, interactive=interactive)
                for name, interactive in (("munet", False), ("munet_interactive", True))}

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), "first": First()}
