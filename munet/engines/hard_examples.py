"""Epoch-level sampling control: advance the batch sampler's epoch, and mine hard examples."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from munet.data.sampling import CASE_INDEX_KEY, MultiScaleBatchSampler
from munet.engines.metrics import binary_dice

__all__ = ["EpochSampling", "case_hardness"]

logger = logging.getLogger("munet")


def case_hardness(pred: Mapping[str, torch.Tensor], label: Mapping[str, torch.Tensor]) -> float:
    """How wrong the network was on one case, in [0, 2]: 1 - Dice of the best mask, plus
    1 - the probability given to the true class when the case has one (the paper's "prediction
    confidence")."""
    hardness = 1.0 - binary_dice(pred["mask"].detach().float(), label["mask"].float())
    target = int(label.get("class", -1))
    if target >= 0 and "class_logits" in pred:
        hardness += 1.0 - float(torch.softmax(pred["class_logits"].detach().float(), dim=0)[target])
    return hardness


class EpochSampling:
    """Keeps a :class:`MultiScaleBatchSampler` in step with the trainer, and (optionally) mines hard cases.

    Each epoch the sampler gets the epoch number (new sizes, new order; identical on every DDP
    rank). With ``hard_example_mining`` every training case seen this epoch is rated by
    :func:`case_hardness`; the ratings of all ranks are gathered and the next epoch samples case
    ``i`` with weight ``1 + strength * hardness_i`` (unseen cases keep their weight), alongside the
    focal loss, which already focuses on hard cases within a batch. A plain DataLoader makes this
    handler a no-op.
    """

    def __init__(self, loader: Any, hard_example_mining: bool = False, strength: float = 2.0) -> None:
        sampler = getattr(loader, "batch_sampler", None)
        self.sampler = sampler if isinstance(sampler, MultiScaleBatchSampler) else None
        self.mining = hard_example_mining and self.sampler is not None
        self.strength = strength
        self._ratings: Dict[int, float] = {}
        # class-balance weights set before training stay as the base that hardness multiplies
        self._base = self.sampler.weights.clone() if self.sampler is not None else None

    def attach(self, engine: Engine) -> None:
        if self.sampler is None:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        if self.mining:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._rate_batch)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._update_weights)

    def _epoch_started(self, engine: Engine) -> None:
        self.sampler.set_epoch(engine.state.epoch)
        self._ratings = {}

    def _rate_batch(self, engine: Engine) -> None:
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        output = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for sample, result in zip(batch, output):
            if CASE_INDEX_KEY in sample and isinstance(result.get("pred"), Mapping) and isinstance(result.get("label"), Mapping):
                self._ratings[int(sample[CASE_INDEX_KEY])] = case_hardness(result["pred"], result["label"])

    def _update_weights(self, engine: Engine) -> None:
        ratings: List[Dict[int, float]] = [self._ratings]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ratings = [dict() for _ in range(dist.get_world_size())]
            dist.all_gather_object(ratings, self._ratings)
        weights = self.sampler.weights.clone()
        base = self._base if self._base is not None else torch.ones_like(weights)
        for part in ratings:
            for index, hardness in part.items():
                weights[index] = base[index] * (1.0 + self.strength * hardness)
        self.sampler.set_weights(weights.tolist())
        top = torch.topk(weights, k=min(3, len(weights))).indices.tolist()
        logger.info("hard example mining: weights %.2f..%.2f, hardest cases %s", float(weights.min()), float(weights.max()), top)
