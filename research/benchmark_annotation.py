"""How long an annotator waits on the annotation page: a click to its drawn mask, and a save to the PACS.

    python -m research.benchmark_annotation --bundle runs/busi --datalist runs/busi/data/datalist.json \\
        [--images 5] [--clicks 3] [--output docs/results/benchmark_annotation.json]

The real parts, as an annotator uses them: a private Orthanc holding the split's lesion images as
scanner-style ultrasound DICOM (no plane geometry), the MONAI Label server serving ``--bundle``
(``models/model.pt`` and ``models/model_interactive.pt``) on that Orthanc, and the page in
Debian's chromium (Playwright). Per image: open it, the automatic mask (A), then ``--clicks``
clicks, each at the centre of the largest error region (the NoC protocol's click), then a save
(S) that stores a DICOM SEG in Orthanc and reads it back.

Timed, with a peer measured in the same run:

- a click, from the mouse press to the mask drawn on the canvas (Python's clock around
  Playwright's click and the page's end of work; the page's own figure too), against the same
  ``/infer/munet_interactive`` request sent by ``requests`` (the server alone);
- a save, from the key press to "saved" on the page, against the same SEG stored by STOW-RS and
  read back with dicomweb-client (the PACS alone).

Uses the tests' server helpers (``tests/servers.py``; run from the repository root); needs ``.venv-monailabel``, Orthanc and
chromium (``scripts/setup_env.sh --with-monailabel --with-pacs --with-browser``). Run it alone on
the machine: the figures are printed with the CPU's capability and the torch threads.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fire
import numpy as np


def _cases(datalist: Path, count: int, folder: Path) -> Dict[str, Dict]:
    """The first ``count`` lesion images of the test split as scanner-style DICOM: SOP UID -> case."""
    import pydicom
    from PIL import Image

    from munet.dataset_tools.dicom_writer import write_ultrasound_dicom

    root = datalist.parent
    cases = {}
    for item in json.loads(datalist.read_text())["test"]:
        if not item.get("label") or len(cases) >= count:
            continue
        truth = np.asarray(Image.open(root / item["label"]).convert("L")) > 0
        if not truth.any():
            continue
        pixels = np.asarray(Image.open(root / item["image"]).convert("L"))
        path = write_ultrasound_dicom(folder / f"case{len(cases)}.dcm", pixels, patient_id=f"MUNET-BENCH-{len(cases)}")
        cases[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = {"path": path, "truth": truth, "name": Path(item["image"]).name}
    return cases


def _page_mask(page) -> np.ndarray:
    rows, cols = page.evaluate("[state.rows, state.cols]")
    return np.asarray(page.evaluate("Array.from(state.mask)"), dtype=np.uint8).reshape(rows, cols) > 0


def _wait(page) -> None:
    page.wait_for_function("!state.busy", timeout=300000)


def _click(page, col: int, row: int, background: bool) -> float:
    """Seconds from the mouse press to the mask drawn (the page is idle again)."""
    x, y = page.evaluate(f"(() => {{ const b = document.getElementById('view').getBoundingClientRect();"
                         f" return [b.x + state.panX + ({col} + 0.5) * state.zoom, b.y + state.panY + ({row} + 0.5) * state.zoom]; }})()")
    if background:
        page.keyboard.down("Shift")
    start = time.perf_counter()
    page.mouse.click(x, y)  # the page marks itself busy in the mouse-down handler, before the request
    _wait(page)
    seconds = time.perf_counter() - start
    if background:
        page.keyboard.up("Shift")
    return seconds


def _direct_click(url: str, image: str, clicks: Dict) -> float:
    import requests

    start = time.perf_counter()
    response = requests.post(f"{url}/infer/munet_interactive", params={"image": image, "output": "image"},
                             data={"params": json.dumps(clicks)}, timeout=300)
    response.raise_for_status()
    return time.perf_counter() - start


def _direct_save(client, source: Path, mask: np.ndarray) -> float:
    """Seconds to store the same label as a SEG by STOW-RS and read it back, as the datastore does."""
    from munet.integrations.dicom_outputs import label_segmentation

    seg, display = label_segmentation(str(source), mask, None)
    start = time.perf_counter()
    client.store_instances([display, seg] if display is not None else [seg])
    client.retrieve_instance_metadata(seg.StudyInstanceUID, seg.SeriesInstanceUID, seg.SOPInstanceUID)
    return time.perf_counter() - start


def _summary(values: List[float]) -> Dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "mean_s": round(statistics.fmean(values), 3),
            "max_s": round(max(values), 3), "n": len(values)}


def main(bundle: str, datalist: str, images: int = 5, clicks: int = 3, output: str = "") -> Dict:
    import pydicom
    import torch
    from playwright.sync_api import sync_playwright

    from munet.cli.benchmark import capability
    from munet.integrations.pacs import make_client
    from research.interactive_noc import next_click
    from tests.servers import running_orthanc, running_server

    bundle_path = Path(bundle).resolve()
    if not (bundle_path / "models" / "model_interactive.pt").is_file():
        raise SystemExit(f"error: {bundle_path / 'models' / 'model_interactive.pt'} is missing: train it with munet train --interactive True")
    automatic = (bundle_path / "models" / "model.pt").is_file()  # without it the page serves clicks only: no (A)
    if not automatic:
        print(f"[benchmark] {bundle_path / 'models' / 'model.pt'} is missing: the automatic mask is not timed, clicks start from an empty mask")
    train = json.loads((bundle_path / "configs" / "train.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="munet-bench-annotate-"))
    timings: Dict[str, List[float]] = {"page_auto": [], "page_click": [], "page_click_own": [], "direct_click": [],
                                       "page_save": [], "direct_save": []}
    try:
        cases = _cases(Path(datalist).resolve(), images, work / "dicom")
        with running_orthanc(work / "orthanc") as orthanc:
            client = make_client(orthanc.dicomweb)
            client.store_instances([pydicom.dcmread(c["path"]) for c in cases.values()])
            env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "cache")}
            with running_server(orthanc.dicomweb, bundle_path, work / "server.log", env=env) as url, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                                     args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"])
                for n, (uid, case) in enumerate(cases.items(), 1):
                    # a page per image: a second goto to the same page with a new #hash only changes the hash, no reload
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.goto(f"{url}/annotate/#{uid}")
                    page.wait_for_function(f"state.id === {json.dumps(uid)} && !state.busy", timeout=300000)
                    if automatic:
                        start = time.perf_counter()
                        page.keyboard.press("a")
                        _wait(page)
                        timings["page_auto"].append(time.perf_counter() - start)
                    page.keyboard.press("c")
                    sent: Dict[str, List] = {"foreground": [], "background": []}
                    for _ in range(clicks):
                        click = next_click(_page_mask(page), case["truth"])
                        if click is None:
                            break
                        kind, (col, row) = click
                        sent[kind].append([col, row])
                        timings["page_click"].append(_click(page, col, row, kind == "background"))
                        timings["page_click_own"].append(float(page.evaluate("view.dataset.lastInferMs")) / 1000)
                        timings["direct_click"].append(_direct_click(url, uid, sent))
                    mask = _page_mask(page)
                    start = time.perf_counter()
                    page.keyboard.press("s")
                    _wait(page)
                    timings["page_save"].append(time.perf_counter() - start)
                    text = page.locator("#message").inner_text()
                    if not text.startswith("saved"):
                        raise SystemExit(f"error: the save of {case['name']} failed: {text}")
                    timings["direct_save"].append(_direct_save(client, case["path"], mask))
                    done = ", ".join(f"{s:.2f}" for s in timings["page_click"][-clicks:])
                    auto = f"auto {timings['page_auto'][-1]:.2f} s, " if automatic else ""
                    print(f"[{n}/{len(cases)}] {case['name']}: {auto}clicks {done} s, "
                          f"save {timings['page_save'][-1]:.2f} s", flush=True)
                    page.close()
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {name: _summary(values) for name, values in timings.items() if values}
    ratios = {"click: page / server alone": round(summary["page_click"]["median_s"] / summary["direct_click"]["median_s"], 2),
              "save: page / STOW-RS alone": round(summary["page_save"]["median_s"] / summary["direct_save"]["median_s"], 2)}
    result = {"machine": capability(), "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
              **{key: train.get(key) for key in ("backbone", "image_size", "inference_scales", "inference_flips", "precision")},
              "images": len(cases), "clicks_per_image": clicks, "summary": summary, "ratios": ratios}
    print(json.dumps(result, indent=1))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    fire.Fire(main)
