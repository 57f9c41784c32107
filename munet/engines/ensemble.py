"""Ensembles of trained bundles (paper eq. 7): weighted sums of best masks and class probabilities."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from munet.engines.bundle_folder import read_bundle_config
from munet.networks.factory import place_network
from munet.networks.munet import CLASS_KEY, MASK_KEY, PRESENCE_KEY

__all__ = ["BundleEnsemble", "combine", "served_network"]

logger = logging.getLogger("munet")


def combine(outputs: Sequence[Dict[str, torch.Tensor]], weights: Sequence[float]) -> Dict[str, torch.Tensor]:
    """Eq. 7: v = sum_i lambda_i v_i and p_u = sum_i lambda_i p_ui, with the lambdas normalised to sum 1.

    The paper only asks lambda_i in (0, 1); normalising keeps the best mask and the class
    probabilities probabilities. ``class_logits`` of the result is log(p), so a softmax returns p.
    """
    if len(outputs) != len(weights) or not outputs:
        raise ValueError(f"{len(outputs)} outputs but {len(weights)} weights")
    lam = torch.as_tensor([float(w) for w in weights], dtype=torch.float32)
    if bool((lam <= 0).any()):
        raise ValueError(f"ensemble weights must be positive, got {list(weights)}")
    lam = lam / lam.sum()
    mask = sum(float(w) * out[MASK_KEY] for w, out in zip(lam, outputs))
    result = {MASK_KEY: mask}
    if all(CLASS_KEY in out for out in outputs):
        prob = sum(float(w) * torch.softmax(out[CLASS_KEY].float(), dim=1) for w, out in zip(lam, outputs))
        result[CLASS_KEY] = torch.log(prob.clamp_min(1e-8))
    if all(PRESENCE_KEY in out for out in outputs):
        present = sum(float(w) * torch.sigmoid(out[PRESENCE_KEY].float()) for w, out in zip(lam, outputs))
        result[PRESENCE_KEY] = torch.logit(present, eps=1e-6)
    return result


class BundleEnsemble(nn.Module):
    """k trained bundles behind one network: ``forward`` gives the combined best mask, ``forward_dict`` all.

    Args:
        bundle_dirs: bundle roots, each with ``configs/train.json`` + ``inference.json`` and ``models/model.pt``
            (its own backbone and widths); they are built with this bundle's code.
        weights: lambda_i per bundle (normalised to sum 1); equal by default.
    """

    def __init__(self, bundle_dirs: Sequence[str], weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        if not bundle_dirs:
            raise ValueError("an ensemble needs at least one bundle directory")
        members: List[nn.Module] = []
        for directory in bundle_dirs:
            root = Path(directory)
            weights_file = root / "models" / "model.pt"
            if not weights_file.is_file():
                raise FileNotFoundError(f"ensemble member {root}: {weights_file} not found")
            parser = read_bundle_config(root)
            net = parser.get_parsed_content("network_def")
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("model", state) if "model" in state else state)
            members.append(net.eval())
            logger.info("ensemble member %s: %s", root, type(net).__name__)
        self.members = nn.ModuleList(members)
        self.weights = list(weights) if weights is not None else [1.0] * len(members)
        if len(self.weights) != len(members):
            raise ValueError(f"{len(members)} ensemble members but {len(self.weights)} weights")

    def forward_dict(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return combine([member.forward_dict(x) for member in self.members], self.weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dict(x)[MASK_KEY]


def served_network(network: nn.Module, device: Any, channels_last: bool = False, ensemble_bundles: Sequence[str] = (),
                   ensemble_weights: Optional[Sequence[float]] = None) -> nn.Module:
    """The network inference.json serves: the ensemble of ``ensemble_bundles`` when given, else ``network``."""
    if ensemble_bundles:
        return BundleEnsemble(ensemble_bundles, ensemble_weights).to(device)
    return place_network(network, device, channels_last)
