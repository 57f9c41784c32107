"""The MONAI Label request checks and the weights sidecar, without a server (no monailabel needed).

The same checks against the real server are in ``tests/test_monailabel_server.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import CONFIGS, TRAIN, make_tiny_dataset, run_workflow
from PIL import Image

from munet.engines.weights_info import read_weights_info, sidecar_path, write_weights_info
from munet.integrations.monailabel_app.checks import (
    RequestError,
    check_clicks,
    check_infer_params,
    check_label_class,
    check_label_file,
    check_tag,
    check_train_options,
    label_warnings,
    parse_json_object,
    scrub_paths,
)

DEFAULTS = {"max_epochs": 5, "val_split": 0.2, "learning_rate": 1e-3, "fine_tune_learning_rate": 1e-4, "warmup_epochs": 1, "pretrained": True}


def _refused(call, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as info:
        call(*args, **kwargs)
    return info.value


def test_train_options_are_checked_and_completed():
    assert check_train_options({}, DEFAULTS)["max_epochs"] == 5  # an empty body: the small default
    options = check_train_options({"max_epochs": "3", "pretrained": "false", "device": ["cpu"], "tracking": "None"}, DEFAULTS)
    assert options["max_epochs"] == 3 and options["pretrained"] is False and options["device"] == "cpu"
    assert options["tracking"] == "None" and options["fine_tune_learning_rate"] == 1e-4
    for body, field in [({"max_epochs": 0}, "max_epochs"), ({"max_epochs": "abc"}, "max_epochs"), ({"max_epochs": 2.5}, "max_epochs"),
                        ({"max_epochs": True}, "max_epochs"), ({"val_split": 1.5}, "val_split"),
                        ({"fine_tune_learning_rate": -1}, "fine_tune_learning_rate"), ({"pretrained": "maybe"}, "pretrained"),
                        ({"device": "gpu9"}, "device"), ({"device": "cuda:99"}, "device"), ([1, 2], "body")]:
        err = _refused(check_train_options, body, DEFAULTS)
        assert err.field == field and err.status == 422 and err.message.startswith(f"{field}: "), err.message
    gpu = check_train_options({"device": "cuda:1"}, DEFAULTS, devices=["NVIDIA A100", "cuda:0", "cuda:1"])
    assert gpu["device"] == "cuda:1" and check_train_options({"device": "cuda"}, DEFAULTS, devices=["cuda:0"])["device"] == "cuda"
    assert "not a device of this server (devices: cpu)" in _refused(check_train_options, {"device": "cuda:99"}, DEFAULTS).message


def test_params_and_tag():
    assert parse_json_object(None) == {} and parse_json_object('{"class": "benign"}') == {"class": "benign"}
    assert _refused(parse_json_object, "{not json").message.startswith("params: not valid JSON")
    assert "expected a JSON object" in _refused(parse_json_object, "[1]").message
    assert check_tag("") == "final" and check_tag("original") == "original"
    assert _refused(check_tag, "../../etc").field == "tag"
    assert check_label_class({"class": "Malignant"}, ["benign", "malignant"]) == 1
    assert check_label_class({}, ["benign", "malignant"]) is None
    err = _refused(check_label_class, {"class": "maybe"}, ["benign", "malignant"])
    assert err.message == 'params.class: "maybe" is not a class; expected one of benign, malignant (or 0, 1)'


def test_messages_do_not_show_server_paths():
    text = "/srv/data/studies/case_0001.png: file not found; see /home/u/x/logs/app.log or http://host/a/b"
    assert scrub_paths(text) == "case_0001.png: file not found; see app.log or http://host/a/b"
    assert scrub_paths("'/tmp/abc/def.png' is bad; see GET") == "'def.png' is bad; see GET"


def test_label_files_are_checked(tmp_path):
    image = tmp_path / "case.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(image)

    def label(name, array=None, raw=None):
        path = tmp_path / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            Image.fromarray(array).save(path)
        return str(path)

    good = np.zeros((30, 40), np.uint8)
    good[5:10, 5:10] = 255
    assert check_label_file(label("ok.png", good), "ok.png", str(image), "case") == {"shape": [30, 40], "lesion_pixels": 25, "warnings": []}
    cases = {
        "text": (label("t.png", raw=b"hello, not an image"), "is not a readable image"),
        "small": (label("s.png", np.zeros((10, 10), np.uint8)), "10x10 (rows x columns) but image 'case' is 30x40"),
        "transposed": (label("tr.png", good.T.copy()), "looks transposed"),
        "grey levels": (label("g.png", (np.arange(1200) % 3).reshape(30, 40).astype(np.uint8)), "not binary (values 0, 1, 2)"),
        "colour": (label("c.png", np.dstack([good, good * 0, good])), "a colour image"),
    }
    for name, (path, expected) in cases.items():
        err = _refused(check_label_file, path, Path(path).name, str(image), "case")
        assert err.field == "label" and expected in err.message, (name, err.message)
        assert str(tmp_path) not in err.message and Path(path).name not in err.message.replace(f"'{Path(path).name}'", "")


def test_weights_sidecar_is_tied_to_its_weights(tmp_path):
    """The record holds what built the weights (build_network's arguments, not training values) and
    the image size; it belongs to these weights only, and other settings are refused by name."""
    from munet.engines.weights_info import WeightsMismatchError, check_weights_settings, network_settings
    from munet.networks import build_network

    weights = tmp_path / "model.pt"
    net = build_network("munet", base_channels=8)
    torch.save(net.state_dict(), weights)
    assert read_weights_info(weights)[0] is None and "has no model.json" in read_weights_info(weights)[1]
    assert "cannot be checked" in check_weights_settings(weights, network_settings(net, 64))
    write_weights_info(weights, net, 64, extra={"note": "x"})
    info, problem = read_weights_info(weights)
    assert problem is None and info["trained_with"] == {"arch": "munet", "base_channels": 8, "image_size": 64} and info["note"] == "x"
    assert check_weights_settings(weights, network_settings(net, 64)) is None
    with pytest.raises(WeightsMismatchError, match="trained with image_size 64.*configs say image_size 96"):
        check_weights_settings(weights, network_settings(net, 96))
    wider = build_network("munet", base_channels=16)
    with pytest.raises(WeightsMismatchError, match="base_channels 8.*base_channels 16"):
        check_weights_settings(weights, network_settings(wider, 64))
    torch.save({"w": torch.zeros(2)}, weights)  # other weights beside the old sidecar
    info, problem = read_weights_info(weights)
    assert info is None and "describes other weights" in problem


def test_interactive_training_writes_the_sidecar(tmp_path):
    data = make_tiny_dataset(tmp_path, n_train=4, n_val=2, n_test=1)
    run_workflow("train", TRAIN + [str(CONFIGS / "train_interactive.json")], tmp_path, data, max_epochs=1)
    weights = tmp_path / "models" / "model_interactive.pt"
    info, problem = read_weights_info(weights)
    assert problem is None, problem
    assert info["trained_with"]["image_size"] == 64 and info["trained_with"]["in_channels"] == 3  # image + two click maps
    assert info["trained_with"]["base_channels"] == 8
    assert json.loads(sidecar_path(weights).read_text())["weights"] == "model_interactive.pt"


def test_a_studies_folder_whose_images_are_in_sub_folders_is_refused_naming_them(tmp_path):
    from munet.integrations.monailabel_app.checks import check_studies_folder as check

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    check(str(tmp_path))  # images at the top: fine
    nested = tmp_path / "demo_data"
    (nested / "images").mkdir(parents=True)
    (nested / "labels" / "final").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(nested / "images" / f"c{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(nested / "labels" / "final" / "c0.png")
    with pytest.raises(ValueError, match=r"demo_data holds no images itself, but its sub-folders do: images/ \(3 images\)"):
        check(str(nested))
    check("http://127.0.0.1:8042/dicom-web")  # a DICOMweb root is not a folder


def test_infer_params_no_client_uses_are_refused_naming_them():
    check_infer_params({"foreground": [], "result_extension": ".nrrd", "label_info": [], "threshold": 0.5}, ["threshold"])
    err = _refused(check_infer_params, {"forground": [[1, 2]], "foreground": []}, ["threshold"])
    assert err.status == 422 and err.message.startswith("params: unknown parameter 'forground' (accepted: ")


@pytest.mark.parametrize("clicks, message", [
    ({"foreground": [[1, 2, 3, 4]]}, "params.foreground: click [1, 2, 3, 4] must be [x, y] (column, row) or [x, y, 0]"),
    ({"background": [["a", "b"]]}, 'params.background: click ["a", "b"] must hold numbers'),
    ({"foreground": [[3, 4, 5]]}, "params.foreground: click [3, 4, 5] is on slice 5, but a 2D image has only slice 0"),
    ({"foreground": "40,31"}, 'params.foreground: "40,31" is not a list of clicks'),
    ({"lesion": [[1, True]]}, "params.lesion: click [1, true] must hold numbers"),
])
def test_malformed_clicks_are_refused_naming_the_click(clicks, message):
    assert _refused(check_clicks, clicks).message.startswith(message)


def test_well_formed_clicks_pass():
    check_clicks({"foreground": [[40, 31], [1.5, 2, 0]], "background": [], "lesion": None})


def test_labels_that_look_wrong_get_a_warning():
    lesion = np.zeros((40, 50), bool)
    lesion[10:20, 15:30] = True
    assert label_warnings(lesion) == []
    assert label_warnings(np.zeros((40, 50), bool)) == []
    inverted = label_warnings(~lesion)
    assert len(inverted) == 2 and "looks inverted" in inverted[0] and "covers 92% of the image" in inverted[1]
    big = np.zeros((40, 50), bool)
    big[2:38, 2:48] = True  # 83 % of the image, inside the border
    assert label_warnings(big) == ["label: the lesion covers 83% of the image; a lesion rarely does: check the label"]
