"""Temperature scaling: one number per head that makes its probabilities mean what they say.

A network trained with focal loss and a presence BCE is not calibrated: "0.8 malignant" need not
be right 80 % of the time. Dividing a head's logits by a temperature ``T`` (fitted on the
validation split by minimising the negative log-likelihood; Guo et al. 2017) keeps every
ranking, AUC and argmax and moves the probabilities toward their observed frequencies.
``SplitOutputd`` applies ``class_temperature`` and ``presence_temperature`` from the configs.

A temperature cannot move probabilities that are off by a constant: on BUSI's held-out folds the
class head says 0.45 malignant on average where 32 % of lesions are, and the temperature fitted
there is 0.97. A shift of the log-odds (:func:`fit_logit_shift`) is the one-parameter map for that,
measured by ``research.cross_validation``; it is not served, because a class call at 0.5 on the
shifted probabilities would lower the malignant sensitivity (the decision would first have to be
separated from the probability).

The fit reads probabilities, not logits, because that is what ``predictions.csv`` holds: for a
sigmoid, and a two-class softmax, ``log(p / (1 - p))`` is the logit (difference) exactly.
scipy's bounded scalar search does the one-dimensional minimisation.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["fit_temperature", "temperature_if_it_generalises", "apply_temperature", "fit_logit_shift",
           "logit_shift_if_it_generalises", "apply_logit_shift", "expected_calibration_error", "ece_if_calibrated", "EPSILON"]

EPSILON = 1e-6


def _logit(probs: Sequence[float]) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=float), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def apply_temperature(probs: Sequence[float], temperature: float) -> np.ndarray:
    """Binary probabilities with their logits divided by ``temperature``."""
    return 1.0 / (1.0 + np.exp(-_logit(probs) / float(temperature)))


def fit_temperature(probs: Sequence[float], labels: Sequence[int], bounds: tuple = (0.05, 20.0)) -> float:
    """The temperature minimising the negative log-likelihood of binary ``labels`` under ``probs``.

    Raises ValueError with fewer than two images of each label (nothing to fit a scale on).
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels, dtype=float)
    if y.size != len(probs) or min((y == 1).sum(), (y == 0).sum()) < 2:
        raise ValueError(f"a temperature needs at least two images of each label, got {int((y == 1).sum())} and {int((y == 0).sum())}")
    z = _logit(probs)

    def nll(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), EPSILON, 1 - EPSILON)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    found = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(found.x))


def apply_logit_shift(probs: Sequence[float], shift: float) -> np.ndarray:
    """Binary probabilities with ``shift`` added to their log-odds."""
    return 1.0 / (1.0 + np.exp(-(_logit(probs) + float(shift))))


def fit_logit_shift(probs: Sequence[float], labels: Sequence[int], bound: float = 5.0) -> float:
    """The log-odds shift minimising the negative log-likelihood of binary ``labels`` under ``probs``.

    Raises ValueError with fewer than two images of each label."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels, dtype=float)
    if y.size != len(probs) or min((y == 1).sum(), (y == 0).sum()) < 2:
        raise ValueError(f"a logit shift needs at least two images of each label, got {int((y == 1).sum())} and {int((y == 0).sum())}")
    found = minimize_scalar(lambda b: _nll(apply_logit_shift(probs, b), y), bounds=(-bound, bound), method="bounded")
    return float(found.x)


def logit_shift_if_it_generalises(probs: Sequence[float], labels: Sequence[int]) -> tuple:
    """``(shift, note)``: the fitted shift when it lowers the leave-one-out negative log-likelihood
    on these images (as :func:`temperature_if_it_generalises` asks of a temperature), else 0.0."""
    return _if_it_generalises(probs, labels, fit_logit_shift, apply_logit_shift, 0.0)


def _nll(probs: Sequence[float], labels: Sequence[int]) -> float:
    q = np.clip(np.asarray(probs, dtype=float), EPSILON, 1 - EPSILON)
    y = np.asarray(labels, dtype=float)
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())


def temperature_if_it_generalises(probs: Sequence[float], labels: Sequence[int]) -> tuple:
    """``(temperature, note)``: the fitted temperature when it lowers the leave-one-out negative
    log-likelihood on these images (each predicted by a temperature fitted without it), else 1.0.

    A temperature fitted on a few dozen validation images can fit them and nothing else: on the
    seed-0 BUSI model, one fitted on 68 images raised the test split's presence ECE from 0.044 to
    0.084. Leave-one-out asks the validation images themselves whether the fit carries over.
    """
    return _if_it_generalises(probs, labels, fit_temperature, apply_temperature, 1.0)


def _if_it_generalises(probs: Sequence[float], labels: Sequence[int], fit, apply, neutral: float) -> tuple:
    """``(value, note)``: ``fit``'s value on all images when each image, mapped by ``apply`` with the
    value fitted without it, has a lower mean NLL than unmapped; else ``neutral`` (the identity map)."""
    p, y = np.asarray(probs, dtype=float), np.asarray(labels, dtype=int)
    held_out = []
    for i in range(len(p)):
        keep = np.arange(len(p)) != i
        try:
            held_out.append(float(apply([p[i]], fit(p[keep], y[keep]))[0]))
        except ValueError:
            held_out.append(float(p[i]))
    mapped, plain = _nll(held_out, y), _nll(p, y)
    if mapped < plain:
        return fit(p, y), f"leave-one-out NLL {plain:.4f} -> {mapped:.4f}"
    return neutral, f"not applied: leave-one-out NLL {plain:.4f} -> {mapped:.4f} (the fit does not carry over)"


def expected_calibration_error(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """ECE of binary probabilities with MONAI's ``CalibrationErrorMetric`` (equal-width bins): the
    images are laid out as the "pixels" of one sample with one channel."""
    import torch
    from monai.metrics import CalibrationErrorMetric

    metric = CalibrationErrorMetric(num_bins=bins, include_background=True, calibration_reduction="expected")
    y_pred = torch.as_tensor(np.asarray(probs, dtype=np.float32)).reshape(1, 1, -1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32)).reshape(1, 1, -1)
    return float(metric(y_pred=y_pred, y=y).reshape(-1)[0])


def ece_if_calibrated(probs: Sequence[float], observed: Optional[float] = None, bins: int = 10, draws: int = 2000,
                      seed: int = 0) -> Dict[str, float]:
    """The ECE a perfectly calibrated model with these probabilities would show on this many
    images: labels drawn as ``Bernoulli(p)``, measured as :func:`expected_calibration_error` does.

    ECE with equal-width bins is biased upward on small sets (each bin's observed frequency is
    noisy): on 110 BUSI test images the recommended model's malignancy probabilities give about
    0.09 even if they were exact, so a measured 0.12 says less than it seems. Returns the mean
    and the 95th percentile over ``draws`` and, given the ``observed`` ECE, the share of draws at
    least as large (a p-value for "these probabilities are calibrated").
    """
    import torch
    from monai.metrics import CalibrationErrorMetric

    p = torch.as_tensor(np.asarray(probs, dtype=np.float32)).reshape(1, 1, -1)
    generator = torch.Generator().manual_seed(seed)
    y = (torch.rand((draws, 1, p.shape[-1]), generator=generator) < p).float()
    metric = CalibrationErrorMetric(num_bins=bins, include_background=True, calibration_reduction="expected", metric_reduction="none")
    values = metric(y_pred=p.expand(draws, 1, -1), y=y).reshape(-1).numpy()
    result = {"mean": float(values.mean()), "p95": float(np.percentile(values, 95))}
    if observed is not None:
        result["p_value"] = float((values >= observed - 1e-9).mean())
    return result
