"""Which image to annotate next: the one the served model is least sure of.

Each automatic inference of an image in the datastore leaves its uncertainty in the image's
info (``munet_uncertainty``, with the finding and review reasons under ``munet_review``):

    uncertainty = max(1 - |2 p_lesion - 1|, 1 - |2 p_malignant - 1|, 1 - view_agreement)

the same signals as the "needs review" flag (:mod:`munet.engines.review`): a presence or class
probability near 0.5, or test-time views drawing different masks. :class:`UncertaintyScoring`
(``POST /scoring/munet_uncertainty``) scores every unlabelled image at once;
:class:`MostUncertain` (``POST /activelearning/most_uncertain``, MONAI Label's strategy
interface) serves the unlabelled image with the highest score, and an unscored one (scored on
the spot) before a labelled one is ever offered.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Mapping, Optional

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

logger = logging.getLogger(__name__)

__all__ = ["UNCERTAINTY_KEY", "uncertainty", "record_uncertainty", "UncertaintyScoring", "MostUncertain"]

UNCERTAINTY_KEY = "munet_uncertainty"
REVIEW_KEY = "munet_review"


def uncertainty(result: Mapping[str, Any]) -> float:
    """The uncertainty of one automatic result: its ``uncertainty``, computed once by
    :func:`.results.result_json` (0 for a result without it)."""
    return float(result.get("uncertainty") or 0.0)


def record_uncertainty(datastore: Datastore, image_id: str, result: Mapping[str, Any]) -> float:
    """Store the result's uncertainty, finding and review reasons in the image's datastore info."""
    score = uncertainty(result)
    datastore.update_image_info(image_id, {UNCERTAINTY_KEY: score, REVIEW_KEY: {
        "finding": result.get("finding"), "needs_review": result.get("needs_review"), "reasons": result.get("review_reasons", [])}})
    return score


class UncertaintyScoring(ScoringMethod):
    """Infer every unlabelled image with the automatic model and record its uncertainty.

    ``infer`` is the app's inference (``MONAILabelApp.infer``); request option ``max_images``
    bounds one run (default: all)."""

    def __init__(self, infer: Callable[[Dict[str, Any]], Dict[str, Any]], model: str = "munet") -> None:
        super().__init__("Uncertainty of the served MUNet model on every unlabelled image (for most_uncertain)")
        self.infer, self.model = infer, model

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        images = sorted(datastore.get_unlabeled_images())
        limit = request.get("max_images")
        images = images[: int(limit)] if limit else images
        scores: Dict[str, float] = {}
        for image in images:
            result = self.infer({"model": self.model, "image": image})
            scores[image] = record_uncertainty(datastore, image, result.get("params") or {})
        logger.info(f"scored {len(scores)} unlabelled images by uncertainty")
        return {"scored": len(scores), "scores": scores}


class MostUncertain(Strategy):
    """The unlabelled image with the highest recorded uncertainty; up to ``score_unscored`` images
    without a score are scored on the spot first (with ``scoring``), so a fresh datastore works."""

    def __init__(self, scoring: Optional[UncertaintyScoring] = None, score_unscored: int = 4) -> None:
        super().__init__("Unlabelled image the served model is least sure of (munet_uncertainty)")
        self.scoring, self.score_unscored = scoring, score_unscored

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Optional[Dict[str, Any]]:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        infos = {image: datastore.get_image_info(image) or {} for image in images}
        unscored = sorted(i for i in images if UNCERTAINTY_KEY not in infos[i])
        if unscored and self.scoring is not None:
            for image in unscored[: self.score_unscored]:
                result = self.scoring.infer({"model": self.scoring.model, "image": image})
                infos[image] = {**infos[image], UNCERTAINTY_KEY: record_uncertainty(datastore, image, result.get("params") or {})}
        scored = {i: float(info[UNCERTAINTY_KEY]) for i, info in infos.items() if UNCERTAINTY_KEY in info}
        if not scored:
            image = sorted(images)[0]
            return {"id": image, UNCERTAINTY_KEY: None}
        image = max(sorted(scored), key=lambda i: scored[i])  # ties: the first id
        logger.info(f"most_uncertain: {image} ({scored[image]:.3f}; {len(scored)} of {len(images)} unlabelled images scored)")
        return {"id": image, UNCERTAINTY_KEY: scored[image], REVIEW_KEY: infos[image].get(REVIEW_KEY)}
