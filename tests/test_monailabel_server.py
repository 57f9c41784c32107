"""A real MONAI Label 0.8.5 server serving this bundle, exercised over HTTP.

The server runs from ``.venv-monailabel`` (``bash scripts/setup_env.sh --with-monailabel``; the
test command installs it) through ``scripts/start_monailabel.sh``, on 127.0.0.1, with a studies
folder of generated PNG and DICOM ultrasound images. The served bundle is a copy of the configs
with a tiny network trained here (automatic and interactive), plus a weak one (1 epoch) that a
server-side training must replace, where the good one must not be replaced by a worse one.
These tests skip only when that environment could not be installed.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from email.parser import BytesParser
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pydicom
import pytest
import requests
from bundle_helpers import REPO_ROOT, TINY, make_tiny_dataset, run_bundle
from PIL import Image
from scipy import ndimage
from servers import MONAILABEL_PYTHON, free_port, running_server, skip_unless_monailabel

from munet.cli.train import make_bundle_folder, recipe_values
from munet.dataset_tools.demo_dataset import generate_demo_dataset
from munet.engines.bundle_folder import workflow_argv
from munet.engines.model_history import entries, history_dir

pytestmark = pytest.mark.timeout(1200)
_skip_unless_installed = skip_unless_monailabel
_free_port = free_port
_running_server = running_server


def _bake_configs(bundle: Path) -> None:
    """The served bundle folder: the paper recipe at the tiny sizes the test networks have (as ``munet train`` writes it)."""
    make_bundle_folder(bundle, {**recipe_values("paper"), **TINY})


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Dict:
    """Train tiny automatic + interactive models, lay out studies, start the server; stop it after."""
    _skip_unless_installed()
    root = tmp_path_factory.mktemp("monailabel")
    data = make_tiny_dataset(root, n_train=48, n_val=4, n_test=4)
    bundle = root / "bundle"
    _bake_configs(bundle)
    for overlays in ((), ("train_interactive.json",)):
        run_bundle(workflow_argv("training", bundle, overlays, dataset_dir=str(data), max_epochs=20), timeout=900)
    weak = root / "weak"  # one epoch: a model that training from the saved labels should beat
    _bake_configs(weak)
    run_bundle(workflow_argv("training", weak, dataset_dir=str(data), max_epochs=1), timeout=900)

    studies = root / "studies"
    studies.mkdir()
    content = json.loads((data / "datalist.json").read_text())
    truth: Dict[str, Path] = {}
    for item in content["test"] + content["validation"]:
        image = data / item["image"]
        shutil.copy(image, studies / image.name)
        truth[image.stem] = data / item["label"]
    first = content["test"][0]  # one JPEG study too
    jpeg = studies / f"jpeg_{Path(first['image']).stem}.jpg"
    Image.open(data / first["image"]).convert("L").save(jpeg, quality=95)
    truth[jpeg.stem] = data / first["label"]
    dicom = root / "dicom"
    generate_demo_dataset(str(dicom), n_train=2, n_val=0, n_test=0, min_size=70, max_size=100, seed=5, image_format="dicom")
    for item in json.loads((dicom / "datalist.json").read_text())["training"]:
        target = studies / f"us_{Path(item['image']).name}"
        shutil.copy(dicom / item["image"], target)
        truth[target.name.split(".")[0]] = dicom / item["label"]
    (studies / "classes.json").write_text(json.dumps({"us_case_0000": "benign"}))
    # the bundle's own inference on the same files, for the server's masks to be compared with
    bundle_masks = root / "bundle_inference"
    run_bundle(workflow_argv("inferring", bundle, datalist=str(studies), output_dir=str(bundle_masks)))
    more = root / "more"  # more images to label for the training that must publish
    generate_demo_dataset(str(more), n_train=24, n_val=0, n_test=0, min_size=60, max_size=100, seed=7)
    for item in json.loads((more / "datalist.json").read_text())["training"]:
        target = studies / f"more_{Path(item['image']).name}"
        shutil.copy(more / item["image"], target)
        truth[target.name.split(".")[0]] = more / item["label"]

    with _running_server(studies, bundle, root / "server.log", "--min_validation_images", "2") as url:
        yield {"url": url, "bundle": bundle, "studies": studies, "truth": truth, "log": root / "server.log", "bundle_masks": bundle_masks,
               "weak": weak / "models" / "model.pt", "root": root}


def _infer(served: Dict, model: str, image_id: str, params: Dict | None = None) -> Tuple[np.ndarray, Dict]:
    """POST /infer/<model>?output=all; returns the label as an array and the result JSON."""
    response = requests.post(f"{served['url']}/infer/{model}", params={"image": image_id, "output": "all"},
                             data={"params": json.dumps(params or {})}, timeout=300)
    assert response.status_code == 200, f"{response.status_code}: {response.text[-2000:]}\n{served['log'].read_text()[-3000:]}"
    message = BytesParser().parsebytes(f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.content)
    parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in message.get_payload()}
    return np.asarray(Image.open(io.BytesIO(parts["image"]))), json.loads(parts["params"])


def _image_shape(path: Path) -> Tuple[int, int]:
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        return int(ds.Rows), int(ds.Columns)
    width, height = Image.open(path).size
    return height, width


def _truth(served: Dict, image_id: str) -> np.ndarray:
    path = served["truth"][image_id]
    array = pydicom.dcmread(path).pixel_array if path.suffix == ".dcm" else np.asarray(Image.open(path))
    return array > 0


def test_info_lists_models_labels_and_trainers(served):
    info = requests.get(f"{served['url']}/info/", timeout=30).json()
    assert set(info["models"]) == {"munet", "munet_interactive"}
    assert info["models"]["munet"]["labels"] == {"lesion": 1}
    assert info["models"]["munet"]["type"] == "segmentation"
    assert info["models"]["munet_interactive"]["type"] == "deepgrow"
    assert info["models"]["munet"]["class_names"] == ["benign", "malignant"]
    assert {"munet", "munet_interactive"} <= set(info["trainers"])
    images = requests.get(f"{served['url']}/datastore/?output=all", timeout=30).json()["objects"]
    assert any(name.startswith("us_case") for name in images), "the .dcm studies are not in the datastore"


_PREFIX = {"png": "case_", "jpeg": "jpeg_", "dicom": "us_"}


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom"])
def test_automatic_mask_has_the_image_size_and_label_value(served, kind):
    ids = sorted(i for i in served["truth"] if i.startswith(_PREFIX[kind]))
    assert ids
    for image_id in ids[:2]:
        source = next(p for p in served["studies"].iterdir() if p.name.split(".")[0] == image_id)
        label, result = _infer(served, "munet", image_id)
        assert label.shape == _image_shape(source), f"{image_id}: label {label.shape} vs image {_image_shape(source)}"
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1}
        assert (label == 1).sum() == result["lesion_pixels"] > 0
        probs = result["class_probabilities"]
        assert set(probs) == {"benign", "malignant"} and abs(sum(probs.values()) - 1) < 1e-4
        assert result["class_prediction"] in probs
        expected = np.asarray(Image.open(served["bundle_masks"] / f"{image_id}_mask.png")) > 0
        assert np.array_equal(label > 0, expected), f"{image_id}: the server's mask differs from the bundle's inference"
        if kind == "jpeg":  # the same picture as a PNG study: JPEG compression must not change the mask much
            as_png = np.asarray(Image.open(served["bundle_masks"] / f"{image_id[len('jpeg_'):]}_mask.png")) > 0
            def dice_with(mask: np.ndarray) -> float:
                return float(2 * (mask & (label > 0)).sum() / (mask.sum() + (label > 0).sum()))

            # The tiny fixture model (64 px, a few epochs) moves boundary pixels with JPEG noise: 0.90-0.95
            # across commits, 0.897 after the skew augmentation changed its training. A picture read wrongly
            # (mirrored, transposed) would agree with the PNG study's mask less than that mask's mirror images do.
            agreement = dice_with(as_png)
            assert agreement > 0.85, f"{image_id}: mask agrees with the PNG study's only by Dice {agreement:.2f}"
            mirrored = max(dice_with(as_png[::-1]), dice_with(as_png[:, ::-1]))
            assert agreement > mirrored, f"{image_id}: mask agrees with a mirrored PNG mask ({mirrored:.2f}) as well as with it ({agreement:.2f})"
        if kind == "png":  # the tiny network was trained on PNG cases like these
            truth = _truth(served, image_id)
            dice = 2 * (truth & (label > 0)).sum() / (truth.sum() + (label > 0).sum())
            assert dice > 0.3, f"{image_id}: automatic mask Dice {dice:.2f} against its ground truth"


def test_clicks_move_the_interactive_mask_toward_them(served):
    # the PNG case where the click-free interactive mask misses the most lesion
    candidates = []
    for image_id in sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"])):
        auto, result = _infer(served, "munet_interactive", image_id)
        assert result["clicks"] == {"foreground": 0, "background": 0}
        truth = _truth(served, image_id)
        assert auto.shape == truth.shape, f"{image_id}: mask {auto.shape} vs image {truth.shape}"
        candidates.append(((truth & (auto == 0)).sum(), image_id, auto > 0, truth))
    # the tiny fixture model may leave a case empty without clicks (seen in CI with 2 threads, where its
    # training differs from 1 thread): such a case is a fair one for a foreground click; all empty is not
    assert any(c[2].any() for c in candidates), "no PNG case gets a mask without clicks"
    _, image_id, auto, truth = max(candidates, key=lambda c: c[0])
    missed = truth & ~auto
    assert missed.sum() > 0, "the automatic masks miss nothing: nothing to correct"
    depth = ndimage.distance_transform_edt(missed)
    row, col = np.unravel_index(int(depth.argmax()), depth.shape)

    clicked, result = _infer(served, "munet_interactive", image_id, {"foreground": [[int(col), int(row), 0]], "background": []})
    assert result["clicks"] == {"foreground": 1, "background": 0}
    clicked = clicked > 0
    recovered = (clicked & missed).sum() / missed.sum()
    near = np.hypot(*np.mgrid[: truth.shape[0], : truth.shape[1]] - np.array([row, col])[:, None, None]) <= 5
    assert recovered >= 0.15, f"{image_id}: the click recovered {recovered:.0%} of the missed lesion"
    assert (clicked & near & truth).sum() > (auto & near & truth).sum(), "no lesion added around the click"
    assert (clicked & truth).sum() > (auto & truth).sum()

    # a background click on the largest false-lesion region removes lesion pixels there
    extra = auto & ~truth
    if extra.sum() >= 20:
        labels, count = ndimage.label(extra)
        biggest = 1 + int(np.argmax(ndimage.sum(extra, labels, range(1, count + 1))))
        region = labels == biggest
        depth = ndimage.distance_transform_edt(region)
        r, c = np.unravel_index(int(depth.argmax()), depth.shape)
        cleaned, _ = _infer(served, "munet_interactive", image_id, {"foreground": [], "background": [[int(c), int(r), 0]]})
        assert (cleaned.astype(bool) & region).sum() < region.sum()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _save_label(served: Dict, image_id: str, params: Dict | None = None) -> None:
    mask = (_truth(served, image_id) * 1).astype(np.uint8)
    response = requests.put(f"{served['url']}/datastore/label", params={"image": image_id, "tag": "final"},
                            files={"label": (f"{image_id}.png", _png(mask), "image/png")},
                            data={"params": json.dumps(params or {})}, timeout=60)
    assert response.status_code == 200, response.text
    saved = np.asarray(Image.open(served["studies"] / "labels" / "final" / f"{image_id}.png"))
    assert np.array_equal(saved > 0, mask > 0)


def _train(served: Dict, model: str, body: Dict) -> Dict:
    response = requests.post(f"{served['url']}/train/{model}", params={"run_sync": "true"}, json=body, timeout=1200)
    assert response.status_code == 200, f"{response.text[-2000:]}\n{served['log'].read_text()[-4000:]}"
    print(f"\nPOST /train/{model} {json.dumps(body)} -> {response.text}")
    return response.json()


def test_weights_trained_with_other_settings_are_refused(served):
    """The bundle folder's configs are the truth: weights whose sidecar records another image size
    are refused with both sizes named (without a restart), weights without a sidecar are served
    with a note, and a model without weights is refused with the reason."""
    url, models = served["url"], served["bundle"] / "models"
    image_id = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))[0]
    info = requests.get(f"{url}/info/", timeout=30).json()["models"]["munet_interactive"]
    assert info["image_size"] == 64 and "weights_note" not in info and "refused" not in info
    weights, sidecar = models / "model_interactive.pt", models / "model_interactive.json"
    original = sidecar.read_text()
    assert json.loads(original)["trained_with"]["image_size"] == 64  # written by the interactive training
    moved = models / "moved_away.bin"
    try:
        content = json.loads(original)
        content["trained_with"]["image_size"] = 96
        sidecar.write_text(json.dumps(content))
        info = requests.get(f"{url}/info/", timeout=30).json()
        reason = info["not_served"]["munet_interactive"]
        assert "munet_interactive" not in info["models"] and "image_size 96" in reason and "image_size 64" in reason, reason
        response = requests.post(f"{url}/infer/munet_interactive", params={"image": image_id}, timeout=60)
        assert response.status_code == 404 and "image_size 96" in response.json()["detail"]
        # no sidecar: served by the configs, with a note that nothing could be checked
        sidecar.unlink()
        info = requests.get(f"{url}/info/", timeout=30).json()["models"]["munet_interactive"]
        assert info["image_size"] == 64 and "cannot be checked" in info["weights_note"]
        label, _ = _infer(served, "munet_interactive", image_id)
        assert label.shape == _truth(served, image_id).shape
        # no weights: not listed, /infer says why
        weights.rename(moved)
        info = requests.get(f"{url}/info/", timeout=30).json()
        assert "munet_interactive" not in info["models"] and "missing" in info["not_served"]["munet_interactive"]
        response = requests.post(f"{url}/infer/munet_interactive", params={"image": image_id}, timeout=60)
        assert response.status_code == 404 and "model_interactive.pt is missing" in response.json()["detail"]
    finally:
        if moved.exists():
            moved.rename(weights)
        sidecar.write_text(original)
    info = requests.get(f"{url}/info/", timeout=30).json()["models"]["munet_interactive"]
    assert info["image_size"] == 64 and "weights_note" not in info


def _malformed_requests(served: Dict):
    """(case, method, path, requests kwargs, status, start of the message): the table in docs/monailabel.md."""
    shapes = {i: _truth(served, i).shape for i in served["truth"] if i.startswith(("jpeg_", "case_"))}
    image_id = sorted(shapes, key=lambda i: (not i.startswith("jpeg_"), shapes[i][0] == shapes[i][1], i))[0]
    rows, cols = shapes[image_id]
    assert rows != cols
    mask = (_truth(served, image_id) * 1).astype(np.uint8)
    label = {"image": image_id, "tag": "final"}
    png = ("label.png", _png(mask), "image/png")
    grey = mask.copy()
    grey[0, :3] = [0, 1, 2]
    file_name = next(p.name for p in served["studies"].iterdir() if p.name.split(".")[0] == image_id)
    server_path = str(served["studies"] / file_name)
    return image_id, [
        ("label: a text file", "put", "/datastore/label", dict(params=label, files={"label": ("label.png", b"not an image\n", "image/png")}),
         422, "label: 'label.png' is not a readable image"),
        ("label: 10x10 for a larger image", "put", "/datastore/label",
         dict(params=label, files={"label": ("label.png", _png(np.zeros((10, 10), np.uint8)), "image/png")}),
         422, f"label: 10x10 (rows x columns) but image '{image_id}' is {rows}x{cols}"),
        ("label: transposed", "put", "/datastore/label", dict(params=label, files={"label": ("label.png", _png(mask.T.copy()), "image/png")}),
         422, f"label: {cols}x{rows} (rows x columns) but image '{image_id}' is {rows}x{cols} (the label looks transposed"),
        ("label: not binary", "put", "/datastore/label", dict(params=label, files={"label": ("label.png", _png(grey), "image/png")}),
         422, "label: not binary (values 0, 1, 2)"),
        ("label: class \"maybe\"", "put", "/datastore/label", dict(params=label, files={"label": png}, data={"params": '{"class": "maybe"}'}),
         422, 'params.class: "maybe" is not a class; expected one of benign, malignant (or 0, 1)'),
        ("label: params not JSON", "put", "/datastore/label", dict(params=label, files={"label": png}, data={"params": "{class: benign"}),
         422, "params: not valid JSON"),
        ("label: unknown image", "put", "/datastore/label", dict(params={"image": "no_such_image"}, files={"label": png}),
         404, "image: 'no_such_image' is not in the datastore"),
        ("label: no image parameter", "put", "/datastore/label", dict(files={"label": png}), 422, "image: missing"),
        ("label: tag with a path", "put", "/datastore/label", dict(params={"image": image_id, "tag": "../../x"}, files={"label": png}),
         422, "tag: '../../x' is not a label tag"),
        ("label: no label file", "put", "/datastore/label", dict(params=label), 422, "label: missing"),
        ("infer: unknown model", "post", "/infer/no_such_model", dict(params={"image": image_id}), 404,
         "model: 'no_such_model' is not served here (served: munet, munet_interactive)"),
        ("infer: params not JSON", "post", "/infer/munet", dict(params={"image": image_id}, data={"params": "{not json"}), 422,
         "params: not valid JSON"),
        ("infer: no image parameter", "post", "/infer/munet", {}, 422, "image: missing"),
        ("infer: unknown image", "post", "/infer/munet", dict(params={"image": "no_such_image"}), 404,
         "image: 'no_such_image' is not in the datastore"),
        ("infer: a server path as image", "post", "/infer/munet", dict(params={"image": server_path}), 400,
         f"image: '{file_name}' is not a plain id"),
        ("infer: click outside the image", "post", "/infer/munet_interactive",
         dict(params={"image": image_id}, data={"params": json.dumps({"foreground": [[cols + 50, 1, 0]]})}), 422,
         f"{file_name}: foreground: click [{cols + 50}, 1, 0] is outside"),
        ("upload: a text file as an image", "put", "/datastore/image", dict(params={"image": "notes"},
         files={"file": ("notes.png", b"not an image\n", "image/png")}), 422, "file: 'notes.png' is not a readable image"),
        ("upload: weights as an image", "put", "/datastore/image", dict(params={"image": "model"},
         files={"file": ("model.pt", b"weights", "application/octet-stream")}), 422, "file: 'model.pt' is not an image file"),
        ("infer: model_filename outside the bundle", "post", "/infer/munet",
         dict(params={"image": image_id}, data={"params": json.dumps({"model_filename": "/etc/passwd"})}), 422,
         "params.model_filename: 'passwd' is not served by this model (its weights: model.pt)"),
        ("infer: a device this machine lacks", "post", "/infer/munet",
         dict(params={"image": image_id}, data={"params": json.dumps({"device": "cuda:7"})}), 422,
         "params.device: 'cuda:7' is not a device of this server"),
        ("train: unknown trainer", "post", "/train/no_such_model", dict(params={"run_sync": "true"}, json={"max_epochs": 1}), 404,
         "model: 'no_such_model' is not a trainer here (trainers: munet, munet_interactive)"),
        ("train: body not JSON", "post", "/train/munet", dict(params={"run_sync": "true"}, data="max_epochs=1",
                                                              headers={"Content-Type": "application/json"}), 422, "body: not valid JSON"),
        ("train: body not an object", "post", "/train/munet", dict(params={"run_sync": "true"}, json=[1]), 422,
         "body: expected a JSON object of trainer options, got list"),
        ("train: max_epochs 0", "post", "/train/munet", dict(params={"run_sync": "true"}, json={"max_epochs": 0}), 422,
         "max_epochs: 0 is out of range (allowed: 1 to 10000)"),
        ("train: max_epochs \"abc\"", "post", "/train/munet", dict(params={"run_sync": "true"}, json={"max_epochs": "abc"}), 422,
         'max_epochs: "abc" is not a whole number (allowed: 1 to 10000)'),
        ("train: negative learning rate", "post", "/train/munet", dict(params={"run_sync": "true"}, json={"fine_tune_learning_rate": -1}),
         422, "fine_tune_learning_rate: -1 is out of range"),
        ("train: a device this machine lacks", "post", "/train/munet", dict(params={"run_sync": "true"}, json={"device": "cuda:99"}),
         422, "device: \"cuda:99\" is not a device of this server (devices: cpu)"),
        ("infer: device \"banana\"", "post", "/infer/munet", dict(params={"image": image_id}, data={"params": json.dumps({"device": "banana"})}),
         422, "params.device: 'banana' is not a device of this server"),
        ("infer: model_filename a file that is not the model", "post", "/infer/munet",
         dict(params={"image": image_id}, data={"params": json.dumps({"model_filename": "model.json"})}), 422,
         "params.model_filename: 'model.json' is not served by this model"),
        ("infer: an unknown parameter", "post", "/infer/munet_interactive",
         dict(params={"image": image_id}, data={"params": json.dumps({"forground": [[1, 1]]})}), 422, "params: unknown parameter 'forground'"),
        ("infer: a click of 4 coordinates", "post", "/infer/munet_interactive",
         dict(params={"image": image_id}, data={"params": json.dumps({"foreground": [[1, 2, 3, 4]]})}), 422,
         "params.foreground: click [1, 2, 3, 4] must be [x, y] (column, row) or [x, y, 0]"),
        ("infer: slice 5 of a 2D image", "post", "/infer/munet_interactive",
         dict(params={"image": image_id}, data={"params": json.dumps({"foreground": [[1, 2, 5]]})}), 422,
         "params.foreground: click [1, 2, 5] is on slice 5, but a 2D image has only slice 0"),
        ("infer: clicks as strings", "post", "/infer/munet_interactive",
         dict(params={"image": image_id}, data={"params": json.dumps({"background": [["a", "b"]]})}), 422,
         'params.background: click ["a", "b"] must hold numbers'),
        ("infer: a made-up session_id", "post", "/infer/munet", dict(params={"session_id": "no_such_session"}), 404,
         "session_id: 'no_such_session' is not a session of this server"),
        ("image info: not JSON", "put", "/datastore/image/info", dict(params={"image": image_id}, data={"info": "{not json"}), 422,
         "info: not valid JSON"),
        ("label info: not JSON", "put", "/datastore/label/info", dict(params={"label": image_id, "tag": "final"}, data={"info": "[1"}),
         422, "info: not valid JSON"),
    ]


def test_malformed_requests_get_a_clear_4xx(served):
    url, studies = served["url"], served["studies"]
    image_id, cases = _malformed_requests(served)
    weights = served["bundle"] / "models" / "model.pt"
    before = weights.read_bytes()
    rows = []
    for case, method, path, kwargs, status, message in cases:
        response = getattr(requests, method)(f"{url}{path}", timeout=120, **kwargs)
        detail = response.json().get("detail") if response.headers.get("content-type", "").startswith("application/json") else response.text
        rows.append(f"| {case} | {response.status_code} | {detail} |")
        assert response.status_code == status and isinstance(detail, str) and detail.startswith(message), \
            f"{case}: {response.status_code} {response.text[:500]}\n{served['log'].read_text()[-3000:]}"
        assert str(served["root"]) not in response.text and "/tmp/" not in response.text, f"{case}: a server path in {response.text}"
        assert requests.get(f"{url}/info/", timeout=30).status_code == 200, f"no /info/ after {case}"
    print("\n".join(rows))  # the rows of the docs table (pytest -s)
    assert not list((studies / "labels" / "final").glob(f"{image_id}.*")), "a refused label was stored"
    assert weights.read_bytes() == before


def test_worse_model_is_not_published(served):
    """One epoch at a fine-tune learning rate of 1.0 wrecks the good model: the answer gives both
    scores, models/model.pt stays byte-identical, no .prev is made, and /info/ shows the scores."""
    url, bundle = served["url"], served["bundle"]
    ids = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))
    for n, image_id in enumerate(ids):
        _save_label(served, image_id, {"class": "malignant"} if n == 0 else {})
    weights = bundle / "models" / "model.pt"
    before = weights.read_bytes()
    masks = {i: _infer(served, "munet", i)[0] for i in ids[:2]}

    result = _train(served, "munet", {"max_epochs": 1, "val_split": 0.25, "fine_tune_learning_rate": 1.0, "device": "cpu"})
    assert result["published"] is False, result
    assert result["fine_tune"] is True and result["learning_rate"] == 1.0 and result["max_epochs"] == 1
    assert result["validation_images"] == ids[-2:] and result["metric"] == "val_score"
    assert result["after"]["val_score"] < result["before"]["val_score"], result
    assert result["before"]["val_dice"] is not None and result["after"]["val_dice"] is not None
    assert "kept" in result["reason"] and "served" in result["reason"]
    assert weights.read_bytes() == before, "models/model.pt changed"
    assert not (bundle / "models" / "model.pt.prev").exists()
    stats = requests.get(f"{url}/info/", timeout=30).json()["train_stats"]["munet"]
    assert stats["published"] is False and stats["before"] == result["before"] and stats["after"] == result["after"]
    for image_id, mask in masks.items():  # still the good model's masks
        assert np.array_equal(_infer(served, "munet", image_id)[0], mask)


def test_better_model_is_published_and_the_old_one_kept(served):
    """With the weak model served, training from the saved labels (no max_epochs: the default 5)
    publishes better weights, keeps the weak ones as model.pt.prev, and copying them back restores them."""
    url, bundle = served["url"], served["bundle"]
    models = bundle / "models"
    weak = served["weak"].read_bytes()
    shutil.copyfile(served["weak"], models / "model.pt")  # the server picks it up without a restart
    probe = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))[1]
    weak_mask, _ = _infer(served, "munet", probe)
    ids = ["us_case_0000", "us_case_0001"] + sorted(i for i in served["truth"] if i.startswith("more_"))
    for image_id in ids:
        _save_label(served, image_id)

    result = _train(served, "munet", {"val_split": 0.2, "fine_tune_learning_rate": 0.001, "device": "cpu"})
    assert result["published"] is True, result
    assert result["max_epochs"] == 5 and result["fine_tune"] is True and result["warmup_epochs"] == 1
    assert result["after"]["val_score"] >= result["before"]["val_score"], result
    assert result["previous"] == "models/model.pt.prev" and (models / "model.pt.prev").read_bytes() == weak
    assert (models / "model.pt").read_bytes() != weak
    info = json.loads((models / "model.json").read_text())  # the new weights' sidecar
    assert info["trained_with"]["image_size"] == 64 and info["validation"]["after"] == result["after"]
    kept = entries(bundle)[-1]  # the publication is kept with its scores and the sha256 of its validation labels
    assert kept["validation"]["after"] == result["after"] and len(kept["validation"]["labels_sha256"]) == 64
    assert (history_dir(bundle) / str(kept["entry"]) / "model.pt").read_bytes() == (models / "model.pt").read_bytes()
    stats = requests.get(f"{url}/info/", timeout=30).json()["train_stats"]["munet"]
    assert stats["published"] is True and stats["before"] == result["before"]

    datalist = json.loads((bundle / "eval" / "monailabel" / "datalist.json").read_text())
    cases = datalist["training"] + datalist["validation"]
    assert len(cases) == 8 + len(ids)
    classes = {Path(c["image"]).name.split(".")[0]: c["class"] for c in cases}
    first_png = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))[0]
    assert classes[first_png] == 1  # from the label's params
    assert classes["us_case_0000"] == 0  # from classes.json
    assert classes["us_case_0001"] == -1  # neither: segmentation only

    new_mask, _ = _infer(served, "munet", probe)  # the server serves the new weights
    assert new_mask.shape == weak_mask.shape
    shutil.copyfile(models / "model.pt.prev", models / "model.pt")  # restore
    restored, _ = _infer(served, "munet", probe)
    assert np.array_equal(restored, weak_mask)


def test_interactive_training_follows_the_same_rule(served):
    """The interactive trainer fine-tunes from model_interactive.pt at its recorded size and
    publishes only when the new weights score at least as well; either way both scores come back."""
    models = served["bundle"] / "models"
    weights = models / "model_interactive.pt"
    before = weights.read_bytes()
    result = _train(served, "munet_interactive", {"max_epochs": 1, "device": "cpu"})
    assert result["model"] == "munet_interactive" and result["fine_tune"] is True and result["learning_rate"] == 1e-4
    assert result["before"]["val_score"] is not None and result["after"]["val_score"] is not None
    if result["published"]:
        assert result["after"]["val_score"] >= result["before"]["val_score"]
        assert (models / "model_interactive.pt.prev").read_bytes() == before and weights.read_bytes() != before
        assert json.loads((models / "model_interactive.json").read_text())["trained_with"]["in_channels"] == 3  # image + 2 click maps
    else:
        assert result["after"]["val_score"] < result["before"]["val_score"] and weights.read_bytes() == before
    info = requests.get(f"{served['url']}/info/", timeout=30).json()
    assert info["models"]["munet_interactive"]["image_size"] == 64
    assert info["train_stats"]["munet_interactive"]["after"] == result["after"]


def _tree_digest(root: Path, skip: Tuple[str, ...]) -> Dict[str, str]:
    """sha256 of every file under ``root`` (symbolic links by their target's name), but the server's own logs."""
    import hashlib

    digest = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if any(part in skip for part in path.relative_to(root).parts) or rel.endswith(".log"):
            continue
        if path.is_symlink():
            digest[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


#: ids a client gets wrong or sends with malice, as they arrive in a query or a path
_TRAVERSALS = ["../canary", "../../canary", "../../../canary", "/etc/passwd", "%2e%2e%2fcanary", "..%2Fcanary",
               "%252e%252e%252fcanary", "a/../../canary", "..\\canary", ".canary", "sub/case"]


def _route_attempts(url: str, bad: str, ok_image: str) -> list:
    """(what, method, url, kwargs) of every route that takes an id or a file name, with ``bad`` as that id."""
    png = _png(np.zeros((8, 8), np.uint8))
    q = requests.utils.quote(bad, safe="%")  # sent as written: the %-forms stay encoded once more
    return [
        ("upload image", "put", f"{url}/datastore/image?image={q}", dict(files={"file": ("x.png", png, "image/png")})),
        ("upload image (old route)", "put", f"{url}/datastore/?image={q}", dict(files={"file": ("x.png", png, "image/png")})),
        ("delete image", "delete", f"{url}/datastore/image?id={q}", {}),
        ("delete image (old route)", "delete", f"{url}/datastore/?id={q}", {}),
        ("download image", "get", f"{url}/datastore/image?image={q}", {}),
        ("image info", "get", f"{url}/datastore/image/info?image={q}", {}),
        ("update image info", "put", f"{url}/datastore/image/info?image={q}", dict(data={"info": "{}"})),
        ("save label", "put", f"{url}/datastore/label?image={q}", dict(files={"label": ("l.png", png, "image/png")})),
        ("save label under a tag", "put", f"{url}/datastore/label?image={ok_image}&tag={q}", dict(files={"label": ("l.png", png, "image/png")})),
        ("delete label", "delete", f"{url}/datastore/label?id={q}&tag=final", {}),
        ("delete label under a tag", "delete", f"{url}/datastore/label?id={ok_image}&tag={q}", {}),
        ("download label", "get", f"{url}/datastore/label?label={q}&tag=final", {}),
        ("label info", "get", f"{url}/datastore/label/info?label={q}&tag=final", {}),
        ("update label info", "put", f"{url}/datastore/label/info?label={q}&tag=final", dict(data={"info": "{}"})),
        ("session", "get", f"{url}/session/{q}", {}),
        ("delete session", "delete", f"{url}/session/{q}", {}),
        ("infer", "post", f"{url}/infer/munet?image={q}", dict(data={"params": "{}"})),
        ("download model", "get", f"{url}/model/{q}", {}),
        ("upload model", "put", f"{url}/model/{q}", dict(files={"file": ("m.pt", b"weights", "application/octet-stream")})),
        ("delete model", "delete", f"{url}/model/{q}", {}),
    ]


def test_no_route_reaches_outside_its_folders(served):
    """Every route that takes an id or a file path, with every traversal kind: a 4xx naming the field,
    never a 200 or a bare 500, and no file anywhere under the test's root changed (tree hashed before
    and after), the served weights included. A symbolic link out of the studies folder is refused too."""
    url, root, studies = served["url"], served["root"], served["studies"]
    ok_image = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))[0]
    (root / "canary").write_text("outside the studies folder")
    (root / "outside").mkdir(exist_ok=True)
    secret = root / "outside" / "secret.png"
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(secret)
    link = studies / "linked_out.png"
    link.symlink_to(secret)
    skip = ("logs", "eval", "__pycache__", ".locks")
    try:
        requests.get(f"{url}/datastore/?output=all", timeout=30)  # lets the datastore see the link
        before = _tree_digest(root, skip)
        problems = []
        for bad in _TRAVERSALS:
            for what, method, target, kwargs in _route_attempts(url, bad, ok_image):
                response = getattr(requests, method)(target, timeout=60, **kwargs)
                detail = response.json().get("detail", "") if "json" in response.headers.get("content-type", "") else ""
                if not 400 <= response.status_code < 500 or not isinstance(detail, str) or not detail:
                    problems.append(f"{what} with {bad!r}: {response.status_code} {response.text[:200]}")
        listed = requests.get(f"{url}/datastore/?output=all", timeout=30).json()["objects"]
        if "linked_out" in listed:  # a link the datastore lists is refused on every route that opens its file
            for method, target in (("get", f"{url}/datastore/image?image=linked_out"), ("delete", f"{url}/datastore/image?id=linked_out"),
                                   ("get", f"{url}/datastore/image/info?image=linked_out")):
                response = getattr(requests, method)(target, timeout=60)
                if response.status_code != 403 or "outside the studies folder" not in response.json()["detail"]:
                    problems.append(f"{method} linked_out: {response.status_code} {response.text[:200]}")
        model = requests.post(f"{url}/infer/munet", params={"image": ok_image},
                              data={"params": json.dumps({"model_filename": "/etc/passwd"})}, timeout=60)
        if model.status_code != 422 or "params.model_filename" not in model.json()["detail"]:
            problems.append(f"infer model_filename /etc/passwd: {model.status_code} {model.text[:200]}")
        device = requests.post(f"{url}/infer/munet", params={"image": ok_image},
                               data={"params": json.dumps({"device": "cuda:7"})}, timeout=60)
        if device.status_code != 422 or "params.device" not in device.json()["detail"]:
            problems.append(f"infer device cuda:7: {device.status_code} {device.text[:200]}")
        after = _tree_digest(root, skip)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not problems, "\n".join(problems)
        assert not changed, changed
        assert secret.is_file() and (root / "canary").read_text() == "outside the studies folder"
        info = requests.get(f"{url}/datastore/image/info", params={"image": ok_image}, timeout=30).json()
        assert str(root) not in json.dumps(info)  # no absolute server path in the answer
    finally:
        link.unlink(missing_ok=True)


def test_a_single_bad_label_trains_but_publishes_nothing(served, tmp_path):
    """One inverted label, the only label of a fresh datastore: the training runs and answers both
    scores, but validating on that one image (the training image itself) publishes nothing, whatever
    the scores; the default minimum is 10 held-out images, and /train and /info/ say why."""
    image_id = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))[0]
    studies = tmp_path / "studies"
    studies.mkdir()
    source = next(p for p in served["studies"].iterdir() if p.name.split(".")[0] == image_id)
    shutil.copy(source, studies / source.name)
    bundle = tmp_path / "bundle"
    shutil.copytree(served["bundle"] / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    for name in ("model.pt", "model.json"):
        shutil.copy(served["bundle"] / "models" / name, bundle / "models" / name)
    weights = (bundle / "models" / "model.pt").read_bytes()
    with _running_server(studies, bundle, tmp_path / "server.log") as url:
        inverted = (~_truth(served, image_id)).astype(np.uint8)
        saved = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                             files={"label": (f"{image_id}.png", _png(inverted), "image/png")}, timeout=60)
        assert saved.status_code == 200, saved.text
        response = requests.post(f"{url}/train/munet", params={"run_sync": "true"}, json={"max_epochs": 1, "device": "cpu"}, timeout=1200)
        assert response.status_code == 200, response.text[-2000:]
        result = response.json()
        stats = requests.get(f"{url}/info/", timeout=30).json()["train_stats"]["munet"]
    assert result["published"] is False and result["validation_is_training_set"] is True, result
    assert result["before"] is not None and result["after"] is not None  # both scored, as always
    assert "validated on 1 labelled image(s) (the training images themselves)" in result["reason"]
    assert "publishing needs at least 10 held-out ones" in result["reason"] and result["min_validation_images"] == 10
    assert (bundle / "models" / "model.pt").read_bytes() == weights and not (bundle / "models" / "model.pt.prev").exists()
    assert stats["published"] is False and stats["reason"] == result["reason"]


def test_a_label_that_looks_wrong_is_saved_with_a_warning(served):
    url = served["url"]
    image_id = next(i for i in served["truth"] if i.startswith("case_"))
    lesion = _truth(served, image_id)
    for mask, warned in ((lesion, False), (~lesion, True)):
        response = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "warncheck"},
                                files={"label": ("label.png", _png(mask.astype(np.uint8) * 255), "image/png")}, timeout=60)
        assert response.status_code == 200, response.text
        warnings = response.json().get("warnings", [])
        assert bool(warnings) == warned and (not warned or "looks inverted" in warnings[0]), response.text
    assert requests.delete(f"{url}/datastore/label", params={"id": image_id, "tag": "warncheck"}, timeout=60).status_code == 200


def test_info_answers_while_an_inference_runs(served):
    """MONAI Label ran inference on the event loop: /info/ waited for it (2.4 s for a 4000x4000 upload)."""
    url = served["url"]
    noise = np.random.default_rng(0).integers(0, 255, (4000, 4000), dtype=np.uint8)
    upload = _png(noise)
    done: Dict = {}

    def infer() -> None:
        start = time.perf_counter()
        response = requests.post(f"{url}/infer/munet", params={"output": "json"}, files={"file": ("big.png", upload, "image/png")},
                                 timeout=300)
        done.update(status=response.status_code, text=response.text[:500], seconds=time.perf_counter() - start)

    worker = threading.Thread(target=infer)
    worker.start()
    latencies = []
    time.sleep(0.3)  # the upload is under way
    while worker.is_alive():
        start = time.perf_counter()
        assert requests.get(f"{url}/info/", timeout=60).status_code == 200
        latencies.append(time.perf_counter() - start)
        time.sleep(0.1)
    worker.join()
    assert done["status"] == 200, done["text"]
    print(f"inference {done['seconds']:.2f} s; /info/ during it: {len(latencies)} requests, max {max(latencies):.2f} s, "
          f"median {float(np.median(latencies)):.3f} s")
    assert done["seconds"] > 1.0 and len(latencies) >= 3, f"the inference ({done['seconds']:.2f} s) is too short to test this"
    assert max(latencies) < 0.5 * done["seconds"] and float(np.median(latencies)) < 0.5, latencies


def test_a_server_bound_beyond_this_machine_needs_a_token(tmp_path):
    _skip_unless_installed()
    started = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "start_monailabel.sh"), str(tmp_path), "--host", "0.0.0.0"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "MONAILABEL_PYTHON": str(MONAILABEL_PYTHON)})
    assert started.returncode != 0 and "error: the server binds 0.0.0.0, which other machines reach, and has no token" in started.stderr, \
        started.stderr[-2000:]
    short = tmp_path / "short.token"
    short.write_text("abc\n")
    started = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "start_monailabel.sh"), str(tmp_path), "--token_file", str(short)],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "MONAILABEL_PYTHON": str(MONAILABEL_PYTHON)})
    assert started.returncode != 0 and "the token must be one line of at least 16 characters" in started.stderr, started.stderr[-2000:]


def test_with_a_token_every_route_needs_it(served, tmp_path):
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "server.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    good = {"Authorization": f"Bearer {token}"}
    with _running_server(served["studies"], served["bundle"], tmp_path / "auth.log", "--token_file", str(token_file), headers=good) as url:
        spec = requests.get(f"{url}/openapi.json", headers=good, timeout=30)
        assert spec.status_code == 200
        routes = sorted({(method.upper(), path) for path, ops in spec.json()["paths"].items() for method in ops}
                        | {("GET", "/"), ("GET", "/ohif/"), ("GET", "/openapi.json"), ("GET", "/docs")})
        assert len(routes) > 30, routes
        # ids the guard refuses: a request that passes the token check goes no further than the guard
        traversal = {"image": "../x", "id": "../x", "label": "../x"}
        for method, path in routes:
            concrete = path.replace("{", "").replace("}", "")  # /infer/{model} -> /infer/model: a name, never run
            for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": token}):
                response = requests.request(method, f"{url}{concrete}", headers=headers, params=traversal, timeout=60)
                assert response.status_code == 401, f"{method} {path} with {headers or 'no header'}: {response.status_code} {response.text[:300]}"
                assert response.headers.get("www-authenticate", "").startswith("Bearer")
            response = requests.request(method, f"{url}{concrete}", headers=good, params=traversal, timeout=60)
            assert response.status_code != 401, f"{method} {path} with the token: {response.status_code} {response.text[:300]}"
        # the annotation page's static files hold no data and load without the token (the page then
        # asks for it); its API does not, nor does a path that climbs out of the page's folder
        assert ("GET", "/annotate/api/images") in routes
        for public in ("/annotate/", "/annotate/annotate.js", "/annotate/index.html"):
            assert requests.get(f"{url}{public}", timeout=30).status_code == 200, public
        for private in ("/annotate/api/images", "/annotate/api/image?image=x", "/annotate/../info/", "/annotate/%2e%2e/info/"):
            assert requests.get(f"{url}{private}", timeout=30).status_code in (401, 404), private
        assert requests.post(f"{url}/annotate/", timeout=30).status_code == 401
        # and the work itself goes through with the token
        image_id = next(i for i in served["truth"] if i.startswith("case_"))
        assert requests.get(f"{url}/datastore/", params={"output": "all"}, headers=good, timeout=30).status_code == 200
        inferred = requests.post(f"{url}/infer/munet", params={"image": image_id, "output": "json"}, headers=good, timeout=300)
        assert inferred.status_code == 200, inferred.text[:500]
        saved = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "authcheck"}, headers=good, timeout=60,
                             files={"label": ("label.png", _png(_truth(served, image_id).astype(np.uint8) * 255), "image/png")})
        assert saved.status_code == 200, saved.text
        assert requests.delete(f"{url}/datastore/label", params={"id": image_id, "tag": "authcheck"}, headers=good, timeout=60).status_code == 200
        assert "refused: no token" in (tmp_path / "auth.log").read_text()


def test_the_next_image_to_annotate_is_the_one_the_model_is_least_sure_of(served):
    """Each automatic inference records the image's uncertainty (max of 1 - |2p - 1| over the presence
    and malignancy probabilities, and 1 - view agreement); most_uncertain serves the highest."""
    url = served["url"]
    # the module's other tests label most studies: add six unlabelled ones (distinct pictures)
    added = [f"next_{i}" for i in range(6)]
    for image_id, source in zip(added, sorted(served["studies"].glob("more_case_*.png"))[:6]):
        uploaded = requests.put(f"{url}/datastore/image", params={"image": image_id},
                                files={"file": (f"{image_id}.png", source.read_bytes(), "image/png")}, timeout=60)
        assert uploaded.status_code == 200, uploaded.text[:300]
    listing = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()
    unlabeled = sorted(i for i, entry in listing["objects"].items() if not entry.get("labels", {}).get("final"))
    assert set(added) <= set(unlabeled)
    scores = {}
    for image_id in unlabeled:
        response = requests.post(f"{url}/infer/munet", params={"image": image_id, "output": "json"}, timeout=300)
        assert response.status_code == 200, response.text[:500]
        result = response.json()  # output=json: the result JSON itself
        parts = [0.0]  # what the answer shows; the class head's answer counts even on "no lesion", where it is not shown
        if result.get("lesion_probability") is not None:
            parts.append(1 - abs(2 * result["lesion_probability"] - 1))
        if result["class_probabilities"].get("malignant") is not None:
            parts.append(1 - abs(2 * result["class_probabilities"]["malignant"] - 1))
        if result.get("view_agreement") is not None:
            parts.append(1 - result["view_agreement"])
        assert result["uncertainty"] >= max(parts) - 1e-5 and (result["finding"] == "no lesion" or result["uncertainty"]
                                                              == pytest.approx(max(parts), abs=1e-5)), result
        info = requests.get(f"{url}/datastore/image/info", params={"image": image_id}, timeout=30).json()
        assert info["munet_uncertainty"] == pytest.approx(result["uncertainty"], abs=1e-6), (image_id, result, info)
        assert info["munet_review"]["finding"] == result["finding"]
        scores[image_id] = info["munet_uncertainty"]
    assert len(set(scores.values())) > 1, scores  # the test means something only if the scores differ
    suggested = requests.post(f"{url}/activelearning/most_uncertain", json={}, timeout=120)
    assert suggested.status_code == 200, suggested.text[:500]
    best = max(sorted(scores), key=lambda i: scores[i])
    assert suggested.json()["id"] == best and suggested.json()["munet_uncertainty"] == pytest.approx(scores[best])
    assert str(served["root"]) not in suggested.text
    assert "most_uncertain" in requests.get(f"{url}/info/", timeout=30).json()["strategies"]
    for image_id in added:
        assert requests.delete(f"{url}/datastore/image", params={"id": image_id}, timeout=60).status_code == 200
