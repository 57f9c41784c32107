"""Multi-scale batches and hard example mining: sizes per batch, grouping, weights, DDP agreement."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from munet.data.sampling import CASE_INDEX_KEY, MultiScaleBatchSampler, SizedDataset, aspect_group, size_groups

PORTRAIT, SQUARE, LANDSCAPE = (300, 200), (250, 240), (200, 320)


def _shapes():
    return [PORTRAIT] * 6 + [SQUARE] * 5 + [LANDSCAPE] * 9


def test_size_groups_from_the_paper_set():
    groups = size_groups([256, 384])
    assert groups == {"portrait": [(384, 256)], "square": [(256, 256), (384, 384)], "landscape": [(256, 384)]}
    assert aspect_group(*PORTRAIT) == "portrait" and aspect_group(*SQUARE) == "square" and aspect_group(*LANDSCAPE) == "landscape"


def test_every_batch_has_one_size_and_one_aspect_group_and_each_case_appears():
    shapes = _shapes()
    sampler = MultiScaleBatchSampler(shapes, batch_size=4, sizes=(256, 384, 512), seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = Counter()
    for batch in batches:
        sizes = {size for _, size in batch}
        assert len(sizes) == 1
        (height, width), = sizes
        groups = {aspect_group(*shapes[i]) for i, _ in batch}
        assert len(groups) == 1
        group = groups.pop()
        # the size serves the group: taller for portrait cases, wider for landscape ones
        assert (height > width) if group == "portrait" else (height < width) if group == "landscape" else height == width
        seen.update(i for i, _ in batch)
    assert set(seen) == set(range(len(shapes)))  # every case once (groups padded to full batches)


def test_two_ranks_agree_on_the_size_of_every_step_and_split_the_cases():
    shapes = _shapes()
    ranks = [list(MultiScaleBatchSampler(shapes, batch_size=2, sizes=(256, 384), seed=5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    for a, b in zip(*ranks):
        assert {s for _, s in a} == {s for _, s in b}  # same size at the same step
        assert len(a) == len(b) == 2
    cases = [i for batch in ranks[0] + ranks[1] for i, _ in batch]
    assert set(cases) == set(range(len(shapes)))


def test_sizes_change_between_epochs_and_repeat_for_the_same_epoch():
    sampler = MultiScaleBatchSampler(_shapes(), batch_size=2, sizes=(256, 384, 512, 640), seed=1)
    first = [b[0][1] for b in sampler]
    again = [b[0][1] for b in sampler]
    sampler.set_epoch(1)
    other = [b[0][1] for b in sampler]
    assert first == again and first != other


def test_weights_move_sampling_toward_hard_cases():
    shapes = [SQUARE] * 10
    sampler = MultiScaleBatchSampler(shapes, batch_size=2, sizes=(256,), seed=0)
    weights = [1.0] * 10
    weights[7] = 20.0  # a hard case
    sampler.set_weights(weights)
    counts = Counter()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        counts.update(i for batch in sampler for i, _ in batch)
    assert counts[7] > 5 * max(counts[i] for i in range(10) if i != 7)
    assert all(len(list(sampler)) == len(sampler) for _ in range(3))  # fixed epoch length for Ignite
    with pytest.raises(ValueError):
        sampler.set_weights([1.0] * 3)


def test_sized_dataset_fits_each_case_into_the_batch_size():
    image = torch.zeros(1, 100, 160)
    image[:, 10:20, 10:30] = 1.0
    data = [{"image": image, "label": (image > 0).float()}]
    dataset = SizedDataset(data)
    sample = dataset[(0, (256, 384))]
    assert sample["image"].shape == (1, 256, 384) and sample["label"].shape == (1, 256, 384)
    assert sample[CASE_INDEX_KEY] == 0
    assert set(torch.unique(sample["label"]).tolist()) <= {0.0, 1.0}  # masks stay binary (nearest)
    assert dataset[0]["image"].shape == (1, 100, 160)  # a plain index leaves the case as it is


def test_hardness_rates_wrong_predictions_higher():
    from munet.engines.hard_examples import case_hardness

    mask = torch.zeros(1, 8, 8)
    mask[:, 2:6, 2:6] = 1
    right = {"mask": mask.clone(), "class_logits": torch.tensor([-3.0, 3.0])}
    wrong = {"mask": 1 - mask, "class_logits": torch.tensor([3.0, -3.0])}
    label = {"mask": mask, "class": torch.tensor(1)}
    assert case_hardness(right, label) < 0.01
    assert case_hardness(wrong, label) > 1.9
    assert case_hardness(wrong, {"mask": mask, "class": torch.tensor(-1)}) == pytest.approx(1.0)  # no class label


def test_class_balance_draws_each_class_equally_often():
    from munet.data.sampling import balanced_weights

    items = [{"class": 0}] * 8 + [{"class": 1}] * 2
    weights = balanced_weights(items)
    assert weights[:8] == [1 / 8] * 8 and weights[8:] == [1 / 2] * 2
    sampler = MultiScaleBatchSampler([SQUARE] * 10, batch_size=2, sizes=(256,), weights=weights, seed=0)
    counts = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        counts.update(i for batch in sampler for i, _ in batch)
    benign, malignant = sum(counts[i] for i in range(8)), sum(counts[i] for i in range(8, 10))
    assert 0.8 < malignant / benign < 1.25
