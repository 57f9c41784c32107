"""The paper's augmentations, as configured in train.json, move image and mask together."""

from __future__ import annotations

import numpy as np
import torch
from bundle_helpers import TRAIN
from monai.bundle import ConfigParser
from monai.utils import set_determinism


def test_every_augmentation_keeps_image_and_mask_aligned_and_the_mask_binary():
    parser = ConfigParser()
    parser.read_config(TRAIN)
    probs = [key for key in parser["augment"] if key.endswith("_prob")]
    assert len(probs) == 9, probs  # every paper augmentation has its probability under augment#
    for key in probs:
        parser[f"augment#{key}"] = 1.0
    transforms = parser.get_parsed_content("train#random_transforms")
    names = {type(t).__name__ for t in transforms}
    assert {"RandFlipd", "RandRotated", "RandZoomd", "RandAffined", "Rand2DElasticd", "RandGaussianNoised", "RandSkewd"} <= names
    set_determinism(seed=0)
    for index, transform in enumerate(transforms):
        transform.set_random_state(seed=index)  # MONAI's shared class RandomState is not reset by set_determinism
    image = torch.zeros(1, 64, 64)
    image[:, 20:40, 10:50] = 1.0  # the "lesion" is the bright block, the mask marks exactly it
    sample = {"image": image.clone(), "label": image.clone()}
    for transform in transforms:
        sample = transform(dict(sample))
        assert sample["image"].shape == sample["label"].shape == (1, 64, 64), type(transform).__name__
    label = np.asarray(sample["label"])
    assert set(np.unique(label)) <= {0.0, 1.0}
    changed = float((sample["label"] != image).float().mean())
    assert changed > 0.01  # the chain did move things
    # outside the noise, the image is bright where the moved mask is lesion and dark elsewhere
    smoothed = np.asarray(sample["image"])[0]
    assert smoothed[label[0] > 0].mean() > smoothed[label[0] == 0].mean() + 0.5


def test_skew_narrows_one_edge_and_keeps_image_and_mask_together():
    from munet.data.augment import RandSkewd

    skew = RandSkewd(keys=["image", "label"], prob=1.0, magnitude=0.3)
    skew._edge, skew._shift = 0, 0.2  # top edge, both ends 20 % inwards
    start, end = skew.corner_points(10, 10)
    assert start == [[0, 0], [9, 0], [9, 9], [0, 9]]
    assert end == [[2, 0], [7, 0], [9, 9], [0, 9]]
    skew = RandSkewd(keys=["image", "label"], prob=1.0, magnitude=0.3)
    skew.set_random_state(seed=1)
    full = torch.ones(1, 40, 40)
    out = skew({"image": full.clone(), "label": full.clone()})
    assert out["image"].shape == (1, 40, 40)
    # a tilted frame: the narrowed edge leaves empty corners, so the covered area shrinks
    covered = float((out["label"] > 0).float().mean())
    assert 0.6 < covered < 0.99
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
    # same warp for both: the bilinear image and the nearest-neighbour mask differ only on the tilted
    # edge's boundary pixels, which the bilinear image covers partly
    differ = (out["image"] > 0.5).float() != out["label"]
    assert float(differ.float().mean()) < 0.02
    boundary = (out["image"] > 0.02) & (out["image"] < 0.98)
    assert bool(boundary[differ].all())
    # the narrowed edge: its row is covered less than the opposite one
    rows = (out["label"][0] > 0).float().mean(dim=1)
    assert rows.min() < rows.max()

