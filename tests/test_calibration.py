"""Temperature scaling: fitted on labels, applied by SplitOutputd, measured with MONAI's calibration metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from munet.engines.calibration import apply_temperature, ece_if_calibrated, expected_calibration_error, fit_temperature, temperature_if_it_generalises
from munet.engines.postprocessing import CLASS_PROB_KEY, LESION_PROB_KEY, SplitOutputd
from munet.networks.munet import CLASS_KEY, MASK_KEY, PRESENCE_KEY


def _overconfident(n: int = 3000, true_temperature: float = 3.0, seed: int = 0):
    """Probabilities whose logits are ``true_temperature`` times too large for their labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits / true_temperature))).astype(int)
    return 1 / (1 + np.exp(-logits)), labels


def test_fitted_temperature_recovers_the_overconfidence_and_lowers_the_ece():
    probs, labels = _overconfident()
    temperature = fit_temperature(probs, labels)
    assert 2.6 < temperature < 3.4
    before, after = expected_calibration_error(probs, labels), expected_calibration_error(apply_temperature(probs, temperature), labels)
    assert before > 0.1 and after < 0.04, (before, after)
    # a monotone map: the ranking (AUC) is the same
    assert np.array_equal(np.argsort(probs), np.argsort(apply_temperature(probs, temperature)))


def test_a_temperature_needs_both_labels():
    with pytest.raises(ValueError, match="at least two images of each label"):
        fit_temperature([0.2, 0.9, 0.7], [1, 1, 1])


def test_split_output_divides_each_heads_logits_by_its_temperature():
    pred = {MASK_KEY: torch.zeros(1, 4, 4), CLASS_KEY: torch.tensor([0.0, 2.0]), PRESENCE_KEY: torch.tensor([3.0])}
    plain = SplitOutputd(with_branches=False, presence_threshold=None)({"pred": dict(pred)})
    scaled = SplitOutputd(with_branches=False, presence_threshold=None, class_temperature=2.0, presence_temperature=3.0)({"pred": dict(pred)})
    assert plain[LESION_PROB_KEY] == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))))
    assert scaled[LESION_PROB_KEY] == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))))
    assert scaled[CLASS_PROB_KEY][1] == pytest.approx(float(torch.softmax(torch.tensor([0.0, 1.0]), 0)[1]))
    with pytest.raises(ValueError, match="temperatures must be positive"):
        SplitOutputd(class_temperature=0.0)


def test_a_temperature_is_applied_only_when_it_carries_over():
    probs, labels = _overconfident(n=200)
    temperature, note = temperature_if_it_generalises(probs, labels)
    assert temperature > 2 and "leave-one-out NLL" in note
    # a handful of images whose fit says nothing about the held-out one: not applied
    assert temperature_if_it_generalises([0.9, 0.8, 0.2, 0.3, 0.1, 0.7], [1, 0, 0, 1, 0, 1])[0] == 1.0


def test_the_ece_floor_of_a_small_test_set_tells_calibrated_from_miscalibrated():
    """On 110 images a perfectly calibrated model still shows an ECE of several points; the floor
    says how much, and its p-value separates noise from a real miscalibration."""
    rng = np.random.default_rng(1)
    probs = rng.beta(0.7, 0.7, 110)
    floor = ece_if_calibrated(probs)
    assert 0.03 < floor["mean"] < floor["p95"] < 0.2, floor
    calibrated_labels = (rng.random(110) < probs).astype(int)
    assert ece_if_calibrated(probs, observed=expected_calibration_error(probs, calibrated_labels))["p_value"] > 0.05
    overconfident, labels = _overconfident(n=110, true_temperature=4.0, seed=2)
    assert ece_if_calibrated(overconfident, observed=expected_calibration_error(overconfident, labels))["p_value"] < 0.01
    # a large set has almost no floor
    assert ece_if_calibrated(rng.beta(0.7, 0.7, 20000), draws=50)["mean"] < 0.01
