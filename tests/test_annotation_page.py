"""The annotation page (``/annotate/``) in a real browser against real servers.

Debian's chromium, driven by Playwright from PyPI (``executable_path``, no browser download), opens
the page served by a real MONAI Label server on a studies folder, and on Orthanc through DICOMweb.
It auto-segments, clicks, saves; faults are made real (a server stopped mid-session, Orthanc stopped
during a save, an unreadable image). OHIF (the one MONAI Label serves) opens the saved SEG from
Orthanc. Screenshots are kept in ``test-output/annotation/``. Browser, MONAI Label and Orthanc are
installed by the test command; a test skips only where that install failed and wrote its reason.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pydicom
import pytest
import requests
from bundle_helpers import REPO_ROOT, TINY, make_tiny_dataset, run_bundle
from PIL import Image
from pydicom.uid import generate_uid
from scipy import ndimage
from servers import free_port, running_orthanc, running_server, skip_unless_monailabel

from munet.cli.train import make_bundle_folder, recipe_values
from munet.engines.bundle_folder import workflow_argv

pytestmark = pytest.mark.timeout(1500)

SHOTS = REPO_ROOT / "test-output" / "annotation"
BROWSER_INSTALL_FAILED = REPO_ROOT / ".browser" / "INSTALL_FAILED"
#: an overlay pixel: the mask's red over gray (R - G is about 0.45 * 215 at the default opacity)
RED_MARGIN = 40


def _chromium() -> str:
    if BROWSER_INSTALL_FAILED.is_file():
        pytest.skip(f"the browser could not be installed here: {BROWSER_INSTALL_FAILED.read_text().strip()[-300:]}")
    path = shutil.which("chromium")
    assert path, "chromium is not installed: run `bash scripts/setup_env.sh --with-browser`"
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=[
            "--no-sandbox", "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Dict:
    """A tiny automatic + interactive bundle (the paper recipe at 64 px) and its dataset."""
    skip_unless_monailabel()
    root = tmp_path_factory.mktemp("annotate")
    data = make_tiny_dataset(root, n_train=48, n_val=4, n_test=6, seed=3)
    bundle = root / "bundle"
    make_bundle_folder(bundle, {**recipe_values("paper"), **TINY})
    for overlays in ((), ("train_interactive.json",)):
        run_bundle(workflow_argv("training", bundle, overlays, dataset_dir=str(data), max_epochs=20), timeout=900)
    return {"root": root, "data": data, "bundle": bundle}


def _studies(trained: Dict, folder: Path) -> Dict[str, Path]:
    """The tiny dataset's test images as a studies folder, plus an unreadable one; image id -> true mask."""
    folder.mkdir()
    content = json.loads((trained["data"] / "datalist.json").read_text())
    truth = {}
    for item in content["test"]:
        image = trained["data"] / item["image"]
        shutil.copy(image, folder / image.name)
        truth[image.stem] = trained["data"] / item["label"]
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    return truth


@pytest.fixture(scope="module")
def local(trained):
    studies = trained["root"] / "studies"
    truth = _studies(trained, studies)
    with running_server(studies, trained["bundle"], trained["root"] / "server.log") as url:
        yield {"url": url, "studies": studies, "truth": truth}


def _page(browser, url: str, image_id: str = ""):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.messages = []
    page.on("console", lambda m: page.messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.messages.append(f"pageerror: {e}"))
    page.goto(f"{url}/annotate/" + (f"#{image_id}" if image_id else ""))
    page.wait_for_function("state.picture !== null && !state.busy", timeout=60000)
    return page


def _message(page) -> Tuple[str, str]:
    page.wait_for_function("!state.busy", timeout=120000)
    box = page.locator("#message")
    return box.get_attribute("class") or "", box.inner_text()


def _shot(page, name: str) -> np.ndarray:
    SHOTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(path=str(SHOTS / f"{name}.png"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _overlay(page, shot: np.ndarray) -> np.ndarray:
    """Whether each image pixel is drawn red on the screen (sampled at the pixel's centre)."""
    geometry = page.evaluate("({zoom: state.zoom, x: state.panX, y: state.panY, rows: state.rows, cols: state.cols,"
                             " box: document.getElementById('view').getBoundingClientRect().toJSON()})")
    rows, cols = np.mgrid[: geometry["rows"], : geometry["cols"]]
    sx = np.floor(geometry["box"]["x"] + geometry["x"] + (cols + 0.5) * geometry["zoom"]).astype(int)
    sy = np.floor(geometry["box"]["y"] + geometry["y"] + (rows + 0.5) * geometry["zoom"]).astype(int)
    pixels = shot[sy.clip(0, shot.shape[0] - 1), sx.clip(0, shot.shape[1] - 1)]
    return (pixels[..., 0] - pixels[..., 1]) > RED_MARGIN


def _mask(page) -> np.ndarray:
    values = page.evaluate("Array.from(state.mask)")
    rows, cols = page.evaluate("[state.rows, state.cols]")
    return np.asarray(values, dtype=np.uint8).reshape(rows, cols) > 0


def _truth(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 0


def _click_at(page, col: float, row: float, shift: bool = False) -> None:
    x, y = page.evaluate(f"(() => {{ const b = document.getElementById('view').getBoundingClientRect();"
                         f" return [b.x + state.panX + ({col} + 0.5) * state.zoom, b.y + state.panY + ({row} + 0.5) * state.zoom]; }})()")
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(x, y)
    if shift:
        page.keyboard.up("Shift")


def _auto_mask(url: str, image_id: str) -> np.ndarray:
    response = requests.post(f"{url}/infer/munet", params={"image": image_id, "output": "image"}, timeout=120)
    response.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(response.content))) > 0


def _best_case(local: Dict) -> str:
    """The test image whose automatic mask (asked of the server directly) fits its lesion best: the
    page is tested on where it draws the model's answer, not on the tiny model's weaker cases."""
    if "best" not in local:
        def fit(image_id: str) -> float:
            mask, truth = _auto_mask(local["url"], image_id), _truth(local["truth"][image_id])
            return 2 * (mask & truth).sum() / max(1, mask.sum() + truth.sum())
        local["best"] = max(sorted(local["truth"]), key=fit)
    return local["best"]


def test_auto_segmentation_is_drawn_over_the_lesion(browser, local):
    image_id = _best_case(local)
    page = _page(browser, local["url"], image_id)
    assert page.evaluate("[state.rows, state.cols]") == list(_truth(local["truth"][image_id]).shape)  # full resolution
    before = _overlay(page, _shot(page, "01_opened"))
    page.keyboard.press("a")
    kind, text = _message(page)
    assert kind == "info" and "automatic segmentation" in text, text
    truth = _truth(local["truth"][image_id])
    drawn = _overlay(page, _shot(page, "02_auto"))
    core = ndimage.binary_erosion(truth, iterations=2)
    far = ndimage.distance_transform_edt(~truth) > 0.3 * min(truth.shape)  # the tiny 64 px model spills over its edges
    assert not before.any(), "red pixels before any mask"
    assert drawn[core].mean() > 0.6, f"only {drawn[core].mean():.0%} of the lesion's core is drawn"
    assert drawn[far].mean() < 0.02, f"{drawn[far].mean():.1%} of the image far from the lesion is drawn"
    np.testing.assert_array_equal(_mask(page), _auto_mask(local["url"], image_id))  # the page holds the model's answer
    assert (drawn == _mask(page)).mean() > 0.98, "the screen does not show the mask the model returned"
    assert page.locator("#finding").inner_text() in ("lesion", "uncertain", "no lesion")
    if page.locator("#finding").inner_text() != "no lesion":
        assert page.locator("#class-probabilities tr").count() == 2
    assert not [m for m in page.messages if m.startswith("pageerror")], page.messages
    page.close()


def _sent_params(request) -> Dict:
    """The ``params`` field of a multipart /infer request the page sent."""
    found = re.search(r'name="params"\r\n\r\n(.*?)\r\n--', request.post_data or "", re.S)
    assert found, f"no params in the page's request: {(request.post_data or '')[:300]}"
    return json.loads(found.group(1))


def test_a_background_click_goes_to_the_interactive_model_and_undo_brings_the_mask_back(browser, local):
    """A Shift+click where the automatic mask spills over: the page sends that pixel as a
    background click, draws exactly what the interactive model answers for it, and undoes it."""
    image_id = _best_case(local)
    truth = _truth(local["truth"][image_id])
    page = _page(browser, local["url"], image_id)
    page.keyboard.press("a")
    _message(page)
    auto = _mask(page)
    spill = auto & ~truth if (auto & ~truth).any() else ~truth
    depth = ndimage.distance_transform_edt(np.pad(spill, 1))[1:-1, 1:-1]
    row, col = (int(v) for v in np.unravel_index(int(depth.argmax()), depth.shape))  # the heart of the spill
    sent = []
    page.on("request", lambda r: sent.append(r) if "/infer/munet_interactive" in r.url else None)
    page.keyboard.press("c")
    _click_at(page, col, row, shift=True)
    kind, text = _message(page)
    assert kind == "info" and "background click" in text, text
    assert len(sent) == 1 and _sent_params(sent[0]) == {"foreground": [], "background": [[col, row]]}, [_sent_params(r) for r in sent]
    clicked = _mask(page)
    _shot(page, "03_background_click")
    direct = requests.post(f"{local['url']}/infer/munet_interactive", params={"image": image_id, "output": "image"},
                           data={"params": json.dumps({"foreground": [], "background": [[col, row]]})}, timeout=120)
    direct.raise_for_status()
    np.testing.assert_array_equal(clicked, np.asarray(Image.open(io.BytesIO(direct.content))) > 0)  # the model's answer, drawn
    assert (clicked != auto).any(), "the mask did not change after the click"
    page.keyboard.press("Control+z")
    np.testing.assert_array_equal(_mask(page), auto)
    assert page.evaluate("state.clicks.background.length") == 0
    page.close()


def test_brush_and_save_store_the_drawn_label(browser, local):
    image_id = sorted(local["truth"])[0]
    page = _page(browser, local["url"], image_id)
    page.keyboard.press("b")
    rows, cols = page.evaluate("[state.rows, state.cols]")
    x0, y0 = page.evaluate("(() => { const b = document.getElementById('view').getBoundingClientRect();"
                           " return [b.x + state.panX, b.y + state.panY]; })()")
    zoom = page.evaluate("state.zoom")
    page.mouse.move(x0 + cols * 0.3 * zoom, y0 + rows * 0.5 * zoom)
    page.mouse.down()
    page.mouse.move(x0 + cols * 0.7 * zoom, y0 + rows * 0.5 * zoom, steps=8)
    page.mouse.up()
    drawn = _mask(page)
    assert drawn.sum() > 0
    page.keyboard.press("2")  # malignant
    page.keyboard.press("s")
    kind, text = _message(page)
    assert kind == "ok" and text.startswith("saved"), text
    saved = np.asarray(Image.open(local["studies"] / "labels" / "final" / f"{image_id}.png"))
    np.testing.assert_array_equal(saved > 0, drawn)
    info = requests.get(f"{local['url']}/datastore/label/info", params={"label": image_id, "tag": "final"}, timeout=30).json()
    assert info.get("class") == "malignant"
    assert page.locator(f"#images li[data-id='{image_id}']").get_attribute("class").find("labelled") >= 0
    assert page.evaluate(f"localStorage.getItem(draftKey('{image_id}'))") is None  # the draft goes once saved
    page.close()


def test_bad_actions_get_a_clear_message_and_lose_nothing(browser, local):
    ids = sorted(local["truth"])
    page = _page(browser, local["url"], ids[1])
    page.keyboard.press("c")
    pan_x, pan_y, zoom = page.evaluate("[state.panX, state.panY, state.zoom]")
    assert max(pan_x, pan_y) > 10, "the fitted image fills the canvas: no room to click beside it"
    cols, rows = page.evaluate("[state.cols, state.rows]")
    if pan_y > 10:
        _click_at(page, cols / 2, -pan_y / 2 / zoom - 0.5)  # on the canvas, above the image
    else:
        _click_at(page, -pan_x / 2 / zoom - 0.5, rows / 2)  # on the canvas, left of the image
    kind, text = _message(page)
    assert kind == "error" and "outside the image" in text, text
    # an empty mask: the page asks; "no" saves nothing, "yes" saves a no-lesion label
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.keyboard.press("s")
    kind, text = _message(page)
    assert "not saved" in text and not (local["studies"] / "labels" / "final" / f"{ids[1]}.png").exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("s")
    kind, text = _message(page)
    assert kind == "ok" and "no lesion" in text, text
    assert not np.asarray(Image.open(local["studies"] / "labels" / "final" / f"{ids[1]}.png")).any()
    # an image the bundle cannot read
    page.locator("#images li[data-id='broken']").click()
    kind, text = _message(page)
    assert kind == "error" and "broken" in text and "cannot" in text, text
    _shot(page, "04_unreadable_image")
    page.close()


def test_a_drawing_survives_a_server_restart(browser, trained, tmp_path):
    studies = tmp_path / "studies"
    truth = _studies(trained, studies)
    image_id = sorted(truth)[2]
    port = free_port()
    with running_server(studies, trained["bundle"], tmp_path / "server.log", port=port) as url:
        page = _page(browser, url, image_id)
        page.keyboard.press("a")
        _message(page)
        drawn = _mask(page)
        assert drawn.any()
    # the server is down: saving fails with a message, the drawing stays on the page and in the browser
    page.keyboard.press("s")
    kind, text = _message(page)
    assert kind == "error" and "not saved" in text and "did not answer" in text, text
    np.testing.assert_array_equal(_mask(page), drawn)
    _shot(page, "05_server_down")
    with running_server(studies, trained["bundle"], tmp_path / "server.log", port=port) as url:
        page.reload()
        page.wait_for_function("state.picture !== null && !state.busy", timeout=60000)
        assert "restored" in page.locator("#draft-info").inner_text()
        np.testing.assert_array_equal(_mask(page), drawn)
        page.keyboard.press("s")
        kind, text = _message(page)
        assert kind == "ok", text
    np.testing.assert_array_equal(np.asarray(Image.open(studies / "labels" / "final" / f"{image_id}.png")) > 0, drawn)
    page.close()


# --- DICOMweb: Orthanc as the datastore, SEG in the PACS, OHIF shows it ------------------------


def _scanner_images(trained: Dict, folder: Path) -> Dict[str, Dict]:
    """Two studies as a PACS holds them: a scanner image without plane geometry (a B-mode region
    with its spacing) and one with it; SOP Instance UID -> dataset, true mask, study."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from plain_dicom import save, us_dataset, with_region

    content = json.loads((trained["data"] / "datalist.json").read_text())
    cases = {}
    for n, item in enumerate(sorted(content["test"], key=lambda i: -_truth(trained["data"] / i["label"]).sum())[:2]):
        pixels = np.asarray(Image.open(trained["data"] / item["image"]).convert("L"))
        ds = us_dataset(pixels, study_uid=generate_uid(), patient_id=f"MUNET-ANNOTATE-{n}")
        rows, cols = pixels.shape
        if n == 0:
            ds = with_region(ds, (0, 0, cols - 1, rows - 1), (0.01, 0.01))
        else:
            ds.FrameOfReferenceUID, ds.ImageOrientationPatient, ds.ImagePositionPatient = generate_uid(), [1, 0, 0, 0, 1, 0], [0, 0, 0]
            ds.PixelSpacing, ds.SliceThickness, ds.PositionReferenceIndicator = [0.1, 0.1], 1.0, ""
        path = save(ds, folder / f"case{n}.dcm")
        cases[str(ds.SOPInstanceUID)] = {"path": path, "truth": _truth(trained["data"] / item["label"]), "study": str(ds.StudyInstanceUID),
                                         "planar": n == 1}
    return cases


@pytest.fixture(scope="module")
def pacs(trained):
    from dicomweb_client import DICOMwebClient

    root = trained["root"] / "pacs"
    root.mkdir()
    cases = _scanner_images(trained, root)
    with running_orthanc(root / "orthanc") as orthanc:
        client = DICOMwebClient(orthanc.dicomweb)
        client.store_instances([pydicom.dcmread(c["path"]) for c in cases.values()])
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(root / "cache")}
        with running_server(orthanc.dicomweb, trained["bundle"], root / "server.log", env=env) as url:
            yield {"url": url, "dicomweb": orthanc.dicomweb, "client": client, "orthanc": orthanc, "cases": cases, "root": root}


def _annotate_in_pacs(browser, pacs: Dict, sop_uid: str, name: str):
    page = _page(browser, pacs["url"], sop_uid)
    page.keyboard.press("a")
    _message(page)
    drawn = _mask(page)
    assert drawn.any()
    return page, drawn


def _segs_of(client, study: str) -> list:
    return [s for s in client.search_for_series(study_instance_uid=study, search_filters={"Modality": "SEG"})]


def test_a_saved_label_is_a_seg_in_the_pacs_and_ohif_draws_it(browser, pacs):
    log = (pacs["root"] / "server.log").read_text()
    assert "instances matching {'Modality': 'US'}" in log and "dcmqi" not in log.lower()  # ultrasound, and no download
    listed = requests.get(f"{pacs['url']}/annotate/api/images", timeout=60).json()
    assert sorted(i["id"] for i in listed["images"]) == sorted(pacs["cases"])  # US instances, no display copies, no SEG
    for sop_uid, case in pacs["cases"].items():
        page, drawn = _annotate_in_pacs(browser, pacs, sop_uid, "pacs")
        page.keyboard.press("s")
        kind, text = _message(page)
        assert kind == "ok" and "stored in the PACS as DICOM SEG" in text, text
        page.close()
        (seg_series,) = _segs_of(pacs["client"], case["study"])
        seg_uid = seg_series["0020000E"]["Value"][0]
        (seg,) = pacs["client"].retrieve_series(case["study"], seg_uid)
        assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
        np.testing.assert_array_equal(seg.pixel_array.reshape(drawn.shape) > 0, drawn)
        derived = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert derived.ReferencedSOPInstanceUID == sop_uid
        _ohif_draws_the_seg(browser, pacs, case, "planar" if case["planar"] else "scanner")
    listed = requests.get(f"{pacs['url']}/annotate/api/images", timeout=60).json()
    assert all(i["labelled"] for i in listed["images"]) and listed["next"] is None


def _ohif_draws_the_seg(browser, pacs: Dict, case: Dict, name: str) -> None:
    """OHIF's segmentation mode (served by MONAI Label, data through its DICOMweb proxy) opens the
    study, loads the SEG and draws its segment: red pixels appear where the lesion is."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{pacs['url']}/ohif/segmentation?StudyInstanceUIDs={case['study']}", wait_until="networkidle", timeout=120000)
    page.wait_for_timeout(4000)
    for text in ("Confirm and Hide",):
        if page.get_by_text(text).count():
            page.get_by_text(text).first.click()
    before = _shot(page, f"06_ohif_{name}_study")
    page.get_by_text("Lesion label (annotator)").first.dblclick()
    page.wait_for_timeout(6000)
    if page.get_by_role("button", name="Yes").count():
        page.get_by_role("button", name="Yes").first.click()
        page.wait_for_timeout(4000)
    after = _shot(page, f"07_ohif_{name}_seg")
    red_before = ((before[..., 0] - before[..., 1]) > RED_MARGIN) & (before[..., 0] > 100)
    red_after = ((after[..., 0] - after[..., 1]) > RED_MARGIN) & (after[..., 0] > 100)
    viewport = np.zeros(red_after.shape, bool)
    viewport[60:760, 290:990] = True  # the viewports (left panel and right panel excluded)
    added = red_after & ~red_before & viewport
    geometry_errors = [e for e in errors if "orthogonal" in e or "ImageOrientationPatient" in e or "SpacingBetweenSlices" in e]
    assert not geometry_errors, geometry_errors
    assert added.sum() > 300, f"{name}: OHIF drew {added.sum()} red pixels for the SEG"
    page.close()


def test_a_save_while_the_pacs_is_down_says_so_and_keeps_the_drawing(browser, pacs):
    sop_uid = sorted(pacs["cases"])[0]
    page, drawn = _annotate_in_pacs(browser, pacs, sop_uid, "pacs_down")
    labelled_before = requests.get(f"{pacs['url']}/annotate/api/images", timeout=60).json()
    pacs["orthanc"].stop()  # the PACS goes away; the MONAI Label server stays up
    try:
        page.keyboard.press("s")
        kind, text = _message(page)
        assert kind == "error" and "not saved" in text and "PACS" in text, text
        np.testing.assert_array_equal(_mask(page), drawn)
        _shot(page, "08_pacs_down")
    finally:
        pacs["orthanc"].start()
    page.keyboard.press("s")
    kind, text = _message(page)
    assert kind == "ok" and "stored in the PACS" in text, text
    assert len(_segs_of(pacs["client"], pacs["cases"][sop_uid]["study"])) == 1 + sum(
        i["labelled"] for i in labelled_before["images"] if i["id"] == sop_uid)
    page.close()
