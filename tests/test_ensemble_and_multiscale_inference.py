"""Ensembles (paper eq. 7) and multi-scale inference: arithmetic and the inference command."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from bundle_helpers import INFERENCE, make_tiny_dataset, run_workflow

from munet.cli.train import make_bundle_folder, recipe_values
from munet.engines.ensemble import BundleEnsemble, combine
from munet.engines.inferer import MultiTaskInferer
from munet.networks import MUNet, build_network


def test_combine_is_the_weighted_sum_of_masks_and_probabilities():
    a = {"mask": torch.full((1, 1, 2, 2), 0.2), "class_logits": torch.log(torch.tensor([[0.9, 0.1]]))}
    b = {"mask": torch.full((1, 1, 2, 2), 0.8), "class_logits": torch.log(torch.tensor([[0.3, 0.7]]))}
    out = combine([a, b], [1.0, 3.0])  # lambdas normalised to 0.25, 0.75
    torch.testing.assert_close(out["mask"], torch.full((1, 1, 2, 2), 0.65))
    torch.testing.assert_close(torch.softmax(out["class_logits"], dim=1), torch.tensor([[0.45, 0.55]]))
    with pytest.raises(ValueError, match="positive"):
        combine([a, b], [1.0, 0.0])
    with pytest.raises(ValueError, match="2 outputs but 1 weights"):
        combine([a, b], [1.0])


def test_multi_scale_inference_returns_the_input_size_and_averages_the_passes():
    torch.manual_seed(0)
    net = MUNet(base_channels=8).eval()
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        out = MultiTaskInferer(scales=[0.5, 1.0, 1.5], flips=True)(x, net)
        assert out["mask"].shape == (1, 1, 64, 96)
        assert torch.softmax(out["class_logits"], dim=1).sum().item() == pytest.approx(1.0, abs=1e-5)
        # by hand: the six passes (three sizes rounded to multiples of 32: 0.5 -> 32 x 64 (48 rounds
        # up), 1.5 -> 96 x 160 (144 rounds up); each plain and flipped), back at 64 x 96, averaged
        passes = []
        for size in ([32, 64], [64, 96], [96, 160]):
            scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            for flip in (False, True):
                view = torch.flip(scaled, dims=[-1]) if flip else scaled
                mask = net(view)["mask"]
                mask = torch.flip(mask, dims=[-1]) if flip else mask
                passes.append(F.interpolate(mask, size=[64, 96], mode="bilinear", align_corners=False))
        torch.testing.assert_close(out["mask"], torch.stack(passes).mean(dim=0))
    with pytest.raises(ValueError, match="scales must be positive"):
        MultiTaskInferer(scales=[0.0])


def test_image_heads_can_come_from_the_input_size_while_masks_average_over_scales():
    torch.manual_seed(0)
    net = MUNet(base_channels=8, presence_head=True).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        for weight in net.parameters():  # fresh heads answer the same for every input: make them depend on it
            weight.add_(torch.randn_like(weight) * 0.1)
        every = MultiTaskInferer(scales=[0.5, 1.0, 1.5], flips=True)(x, net)
        native_heads = MultiTaskInferer(scales=[0.5, 1.0, 1.5], flips=True, scale_image_heads=False)(x, net)
        single = MultiTaskInferer(scales=[1.0], flips=True)(x, net)
    torch.testing.assert_close(native_heads["mask"], every["mask"])  # the masks still average over all scales
    for head, to_prob in (("class_logits", lambda t: torch.softmax(t, dim=1)), ("lesion_logit", torch.sigmoid)):
        torch.testing.assert_close(to_prob(native_heads[head]), to_prob(single[head]))  # the input size's (and flip's) only
        assert not torch.allclose(to_prob(every[head]), to_prob(single[head]))
    with pytest.raises(ValueError, match="lacks"):
        MultiTaskInferer(scales=[0.5, 1.5], scale_image_heads=False)


def _member(root, base_channels, seed):
    """A bundle folder of the paper recipe with its own width, and (random) trained weights."""
    make_bundle_folder(root, {**recipe_values("paper"), "base_channels": base_channels, "image_size": 64})
    torch.manual_seed(seed)
    net = build_network("munet", output="mask", base_channels=base_channels)
    (root / "models").mkdir()
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return net.eval()


def test_one_inference_command_runs_a_weighted_ensemble_of_bundles(tmp_path):
    data = make_tiny_dataset(tmp_path, n_train=1, n_val=1, n_test=2)
    members = [_member(tmp_path / "m1", 8, 1), _member(tmp_path / "m2", 16, 2)]
    out = tmp_path / "ensemble_out"
    # threshold 0: every image has a lesion mask, so a class is called (none is on "no lesion")
    run_workflow("infer", INFERENCE, tmp_path, data, output_dir=str(out), threshold=0.0,
                 ensemble_bundles=[str(tmp_path / "m1"), str(tmp_path / "m2")], ensemble_weights=[0.3, 0.7])
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 2
    ensemble = BundleEnsemble([str(tmp_path / "m1"), str(tmp_path / "m2")], [0.3, 0.7])
    # the class probabilities written equal 0.3 p_1 + 0.7 p_2 of the members on the same input
    from monai.transforms import Compose

    from munet.data.preprocessing import deterministic_transforms

    chain = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=64, crop_to_us_region=True))
    for row in rows:
        x = chain({"image": row["image"]})["image"][None].as_tensor()
        with torch.no_grad():
            probs = [torch.softmax(m.forward_dict(x)["class_logits"], dim=1)[0, 1].item() for m in members]
            combined = ensemble.forward_dict(x)
        expected = 0.3 * probs[0] + 0.7 * probs[1]
        assert float(row["prob_malignant"]) == pytest.approx(expected, abs=1e-5)
        assert torch.softmax(combined["class_logits"], dim=1)[0, 1].item() == pytest.approx(expected, abs=1e-5)
