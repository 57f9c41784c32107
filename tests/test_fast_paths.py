"""The speed switches keep results right: bf16 autocast, channels-last, dataset caching, C5 reduction."""

from __future__ import annotations

import pytest
import torch
from bundle_helpers import make_tiny_dataset
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

from munet.data.datalist import load_datalist
from munet.data.datasets import make_dataset
from munet.data.preprocessing import deterministic_transforms
from munet.engines.inferer import MultiTaskInferer, autocast_dtype
from munet.networks import MUNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MUNet(base_channels=8).eval()


def test_bf16_and_channels_last_give_float32_outputs_close_to_fp32(net):
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        reference = MultiTaskInferer()(x, net)
        fast_net = MUNet(base_channels=8).eval()
        fast_net.load_state_dict(net.state_dict())
        fast_net = fast_net.to(memory_format=torch.channels_last)
        fast = MultiTaskInferer(precision="bf16", channels_last=True)(x, fast_net)
    assert fast.keys() == reference.keys()
    for key in reference:
        assert fast[key].dtype == torch.float32
        assert fast[key].shape == reference[key].shape
    # bf16 keeps about 3 significant digits: probabilities agree to a few hundredths
    assert float((fast["mask"] - reference["mask"]).abs().max()) < 0.05
    assert float((fast["class_logits"] - reference["class_logits"]).abs().max()) < 0.1


def test_channels_last_alone_is_exact(net):
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a = MultiTaskInferer()(x, net)["mask"]
        b = MultiTaskInferer(channels_last=True)(x, net.to(memory_format=torch.channels_last))["mask"]
    net.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_precision_names_and_cpu_fallback_for_fp16(caplog):
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("fp32", "cpu") is None
    with caplog.at_level("WARNING", logger="munet"):
        assert autocast_dtype("fp16", "cpu") is None
    assert "fp16 needs CUDA" in caplog.text
    with pytest.raises(ValueError, match="precision must be one of"):
        MultiTaskInferer(precision="int8")


@pytest.mark.parametrize("cache, kind", [("memory", CacheDataset), ("disk", PersistentDataset), ("none", Dataset)])
def test_dataset_cache_modes_give_the_same_samples(tmp_path, cache, kind):
    data_dir = make_tiny_dataset(tmp_path, n_train=3, n_val=0, n_test=0)
    items = load_datalist(str(data_dir / "datalist.json"), "training", str(data_dir))
    transform = Compose(deterministic_transforms(image_size=64, pad_to_square=True))
    dataset = make_dataset(items, transform, cache=cache, cache_dir=str(tmp_path / "cache"))
    assert isinstance(dataset, kind)
    reference = transform(items[1])
    for _ in range(2):  # the second pass reads the cache
        sample = dataset[1]
        torch.testing.assert_close(torch.as_tensor(sample["image"]), torch.as_tensor(reference["image"]))
        assert sample["class"] == reference["class"]
        # the metadata and the recorded transforms survive the cache, so Invertd still works
        assert sample["image"].meta["filename_or_obj"] == items[1]["image"]
        assert len(sample["image"].applied_operations) == len(reference["image"].applied_operations) > 0
    if cache == "disk":
        assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # written on first use of that case
    with pytest.raises(ValueError, match="cache must be one of"):
        make_dataset(items, transform, cache="ram")


def test_c5_reduction_keeps_outputs_and_shrinks_the_first_stage():
    full = MUNet(backbone="resnet18")
    lean = MUNet(backbone="resnet18", c5_channels=128)
    assert sum(p.numel() for p in lean.decoder.parameters()) < sum(p.numel() for p in full.decoder.parameters())
    with torch.no_grad():
        outputs = lean.eval()(torch.rand(1, 1, 64, 96))
    assert outputs["mask"].shape == (1, 1, 64, 96)
    assert outputs["mask_stride16"].shape == (1, 1, 4, 6)
