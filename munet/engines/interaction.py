"""Click simulation with the model in the loop, for training the interactive (guided) MUNet.

DeepGrow/DeepEdit train with MONAI's ``Interaction``: before an iteration, the current model
predicts, clicks are placed on its errors, and the guidance channels are updated. That class
expects the network to return a tensor and zeroes the guidance of the first batch item only;
MUNet's training output is a dict, so this is a small equivalent written for it. It runs as an
Ignite handler on ``GET_BATCH_COMPLETED`` and replaces ``engine.state.batch`` (public Ignite state)
instead of wrapping the trainer's private ``_iteration``. Clicks go to
the deepest pixel (distance transform) of the larger error, missed lesion (foreground click)
or false lesion (background click), per sample, and are rendered the way
:func:`munet.data.guidance.render_clicks` renders an annotator's clicks at the input size.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
from ignite.engine import Engine, Events
from scipy import ndimage

from munet.data.guidance import GUIDANCE_CHANNELS, render_clicks
from munet.networks.munet import MASK_KEY

__all__ = ["ClickInteraction", "attach_clicks", "error_click"]


def error_click(pred: np.ndarray, label: np.ndarray):
    """("foreground" | "background", (row, col)) at the deepest point of the larger error, or None."""
    missed, extra = label & ~pred, pred & ~label
    if not missed.any() and not extra.any():
        return None
    kind, region = ("foreground", missed) if missed.sum() >= extra.sum() else ("background", extra)
    depth = ndimage.distance_transform_edt(region)
    return kind, tuple(int(i) for i in np.unravel_index(int(depth.argmax()), depth.shape))


class ClickInteraction:
    """Before a share of the training steps, add clicks on the current model's errors to the batch.

    ``attach(trainer)`` (``click_interaction`` in configs/train_interactive.json).

    Args:
        prob: share of iterations that get simulated clicks (the others train on the clicks the
            data pipeline drew, including none).
        max_clicks: rounds of predict-then-click per such iteration (1..max_clicks, random).
        threshold: probability above which the fused mask counts as lesion.
        seed: seed of the choice of iterations and rounds.
    """

    def __init__(self, prob: float = 0.5, max_clicks: int = 2, threshold: float = 0.5, seed: int = 0) -> None:
        self.prob = prob
        self.max_clicks = max_clicks
        self.threshold = threshold
        self.rng = np.random.RandomState(seed)

    def add_clicks(self, network: torch.nn.Module, image: torch.Tensor, label: torch.Tensor, device: Any) -> torch.Tensor:
        """Return ``image`` with clicks on the network's errors added to its last two channels."""
        image = image.clone()
        truth = (torch.as_tensor(label) > 0.5).cpu().numpy()[:, 0]
        was_training = network.training
        network.eval()
        try:
            for _ in range(int(self.rng.randint(1, self.max_clicks + 1))):
                with torch.no_grad():
                    pred = network(image.to(device))[MASK_KEY][:, 0].float().cpu().numpy() > self.threshold
                for b in range(image.shape[0]):
                    click = error_click(pred[b], truth[b])
                    if click is None:
                        continue
                    kind, point = click
                    maps = render_clicks(pred.shape[1:], [point] if kind == "foreground" else [], [point] if kind == "background" else [])
                    guidance = image[b, -GUIDANCE_CHANNELS:]
                    image[b, -GUIDANCE_CHANNELS:] = torch.maximum(guidance, torch.from_numpy(maps).to(guidance))
        finally:
            network.train(was_training)
        return image

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        if self.rng.rand() < self.prob:
            batchdata: Dict[str, Any] = dict(engine.state.batch)
            batchdata["image"] = self.add_clicks(engine.network, batchdata["image"], batchdata["label"], engine.state.device)
            engine.state.batch = batchdata


def attach_clicks(interaction: Optional["ClickInteraction"], engine: Engine) -> None:
    """Attach the simulated clicks of an interactive training (``click_interaction``); none for the automatic model."""
    if interaction is not None:
        interaction.attach(engine)
