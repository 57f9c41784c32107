"""Turn a collated batch into the network input and the multi-task target."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch

from munet.constants import MISSING_CLASS

__all__ = ["MultiTaskPrepareBatch"]


class MultiTaskPrepareBatch(PrepareBatch):
    """``(image, {"mask": label, "class": class})`` for MONAI's SupervisedTrainer/Evaluator.

    MONAI's default ``prepare_batch`` gives ``(image, label)`` only; MUNet's loss also needs the
    class. A batch without class labels (MONAI Label sends image and mask only) gets -1, which the
    loss skips; a batch without masks (inference) gets no target at all.
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", class_key: str = "class") -> None:
        self.image_key = image_key
        self.label_key = label_key
        self.class_key = class_key

    def __call__(
        self,
        batchdata: Dict[str, Any],
        device: Optional[str | torch.device] = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> Tuple[torch.Tensor, Optional[Dict[str, torch.Tensor]]]:
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        if self.label_key not in batchdata:
            return image, None
        mask = batchdata[self.label_key].to(device=device, non_blocking=non_blocking, **kwargs)
        if isinstance(mask, MetaTensor):  # the loss needs no metadata; plain tensors skip its dispatch cost
            mask = mask.as_tensor()
        classes = batchdata.get(self.class_key)
        if classes is None:
            classes = torch.full((image.shape[0],), MISSING_CLASS, dtype=torch.long)
        classes = torch.as_tensor(classes).reshape(-1).long().to(device=device, non_blocking=non_blocking)
        return image, {"mask": mask, "class": classes}
