"""The review signals: views that disagree, an uncertain finding, a class call near 0.5."""

from __future__ import annotations

import torch

from munet.engines.inferer import VIEW_AGREEMENT_KEY, MultiTaskInferer, view_agreement
from munet.engines.review import review_reasons


def test_view_agreement_is_one_for_identical_views_and_drops_when_they_differ():
    same = torch.zeros(4, 2, 1, 8, 8)
    same[:, :, :, 2:5, 2:5] = 0.9
    assert torch.allclose(view_agreement(same, same.mean(0)), torch.ones(2))
    empty = torch.zeros(3, 1, 1, 8, 8)
    assert view_agreement(empty, empty.mean(0)).item() == 1.0
    split = same.clone()
    split[2:, 0] = 0.0  # half the views of image 0 see nothing
    agreement = view_agreement(split, split.mean(0))
    assert agreement[0] < 0.6 and agreement[1] == 1.0


def test_the_multi_view_inferer_reports_the_agreement_per_image():
    class Blob(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(10 * (x - 0.5))

    inferer = MultiTaskInferer(scales=[0.75, 1.0, 1.25], flips=True)
    image = torch.zeros(2, 1, 64, 64)
    image[0, :, 20:40, 10:30] = 1.0
    out = inferer(image, Blob())
    assert out[VIEW_AGREEMENT_KEY].shape == (2,) and bool((out[VIEW_AGREEMENT_KEY] > 0.8).all())


def test_review_reasons_follow_the_rule():
    rule = {"min_view_agreement": 0.7, "class_margin": 0.1}
    assert review_reasons("lesion", 0.9, 0.9, rule) == []
    assert review_reasons("uncertain", 0.5, 0.55, rule) == ["uncertain", "views disagree", "class near the decision"]
    assert review_reasons("no lesion", 0.95, None, rule) == []
    assert review_reasons("lesion", 0.1, 0.52, {"min_view_agreement": None, "class_margin": None}) == []
