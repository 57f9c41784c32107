"""MUNet's multi-task loss (paper eq. 3): focal loss for the class + lambda * sum of branch Dice losses.

    L = L_cls + lambda * sum_k (1 - Dice(sigmoid(v_k), v resized to v_k's size)),   lambda = 0.25

Beyond the paper, a network with a presence head (``lesion_logit``) adds
``lambda_presence * BCE(lesion_logit, mask has any lesion pixel)``, and its per-image Dice terms
are then averaged over the images that hold a lesion only: on an empty mask the per-image Dice is
about 1 whatever is predicted and has no gradient, so counting those images only dilutes the
lesion images' gradient; saying "no lesion" is the presence logit's job.

``L_cls`` is MONAI's softmax ``FocalLoss`` (alpha, gamma configurable; alpha may be per-class
weights for cost-sensitive learning) and each Dice term is MONAI's ``DiceLoss``. A sample whose


class label is missing (negative, as ``prepare_batch`` fills in when MONAI Label sends only image
and mask) adds no classification term. The class head then still gets a zero-valued term so its
parameters stay in the graph (DDP would otherwise fail on unused parameters).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss
from torch import nn

from munet.networks.munet import BRANCH_PREFIX, CLASS_KEY, PRESENCE_KEY

__all__ = ["MUNetLoss"]


class MUNetLoss(nn.Module):
    """Focal loss on the class logits plus ``lambda_dice`` times the sum of the branches' Dice losses.

    Args:
        lambda_dice: the paper's lambda (0.25).
        focal_gamma: focusing parameter gamma of the focal loss.
        focal_alpha: None, a float (weight of the malignant class, benign gets 1 - alpha) or one
            weight per class (cost-sensitive learning).
        target_resize: how the target mask is brought to each branch's size: ``"area"`` (soft
            targets, no aliasing of thin lesions) or ``"nearest"`` (binary targets).
        class_weight_in_loss: multiply the class term by this (0 trains segmentation only).
        dice_batch: compute each branch's Dice over the whole batch instead of per image
            (MONAI ``DiceLoss(batch=True)``, as nnU-Net does). Needed when training on lesion-free
            images: the per-image Dice of an empty mask is ``smooth / (sum(pred) + smooth)``, about 1
            for any prediction and with no gradient, so false positives on normal images go
            unpenalised; over the batch they enlarge the denominator and are pushed down.
        lambda_presence: weight of the presence term (networks with a presence head only).
    """

    def __init__(
        self,
        lambda_dice: float = 0.25,
        focal_gamma: float = 2.0,
        focal_alpha: Optional[Union[float, Sequence[float]]] = None,
        target_resize: str = "area",
        class_weight_in_loss: float = 1.0,
        dice_batch: bool = False,
        lambda_presence: float = 1.0,
    ) -> None:
        super().__init__()
        if target_resize not in ("area", "nearest"):
            raise ValueError(f"target_resize must be 'area' or 'nearest', got {target_resize!r}")
        alpha = list(focal_alpha) if isinstance(focal_alpha, (list, tuple)) else focal_alpha
        self.focal = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=focal_gamma, alpha=alpha, reduction="none")
        self.dice = DiceLoss(sigmoid=True, reduction="none", batch=dice_batch)
        self.lambda_dice = lambda_dice
        self.target_resize = target_resize
        self.class_weight_in_loss = class_weight_in_loss
        self.dice_batch = dice_batch
        self.lambda_presence = lambda_presence
        self.last_components: Dict[str, torch.Tensor] = {}

    def forward(
        self, outputs: Mapping[str, torch.Tensor], target: Union[Mapping[str, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Total loss; ``target`` is ``{"mask": [B,1,H,W], "class": [B] or [B,1]}`` or the mask alone.

        The parts of the last call stay in ``last_components`` (detached) for progress logging.
        """
        parts = self.components(outputs, target)
        self.last_components = {k: v.detach() for k, v in parts.items() if k != "loss"}
        return parts["loss"]

    def components(
        self, outputs: Mapping[str, torch.Tensor], target: Union[Mapping[str, torch.Tensor], torch.Tensor]
    ) -> Dict[str, torch.Tensor]:
        """The total loss and its parts: ``loss``, ``class_loss``, ``dice_loss`` and one per branch."""
        if isinstance(target, torch.Tensor):
            mask, labels = target, None
        else:
            mask, labels = target["mask"], target.get("class")
        mask = mask.float()
        parts: Dict[str, torch.Tensor] = {}
        dice_total = mask.new_zeros(())
        has_lesion = mask.flatten(1).amax(dim=1) > 0.5
        presence = outputs.get(PRESENCE_KEY)
        for key, logits in ((k, v) for k, v in outputs.items() if k.startswith(BRANCH_PREFIX)):
            resized = self._resize_target(mask, logits.shape[-2:])
            per_image = self.dice(logits, resized)
            if presence is not None and not self.dice_batch:  # empty masks: the presence term's job
                weights = has_lesion.to(per_image.dtype).reshape(-1, *([1] * (per_image.dim() - 1)))
                branch = (per_image * weights).sum() / weights.sum().clamp_min(1.0)
            else:
                branch = per_image.mean()
            parts[f"dice_loss_{key}"] = branch.detach()
            dice_total = dice_total + branch
        if not parts:
            raise ValueError(f"network outputs have no branch masks (keys starting with {BRANCH_PREFIX!r})")
        class_loss = self._class_loss(outputs[CLASS_KEY], labels)
        parts["class_loss"] = class_loss.detach()
        parts["dice_loss"] = dice_total.detach()
        parts["loss"] = self.class_weight_in_loss * class_loss + self.lambda_dice * dice_total
        if presence is not None:
            presence_loss = F.binary_cross_entropy_with_logits(presence.reshape(-1).float(), has_lesion.float())
            parts["presence_loss"] = presence_loss.detach()
            parts["loss"] = parts["loss"] + self.lambda_presence * presence_loss
        return parts

    def _resize_target(self, mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if tuple(mask.shape[-2:]) == tuple(size):
            return mask
        return F.interpolate(mask, size=list(size), mode=self.target_resize)

    def _class_loss(self, logits: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        zero = logits.sum() * 0.0  # keeps the class head in the graph when no sample has a label
        if labels is None:
            return zero
        labels = labels.reshape(-1).to(device=logits.device).long()
        if labels.numel() != logits.shape[0]:
            raise ValueError(f"{labels.numel()} class labels for a batch of {logits.shape[0]}")
        known = labels >= 0
        if bool((labels >= logits.shape[1]).any()):
            raise ValueError(f"class label out of range 0..{logits.shape[1] - 1}: {labels.tolist()}")
        if not bool(known.any()):
            return zero
        per_sample = self.focal(logits[known], labels[known].unsqueeze(1)).sum(dim=1)
        return per_sample.mean() + zero
