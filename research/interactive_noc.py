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
        --output docs/results/interactive_noc.json [--auto_bundle runs/model] [--split test] [--limit 0] \\
        [--results_md docs/results.md]
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


SECTION = "## Interactive model: clicks to a good mask"


def _training(bundle: str, record_name: str) -> str:
    """"N min (compute, precision, threads)" from a bundle's training record, or "" without one."""
    path = Path(bundle) / record_name
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    machine = record.get("trained_on")
    where = f" ({machine['compute']}, {machine['precision']}, {machine['threads']} threads)" if machine else ""
    return f"{record['train_seconds'] / 60:.1f} min{where}"


def section(result: Dict, command: str) -> str:
    """The results.md section of a run: the table, the aim, how it was made."""
    import torch

    from munet.cli.benchmark import capability

    s, cap = result["summary"], result["max_clicks"]
    trained = _training(result["interactive_bundle"], "train_interactive_record.json")
    auto = _training(result["auto_bundle"], "train_record.json") if result["auto_bundle"] else ""
    lines = [SECTION, "",
             f"Made by `{command}`, on {capability()}, {torch.get_num_threads()} threads. "
             f"Test split: {result['images']} lesion images. Each simulated click goes to "
             "the centre (deepest point) of the largest connected error region of the current mask, missed lesion and false "
             "lesion counted apart: a foreground click on a miss, a background click on a false mark; the interactive model then "
             f"predicts again with all clicks so far, as the MONAI Label server serves it. Click 0: the {result['click_0']}."
             f" NoC@k: clicks to IoU >= k, {cap} for an image that never gets there (counted as failed).", "",
             "| images | NoC@85 | NoC@90 | failed@85 | failed@90 | Dice, click 0 | after 1 click | after 3 | after 5 | s per click |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| {result['images']} | {s['NoC@85']:.2f} | {s['NoC@90']:.2f} | {s['failed@85']} | {s['failed@90']} | {s['dice_auto']:.3f} | "
             f"{s['dice_after_1']:.3f} | {s['dice_after_3']:.3f} | {s['dice_after_5']:.3f} | {s['seconds_per_click_mean']:.2f} |", "",
             f"Aim (issue #30): NoC@90 <= 3: {'met' if s['NoC@90'] <= 3 else 'missed'}. Interactive model: `munet train --busi_dir "
             f"BUSI --output_dir runs/model_interactive --interactive True`"
             + (f", trained in {trained}" if trained else "") + (f" at commit {result['trained_at']}" if result["trained_at"] else "")
             + (f"; automatic model: `munet train --busi_dir BUSI --output_dir runs/model`, trained in {auto}" if auto else "")
             + ". Per image IoU and Dice after each click: `results/interactive_noc.json`."]
    return "\n".join(lines) + "\n"


def main(interactive_bundle: str, datalist: str, output: str, auto_bundle: str = "", split: str = "test", limit: int = 0,
         trained_at: str = "", results_md: str = "") -> Dict:
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
              "click_0": "automatic model's mask" if auto_bundle else "interactive model's mask without clicks",
              "auto_bundle": str(auto_bundle) or None, "interactive_bundle": str(interactive_bundle), "trained_at": trained_at,
              "per_image": per_image}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    if results_md:
        from research.recommended_study import write_section

        command = ("python -m research.interactive_noc --interactive_bundle runs/model_interactive --datalist DATA/datalist.json"
                   + (" --auto_bundle runs/model" if auto_bundle else "") + f" --split {split}")
        write_section(Path(results_md), section(result, command), SECTION)
    return summary


if __name__ == "__main__":
    fire.Fire(main)
