"""The paper's metrics in one Ignite metric: Dice (best mask and each branch), Sen, Spec, Acc, AUC.

One metric object rather than a MONAI handler per number because the per-case rows (for the
evaluation CSV) and the combined key metric (``val_score`` = mean of Dice and AUC, used for the
best checkpoint and early stopping) need all of them together, and because samples without a
class label must be left out of the classification numbers only. The arithmetic uses MONAI's
``compute_dice``, ``get_confusion_matrix`` / ``compute_confusion_matrix_metric`` and ``compute_roc_auc``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence

import torch
import torch.distributed as dist
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from monai.metrics import compute_confusion_matrix_metric, compute_dice, compute_roc_auc, get_confusion_matrix

from munet.engines.inferer import VIEW_AGREEMENT_KEY
from munet.engines.postprocessing import CLASS_LABEL_KEY, CLASS_PROB_KEY, LESION_PROB_KEY

__all__ = ["MUNetMetrics", "classification_metrics", "binary_dice"]

BRANCH_PRED_PREFIX = "pred_mask_stride"


def binary_dice(pred: torch.Tensor, label: torch.Tensor, threshold: float = 0.5) -> float:
    """Dice of a thresholded probability map against a 0/1 mask; both empty counts as 1.

    The label is compared on the prediction's device: on a GPU the validation label stayed on the
    device while the post-processed prediction was on the CPU (found on an H200, 2026-12-04); hard
    example mining, with both on the GPU, copies nothing.
    """
    y_pred = (pred.detach() >= threshold).float()[None]
    y = (label.detach().to(pred.device) > 0.5).float()[None]
    if y_pred.shape != y.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and mask {tuple(label.shape)} differ in size")
    return float(compute_dice(y_pred, y, include_background=True, ignore_empty=False).item())


def classification_metrics(prob_positive: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> Dict[str, float]:
    """Sensitivity, specificity, accuracy (positive = malignant, predicted when p >= threshold), AUC.

    MONAI's confusion-matrix functions and ``compute_roc_auc``, in float64 (the figures are ratios of
    case counts, exact as Python floats). Undefined values (no positive or no negative case) are NaN.
    """
    nan = float("nan")
    if not labels:
        return {"sensitivity": nan, "specificity": nan, "accuracy": nan, "auc": nan}
    predicted = torch.tensor([[float(p >= threshold)] for p in prob_positive], dtype=torch.float64)
    truth = torch.tensor([[float(y == 1)] for y in labels], dtype=torch.float64)
    counts = get_confusion_matrix(predicted, truth, include_background=True).sum(dim=0).double()  # [1, (tp, fp, tn, fn)]
    figures = {name: float(compute_confusion_matrix_metric(name, counts)) for name in ("sensitivity", "specificity", "accuracy")}
    positives = int(truth.sum())
    auc = nan
    if 0 < positives < len(labels):
        auc = float(compute_roc_auc(torch.tensor(prob_positive), torch.tensor(labels)))
    return {**figures, "auc": auc}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class MUNetMetrics(Metric):
    """Accumulates per-case results of post-processed samples and computes the paper's metrics.

    ``update`` takes the engine output (a list of dicts after ``SplitOutputd`` and ``Invertd``).
    ``compute`` returns a dict whose items Ignite copies into ``engine.state.metrics`` with
    ``prefix``: ``dice``, ``dice_mask_strideN`` per branch, ``sensitivity``, ``specificity``,
    ``accuracy``, ``auc`` and ``score`` (mean of Dice and AUC; Dice alone when AUC is undefined).
    With lesion-free cases (empty masks), ``dice`` counts each of them as 1 when nothing is marked
    and 0 otherwise, and ``dice_lesion`` (lesion cases only) and ``normal_fpr`` (share of
    lesion-free cases with any marked pixel) are added.
    Under DDP, every rank's cases are gathered before computing.
    """

    def __init__(self, prefix: str = "val_", positive_class: int = 1, threshold: float = 0.5) -> None:
        self.prefix = prefix
        self.positive_class = positive_class
        self.threshold = threshold
        self.rows: List[Dict[str, Any]] = []
        super().__init__(output_transform=lambda output: output)

    @reinit__is_reduced
    def reset(self) -> None:
        self._rows: List[Dict[str, Any]] = []

    @reinit__is_reduced
    def update(self, output: Any) -> None:
        samples = output if isinstance(output, (list, tuple)) else [output]
        for sample in samples:
            self._rows.append(self._case_row(sample))

    def _case_row(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        pred, label = sample["pred"], sample.get("label")
        image = sample.get("image")
        meta = getattr(image, "meta", {}) or {}
        row: Dict[str, Any] = {"image": str(meta.get("filename_or_obj", ""))}
        if label is not None:
            row["dice"] = binary_dice(pred, label, self.threshold)
            for key, value in sample.items():
                if isinstance(key, str) and key.startswith(BRANCH_PRED_PREFIX):
                    row["dice_" + key[len("pred_"):]] = binary_dice(value, label, self.threshold)
            row["lesion_pixels"] = int((label > 0.5).sum())
        row["pred_pixels"] = int((pred >= self.threshold).sum())
        if LESION_PROB_KEY in sample:
            row["lesion_prob"] = float(sample[LESION_PROB_KEY])
        if CLASS_PROB_KEY in sample:
            row["prob_malignant"] = float(sample[CLASS_PROB_KEY][self.positive_class])
        if VIEW_AGREEMENT_KEY in sample:
            row["view_agreement"] = float(sample[VIEW_AGREEMENT_KEY])
        row["class"] = int(sample.get(CLASS_LABEL_KEY, -1))
        return row

    def compute(self) -> Dict[str, float]:
        rows = self._rows
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: List[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        self.rows = rows
        results: Dict[str, float] = {}
        dice_keys = sorted({k for row in rows for k in row if k.startswith("dice")})
        for key in dice_keys:
            results[key] = _mean([row[key] for row in rows if key in row])
        lesion_rows = [row for row in rows if row.get("lesion_pixels", 0) > 0]
        normal_rows = [row for row in rows if row.get("lesion_pixels", 1) == 0]
        if normal_rows:  # lesion-free cases: Dice on lesion cases alone, and the false-positive rate
            results["dice_lesion"] = _mean([row["dice"] for row in lesion_rows])
            results["normal_fpr"] = _mean([float(row["pred_pixels"] > 0) for row in normal_rows])
        labelled = [row for row in rows if row["class"] >= 0 and "prob_malignant" in row]
        cls = classification_metrics(
            [row["prob_malignant"] for row in labelled],
            [int(row["class"] == self.positive_class) for row in labelled],
            self.threshold,
        )
        results.update(cls)
        dice = results.get("dice", float("nan"))
        results["score"] = dice if math.isnan(cls["auc"]) else (dice + cls["auc"]) / 2.0
        return {self.prefix + key: value for key, value in results.items()}

    def completed(self, engine: Any, name: str) -> None:
        """Put every computed value into ``engine.state.metrics`` and ``name`` -> the score."""
        results = self.compute()
        engine.state.metrics.update(results)
        engine.state.metrics[name] = results[self.prefix + "score"]
