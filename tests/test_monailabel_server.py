"""A real MONAI Label 0.8.5 server serving this bundle, exercised over HTTP.

The server runs from ``.venv-monailabel`` (``bash scripts/setup_env.sh --with-monailabel``; the
test command installs it) through ``scripts/start_monailabel.sh``, on 127.0.0.1, with a studies
folder of generated PNG and DICOM ultrasound images. The served bundle is a copy of the configs
with a tiny network trained here (automatic and interactive). These tests skip only when that
environment could not be installed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from email.parser import BytesParser
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from scipy import ndimage

from bundle.data.synthetic import generate_demo_dataset
from bundle_helpers import CONFIGS, LOGGING, META, REPO_ROOT, TRAIN, TINY, cli_args, make_tiny_dataset, overrides, run_bundle

MONAILABEL_PYTHON = Path(os.environ.get("MONAILABEL_PYTHON", REPO_ROOT / ".venv-monailabel" / "bin" / "python"))
INSTALL_FAILED = REPO_ROOT / ".venv-monailabel" / "INSTALL_FAILED"

pytestmark = pytest.mark.timeout(1200)


def _skip_unless_installed() -> None:
    if INSTALL_FAILED.is_file():
        pytest.skip(f"monailabel could not be installed here: {INSTALL_FAILED.read_text().strip()[-300:]}")
    if not MONAILABEL_PYTHON.is_file():
        pytest.skip("monailabel is not installed: run `bash scripts/setup_env.sh --with-monailabel`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bake_configs(bundle: Path) -> None:
    """Copy the configs into the served bundle with the tiny sizes the test networks have."""
    (bundle / "configs").mkdir(parents=True, exist_ok=True)
    for path in CONFIGS.glob("*"):
        if path.is_file():
            shutil.copy(path, bundle / "configs" / path.name)
    for name in ("inference.json", "train.json"):
        config = json.loads((bundle / "configs" / name).read_text())
        config.update({k: v for k, v in TINY.items() if k in config})
        (bundle / "configs" / name).write_text(json.dumps(config, indent=4))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Dict:
    """Train tiny automatic + interactive models, lay out studies, start the server; stop it after."""
    _skip_unless_installed()
    root = tmp_path_factory.mktemp("monailabel")
    data = make_tiny_dataset(root, n_train=48, n_val=4, n_test=4)
    bundle = root / "bundle"
    _bake_configs(bundle)
    interactive = f"['{TRAIN}','{CONFIGS / 'train_interactive.json'}']"
    for config in (TRAIN, interactive):
        run_bundle(["run", "training", "--config_file", config, "--meta_file", META, "--logging_file", LOGGING,
                    *cli_args(overrides(bundle, data, max_epochs=20))], timeout=900)

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
    run_bundle(["run", "inferring", "--config_file", str(bundle / "configs" / "inference.json"), "--meta_file", META,
                "--logging_file", LOGGING, "--bundle_root", str(bundle), "--datalist", str(studies), "--output_dir", str(bundle_masks)])

    port = _free_port()
    log = open(root / "server.log", "w")
    process = subprocess.Popen(
        ["bash", str(REPO_ROOT / "scripts" / "start_monailabel.sh"), str(studies), "--bundle_path", str(bundle), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MONAILABEL_PYTHON": str(MONAILABEL_PYTHON)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{(root / 'server.log').read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"server not up after 300 s:\n{(root / 'server.log').read_text()[-4000:]}")
            time.sleep(2)
        yield {"url": url, "bundle": bundle, "studies": studies, "truth": truth, "log": root / "server.log", "bundle_masks": bundle_masks}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


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
            agreement = 2 * (as_png & (label > 0)).sum() / (as_png.sum() + (label > 0).sum())
            assert agreement > 0.9, f"{image_id}: mask agrees with the PNG study's only by Dice {agreement:.2f}"
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
        assert auto.shape == truth.shape and (auto > 0).any(), f"{image_id}: no mask without clicks"
        candidates.append(((truth & (auto == 0)).sum(), image_id, auto > 0, truth))
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


def test_saved_labels_train_a_new_checkpoint(served):
    url, bundle, studies = served["url"], served["bundle"], served["studies"]
    ids = sorted(i for i in served["truth"] if i.startswith(_PREFIX["png"]))[:3] + ["us_case_0000", "us_case_0001"]
    for n, image_id in enumerate(ids):
        mask = (_truth(served, image_id) * 1).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        params = {"class": "malignant"} if n == 0 else {}
        response = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                                files={"label": (f"{image_id}.png", buffer.getvalue(), "image/png")},
                                data={"params": json.dumps(params)}, timeout=60)
        assert response.status_code == 200, response.text
        saved = np.asarray(Image.open(studies / "labels" / "final" / f"{image_id}.png"))
        assert np.array_equal(saved > 0, mask > 0)

    weights = bundle / "models" / "model.pt"
    before = weights.read_bytes()
    response = requests.post(f"{url}/train/munet", params={"run_sync": "true"},
                             json={"max_epochs": 2, "val_split": 0.4, "device": "cpu"}, timeout=900)
    assert response.status_code == 200, f"{response.text[-2000:]}\n{served['log'].read_text()[-4000:]}"
    datalist = json.loads((bundle / "eval" / "monailabel" / "datalist.json").read_text())
    cases = datalist["training"] + datalist["validation"]
    assert len(cases) == 5
    classes = {Path(c["image"]).name.split(".")[0]: c["class"] for c in cases}
    assert classes[ids[0]] == 1  # from the label's params
    assert classes["us_case_0000"] == 0  # from classes.json
    assert classes["us_case_0001"] == -1  # neither: segmentation only
    assert weights.read_bytes() != before, "training did not write a new models/model.pt"
    label, _ = _infer(served, "munet", ids[1])  # the server serves the new weights
    assert label.shape == _truth(served, ids[1]).shape
