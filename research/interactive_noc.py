"""Clicks to a good mask: NoC@85 / NoC@90 of the interactive model, the standard protocol.

For each lesion image of a split: start from the automatic model's mask (click 0; without
``--auto_bundle``, the interactive model's own mask with no clicks, which it is trained to give
as well: a session that could train only one of the two models); then, until
20 clicks, put one simulated click at the centre (the deepest point, by distance transform) of
the largest connected error region of the current mask: a foreground click where lesion was
missed, a background click where background was marked; the interactive model predicts again
from all clicks so far. NoC@k is the number of clicks to reach IoU k (0 when the automatic mask
already does; 20 when never). Dice after 1, 3 and 5 clicks is reported too.

Both models run exactly as the MONAI Label server runs them (``MUNetInferTask`` with the bundle
folder's configs: its preprocessing, test-time views and postprocessing), so the figures are the
served ones. Run it in the MONAI Label environment:

    PYTHONPATH=munet/integrations/monailabel_app/compat:. .venv-monailabel/bin/python -m research.interactive_noc \\
        --interactive_bundle runs/model_interactive --datalist DATA/datalist.json \\
        --output docs/results/interactive_noc.json [--auto_bundle runs/model] [--split test] [--limit 0]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import fire
import numpy as np
from PIL import Image
from scipy import ndimage

MAX_CLICKS = 20
TARGETS = (0.85, 0.90)
DICE_AFTER = (1, 3, 5)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return float(2 * np.logical_and(pred, truth).sum() / total) if total else 1.0


def next_click(pred: np.ndarray, truth: np.ndarray) -> Optional[Tuple[str, List[int]]]:
    """("foreground" | "background", [x, y]) at the centre of the largest connected error region.

    Missed lesion and false lesion are labelled apart: where a mask's edge crosses the truth's,
    the two touch, and one label over ``pred != truth`` would merge them into one region.
    """
    best: Optional[np.ndarray] = None
    for error in (truth & ~pred, pred & ~truth):
        regions, count = ndimage.label(error)
        if count:
            sizes = ndimage.sum(np.ones_like(regions), regions, index=range(1, count + 1))
            region = regions == (int(np.argmax(sizes)) + 1)
            best = region if best is None or region.sum() > best.sum() else best
    if best is None:
        return None
    depth = ndimage.distance_transform_edt(np.pad(best, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(depth.argmax()), depth.shape)
    return ("foreground" if truth[row, col] else "background"), [int(col), int(row)]


def _task(bundle: str, interactive: bool):
    from munet.integrations.monailabel_app.infer import MUNetInferTask

    task = MUNetInferTask(str(Path(bundle).resolve()), {}, interactive=interactive)
    if not task.is_valid():
        raise SystemExit(f"error: {bundle}: the {'interactive' if interactive else 'automatic'} model cannot be served: {task.refusal}")
    return task


def _predict(task, image: str, clicks: Optional[Dict[str, List[List[int]]]] = None) -> Tuple[np.ndarray, Dict]:
    request = {"image": image, "device": "cpu", **(clicks or {})}
    label, result = task(request)
    try:
        mask = np.asarray(Image.open(label)) > 0
    finally:
        os.unlink(label)
    return mask, result


def evaluate_image(auto, interactive, image: str, truth: np.ndarray) -> Dict:
    """IoU and Dice after each click (index 0: the automatic mask; ``auto`` None: the interactive model's, no clicks)."""
    mask, _ = _predict(auto or interactive, image)
    ious, dices, seconds = [iou(mask, truth)], [dice(mask, truth)], []
    clicks: Dict[str, List[List[int]]] = {"foreground": [], "background": []}
    while len(ious) <= MAX_CLICKS and (ious[-1] < max(TARGETS) or len(ious) <= max(DICE_AFTER)):
        click = next_click(mask, truth)
        if click is None:
            ious.append(ious[-1])
            dices.append(dices[-1])
            continue
        clicks[click[0]].append(click[1])
        start = time.perf_counter()
        mask, _ = _predict(interactive, image, clicks)
        seconds.append(time.perf_counter() - start)
        ious.append(iou(mask, truth))
        dices.append(dice(mask, truth))
    return {"iou": ious, "dice": dices, "seconds_per_click": float(np.mean(seconds)) if seconds else None}


def noc(ious: List[float], target: float) -> int:
    return next((k for k, value in enumerate(ious) if value >= target), MAX_CLICKS)


def main(interactive_bundle: str, datalist: str, output: str, auto_bundle: str = "", split: str = "test", limit: int = 0,
         trained_at: str = "") -> Dict:
    from munet.data.loading import load_image

    root = Path(datalist).resolve().parent
    items = [i for i in json.loads(Path(datalist).read_text())[split] if i.get("label")]
    items = [i for i in items if (np.asarray(load_image(str(root / i["label"]), mask=True)) > 0).any()]  # lesion images
    items = items[:limit] if limit else items
    auto, interactive = (_task(auto_bundle, False) if auto_bundle else None), _task(interactive_bundle, True)
    per_image = {}
    start = time.time()
    for n, item in enumerate(items, 1):
        truth = np.asarray(load_image(str(root / item["label"]), mask=True)) > 0
        truth = truth.reshape(truth.shape[:2])
        record = evaluate_image(auto, interactive, str(root / item["image"]), truth)
        per_image[Path(item["image"]).name] = record
        print(f"[{n}/{len(items)}] {Path(item['image']).name}: IoU {record['iou'][0]:.3f} -> {record['iou'][-1]:.3f} "
              f"in {len(record['iou']) - 1} clicks ({time.time() - start:.0f} s)", flush=True)
    summary = {f"NoC@{int(t * 100)}": float(np.mean([noc(r["iou"], t) for r in per_image.values()])) for t in TARGETS}
    summary.update({f"failed@{int(t * 100)}": int(sum(noc(r["iou"], t) >= MAX_CLICKS and r["iou"][-1] < t for r in per_image.values()))
                    for t in TARGETS})
    summary["dice_auto"] = float(np.mean([r["dice"][0] for r in per_image.values()]))
    summary.update({f"dice_after_{k}": float(np.mean([r["dice"][k] for r in per_image.values()])) for k in DICE_AFTER})
    seconds = [r["seconds_per_click"] for r in per_image.values() if r["seconds_per_click"] is not None]
    summary["seconds_per_click_mean"] = float(np.mean(seconds)) if seconds else None
    result = {"split": split, "images": len(per_image), "max_clicks": MAX_CLICKS, "summary": summary,
              "click_0": "automatic model" if auto_bundle else "interactive model, no clicks",
              "auto_bundle": str(auto_bundle) or None, "interactive_bundle": str(interactive_bundle), "trained_at": trained_at,
              "per_image": per_image}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    fire.Fire(main)
