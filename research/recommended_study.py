"""The "Recommended model" section of docs/results.md: the recipe, its peers at the same budget, its levers.

    python -m research.recommended_study --busi_dir ../shared/data/busi --output_dir runs/results --seeds "[0,1,2]"

Every row trains through ``research/train_recommended.py`` (the one command a user runs) into
``<output_dir>/recommended/<row>_seed<s>``, a bundle folder. Finished rows are cached in
``<docs_dir>/results/runs/recommended/<row>_seed<s>.json`` and never retrained, so the study can
be spread over several sessions; ``--rows`` picks which rows to train now and ``--report_only``
trains nothing. Rows:

- ``recommended``: the recipe (configs/train.json);
- ``lesions_only``: the same recipe on benign + malignant images only, without the presence head
  (what the recommended model's lesion Dice is held against);
- ``unet`` and ``paper_encoder``: the U-Net baseline (width 16) and MUNet with the paper's encoder
  (width 32), both from scratch, trained by the same recipe and budget. The U-Net is width 16
  because that is the width that fits the budget: its first level runs at full resolution, and
  at 224 px, batch 8, one AVX2 core, width 32 trains at 0.63 img/s against 2.09 for the
  recommended MUNet-EfficientNet-Lite0 and 2.26 for the paper encoder (width 16: 3.25), so 25
  epochs of it would take about five hours;
- ``lite1``: the recipe with ImageNet EfficientNet-Lite1 (a lever);
- ``bf16``: the recipe trained in bf16, what ``precision auto`` picks on a CPU with native bf16 (a lever;
  the recommended rows ran on AVX2 CPUs, where it picks fp32), seeds 0, 1 and 2 (``ROW_SEEDS``). Lite1 is
  compared with this row's same seeds when they trained on the same CPU in the same precision, else
  with the recommended model's;
- ``lesion_pooling``: the bf16 recipe with ``class_pooling: global+lesion`` (a lever beyond the paper), seeds 0 and 1;

and, from trained bundles without training: the recommended model without test-time flips, with
its best-validation-score weights (``models/model_best_val.pt``) instead of the last epoch's, the
ensemble of its seeds, and every ensemble of two bf16 seeds (what a native-bf16 CPU trains in 90
minutes), each ensemble with its own presence threshold chosen on validation (the record of seeds
0+1 served with seed 0's threshold stays as ``bf16_ensemble_seeds01_first_threshold.json``). The presence threshold rules are
compared on each run's ungated test pass
(``threshold_rules`` in its record). Records of earlier recipes stay in ``runs/recommended/recipe_v1``
(20 epochs, best validation score, lesion-recall threshold), ``recipe_v2`` (25 epochs, last
epoch, each normal training image listed once) and ``recipe_v3`` (the current training, served at
one scale), are shown as rows and measure levers.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import fire
import numpy as np

from research.study_common import case_metrics, fmt_mean_std, git_commit, normal_image_findings, relative_to
from research.train_recommended import predict_split, prepare_data, train_recommended, validation_presence_thresholds

#: row key -> (table name, train_recommended arguments)
ROWS: Dict[str, tuple] = {
    "recommended": ("MUNet-EfficientNet-Lite0 (ImageNet), presence head, trained with normals: **recommended**",
                    {"variant": "recommended"}),
    "lesions_only": ("same recipe, lesion images only, no presence head", {"variant": "lesions_only"}),
    "unet": ("U-Net baseline (width 16), same recipe", {"variant": "recommended", "overrides": {"arch": "unet", "base_channels": 16}}),
    "paper_encoder": ("MUNet (paper encoder, width 32), same recipe",
                      {"variant": "recommended", "overrides": {"backbone": "munet", "base_channels": 32}}),
    "lite1": ("MUNet-EfficientNet-Lite1 (ImageNet), same recipe", {"variant": "recommended", "overrides": {"backbone": "efficientnet_lite1"}}),
    "bf16": ("recommended, trained in bf16 (what `precision auto` picks on a CPU with native bf16)",
             {"variant": "recommended", "overrides": {"precision": "bf16"}}),
    "lesion_pooling": ("recommended in bf16, class head also pooling C5 inside the predicted lesion (`class_pooling: global+lesion`)",
                       {"variant": "recommended", "overrides": {"precision": "bf16", "class_pooling": "global+lesion"}}),
    "bf16_long": ("recommended in bf16, 40-epoch cosine schedule instead of 25 (what a CPU with native bf16 trains in about 45 minutes)",
                  {"variant": "recommended", "overrides": {"precision": "bf16", "max_epochs": 40, "early_stop_patience": 40}}),
}
#: the report's metric columns: record key -> column title
COLUMNS = {"dice": "Dice", "sensitivity": "Sen.", "specificity": "Spec.", "accuracy": "Acc.", "auc": "AUC",
           "normal_fpr": "FPR on normals", "normal_area": "area on normals"}
#: the issue's targets for the recommended model
TARGETS = {"dice": 0.80, "auc": 0.94, "normal_fpr": 0.15}
SECTION = "## Recommended model"
#: rows whose seeds differ from ``peer_seeds``: bf16 has two, what a native-bf16 CPU trains in the 90 minutes
ROW_SEEDS: Dict[str, Sequence[int]] = {"bf16": (0, 1, 2), "lesion_pooling": (0, 1), "bf16_long": (0, 1)}


class RecommendedStudy:
    """The rows' bundles under ``<output_dir>/recommended`` and their cached records."""

    def __init__(self, busi_dir: str, output_dir: str, docs_dir: str, limit_per_split: Optional[int] = None,
                 report_only: bool = False) -> None:
        self.busi_dir = busi_dir
        self.out = Path(output_dir).resolve() / "recommended"
        self.records_dir = Path(docs_dir).resolve() / "results" / "runs" / "recommended"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.limit = limit_per_split
        self.report_only = report_only
        self.data = self.out / "data"

    def _record_path(self, run: str) -> Path:
        return self.records_dir / f"{run}.json"

    def _cached(self, run: str) -> Optional[Dict]:
        path = self._record_path(run)
        if path.is_file():
            return json.loads(path.read_text())
        finished = self.out / run / "result.json"  # trained (e.g. by a background job) but not yet recorded
        if finished.is_file():
            record = json.loads(finished.read_text())
            path.write_text(json.dumps(record, indent=1))
            return record
        return None

    def row(self, key: str, seed: int, train: bool) -> Optional[Dict]:
        """The record of row ``key`` with ``seed``: cached, or trained now when ``train``."""
        run = f"{key}_seed{seed}"
        record = self._cached(run)
        if record is not None or self.report_only or not train:
            return record
        _, kwargs = ROWS[key]
        record = train_recommended(self.busi_dir, str(self.out / run), seed=seed, limit_per_split=self.limit,
                                   data_dir=str(self.data), **kwargs)
        record["row"] = key
        self._record_path(run).write_text(json.dumps(record, indent=1))
        return record

    def derived(self, run: str, bundles: List[Path], presence_on_validation: bool = False, **inference: object) -> Optional[Dict]:
        """An evaluation-only row (no flips, seed ensemble) from trained bundles, cached like the rows.

        ``presence_on_validation`` chooses the row's own presence threshold on the validation split
        (Youden, as train_recommended.py does for one model) instead of serving the first bundle's:
        an ensemble's averaged presence probability is not any member's."""
        record = self._cached(run)
        weights = [b / "models" / "model.pt" for b in bundles] + ([Path(str(inference["ckpt_path"]))] if "ckpt_path" in inference else [])
        if record is not None or self.report_only or not all(w.is_file() for w in weights):
            return record
        datalists = prepare_data(self.busi_dir, self.data, self.limit)
        content = json.loads(datalists["lesions_only"].read_text())
        first = bundles[0]
        recorded = {k: relative_to(v, self.out) if isinstance(v, str) else v for k, v in inference.items()}  # no machine paths
        record = {"name": run, "bundles": [b.name for b in bundles], "inference": recorded, "commit": git_commit()}
        values = dict(inference)
        if len(bundles) > 1:
            values.update(ensemble_bundles=[str(b) for b in bundles])
        if presence_on_validation:
            val_dir = self.out / "derived" / run / "validation"
            thresholds, record["validation_presence"] = validation_presence_thresholds(
                first, self.data, datalists["with_normals"], val_dir, val_dir.with_suffix(".log"), **values)
            values["presence_threshold"] = record["presence_threshold"] = thresholds["youden"]
            record["presence_threshold_rule"] = {"rule": "youden", "chosen_on": "validation, this row's own predictions"}
            print(f"[{run}] presence threshold {thresholds['youden']:.4f} chosen on validation", flush=True)
        for split in ("test", "normal_test"):
            pred_dir = self.out / "derived" / run / split
            seconds = predict_split(first, self.data, datalists["lesions_only"], split, pred_dir, pred_dir.with_suffix(".log"), **values)
            if split == "test":
                record.update(case_metrics(pred_dir, content["test"], Path(self.busi_dir)), infer_seconds=round(seconds, 1))
            else:
                record.update(normal_image_findings(pred_dir))
        self._record_path(run).write_text(json.dumps(record, indent=1))
        return record

    def seed_ensembles(self, key: str, records: List[Dict], members: int) -> List[Dict]:
        """Ensembles of ``members`` of row ``key``'s trained seeds, one record per set of seeds (e.g.
        ``bf16_ensemble_seeds01``), each with its presence threshold chosen on validation; sets neither
        cached nor evaluable are left out, and none with fewer seeds than ``members`` or under two."""
        if members < 2 or len(records) < members:
            return []
        found = []
        for chosen in itertools.combinations(records, members):
            run = f"{key}_ensemble_seeds" + "".join(str(r["seed"]) for r in chosen)
            record = self.derived(run, [self.out / f"{key}_seed{r['seed']}" for r in chosen], presence_on_validation=True)
            if record is not None:
                found.append(record)
        return found


def _commits(records: List[Dict]) -> str:
    """``commit abc1234`` (or ``commits a, b``) of the code that trained ``records``."""
    commits = sorted({str(r.get("commit", "?"))[:7] for r in records})
    return ("commit " if len(commits) == 1 else "commits ") + ", ".join(commits)


def _minutes_per_epoch(record: Dict) -> Optional[float]:
    """Training minutes per epoch; records of the first study give their epochs through their history."""
    epochs = record.get("epochs") or len(record.get("history", {}).get("val_dice", []))
    if "train_seconds" not in record or not epochs:
        return None
    return record["train_seconds"] / 60 / int(epochs)


def training_precision(record: Dict) -> Optional[str]:
    """The precision a run trained in: recorded by train_recommended.py since 2026-12-03; for earlier
    records resolved from the recipe's ``precision`` and the recorded CPU the way ``precision auto`` does."""
    if record.get("precision"):
        return str(record["precision"])
    asked, cpu = (record.get("recipe") or {}).get("precision"), record.get("cpu")
    if asked is None or not isinstance(cpu, dict):
        return None
    if asked != "auto":
        return str(asked)
    return "bf16" if cpu.get("native_bf16") else "fp32"


def run_conditions(record: Dict) -> str:
    """What a run's minutes depend on besides the model: threads, CPU kernel level and training precision
    (e.g. ``1 thr., AVX2 fp32``), or the GPU and precision for a run trained on one (``NVIDIA H200 bf16``);
    empty when the record names none of them."""
    if record.get("gpu"):
        return " ".join(x for x in (str(record["gpu"]), training_precision(record)) if x)
    cpu = record.get("cpu") if isinstance(record.get("cpu"), dict) else {}
    parts = [f"{record['threads']} thr." if "threads" in record else "",
             " ".join(x for x in (cpu.get("capability"), training_precision(record)) if x)]
    return ", ".join(x for x in parts if x)


def _per_run_or_mean(records: List[Dict], value: Callable[[Dict], Optional[float]], digits: int) -> str:
    """Mean ± std of ``value`` over the runs and their conditions (threads, CPU, precision); each run's value and
    conditions instead when they differ (a run on one core while another run holds the other is not comparable with
    a run alone on two, nor an fp32 run on an AVX2 CPU with a bf16 run on a CPU with native bf16)."""
    timed = [(r, v) for r, v in ((r, value(r)) for r in records) if v is not None]
    if not timed:
        return ""
    conditions = {run_conditions(r) for r, _ in timed}
    if len(conditions) > 1:
        return ", ".join(f"{v:.{digits}f} ({run_conditions(r) or '?'})" for r, v in timed)
    label = conditions.pop()
    return fmt_mean_std([v for _, v in timed], digits) + (f" ({label})" if label else "")


def _train_minutes(record: Dict) -> Optional[float]:
    return record["train_seconds"] / 60 if "train_seconds" in record else None


def table(rows: Dict[str, List[Dict]]) -> List[str]:
    """Markdown rows: mean ± std over seeds of each metric, training minutes and minutes per epoch."""
    titles = ["model", "seeds", *COLUMNS.values(), "train min", "min/epoch"]
    lines = ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    for name, records in rows.items():
        if not records:
            lines.append(f"| {name} | not run yet |" + " |" * (len(titles) - 2))
            continue
        cells = [",".join(str(r.get("seed", "-")) for r in records)]
        cells += [fmt_mean_std([r.get(k) for r in records]) for k in COLUMNS]
        cells.append(_per_run_or_mean(records, _train_minutes, 1) or "(evaluation only)")
        cells.append(_per_run_or_mean(records, _minutes_per_epoch, 2))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _delta(new: List[Dict], old: List[Dict], key: str) -> str:
    a = [r[key] for r in new if isinstance(r.get(key), (int, float))]
    b = [r[key] for r in old if isinstance(r.get(key), (int, float))]
    if not a or not b:
        return "n/a"
    return f"{np.mean(a) - np.mean(b):+.3f}"


def lever_table(levers: List[tuple]) -> List[str]:
    """One row per lever: (lever, with, without, note) -> Dice/AUC/FPR differences and minutes per epoch."""
    lines = ["| lever | compared with | ΔDice | ΔAUC | ΔFPR on normals | min/epoch with / without | note |",
             "|---|---|---|---|---|---|---|"]
    for lever, compared, with_, without, note in levers:
        if not with_ or not without:
            lines.append(f"| {lever} | {compared} | not run yet | | | | {note} |")
            continue
        epochs = [_per_run_or_mean(group, _minutes_per_epoch, 2) or "n/a" for group in (with_, without)]
        lines.append(f"| {lever} | {compared} | {_delta(with_, without, 'dice')} | {_delta(with_, without, 'auc')} | "
                     f"{_delta(with_, without, 'normal_fpr')} | {epochs[0]} / {epochs[1]} | {note} |")
    return lines


def threshold_rule_table(records: List[Dict]) -> List[str]:
    """Test Dice, FPR on normals and images gated for each presence threshold rule, mean ± std over runs."""
    runs = [r["threshold_rules"] for r in records if r.get("threshold_rules")]
    if not runs:
        return ["(no run with an ungated test pass yet)"]
    lines = ["| rule | threshold | Dice (lesion images) | FPR on normals | lesion images emptied | normal images marked |",
             "|---|---|---|---|---|---|"]
    for rule in runs[0]:
        outcomes = [run[rule] for run in runs if rule in run]
        cells = [fmt_mean_std([o["threshold"] for o in outcomes]) if outcomes[0]["threshold"] is not None else "-"]
        cells += [fmt_mean_std([o[k] for o in outcomes]) for k in ("dice", "normal_fpr")]
        cells += [", ".join(str(o[k]) for o in outcomes) for k in ("lesion_images_gated", "normal_images_marked")]
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return lines


def write_section(results_md: Path, section: str, heading: str = SECTION) -> None:
    """Put ``section`` into results.md: replace an earlier section under ``heading``, else insert it before Table I."""
    text = results_md.read_text() if results_md.is_file() else "# Results on BUSI (breast ultrasound)\n\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section.rstrip() + "\n" + (text[end:] if end >= 0 else "")
    elif "## Table I" in text:
        at = text.index("## Table I")
        text = text[:at] + section.rstrip() + "\n\n" + text[at:]
    else:
        text = text.rstrip() + "\n\n" + section
    results_md.write_text(text)


def main(busi_dir: str, output_dir: str = "runs/results", docs_dir: str = "docs", seeds: Sequence[int] = (0, 1, 2),
         rows: Sequence[str] = ("recommended", "lesions_only", "unet", "paper_encoder"), peer_seeds: Sequence[int] = (0,),
         limit_per_split: Optional[int] = None, report_only: bool = False) -> None:
    """Train the missing rows (``rows``: the recommended row with every seed in ``seeds``, the others
    with ``peer_seeds``), evaluate the derived rows, and write the section into ``<docs_dir>/results.md``."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown rows {unknown}: choose from {', '.join(ROWS)}")
    study = RecommendedStudy(busi_dir, output_dir, docs_dir, limit_per_split, report_only)
    seeds, peer_seeds = [int(s) for s in seeds], [int(s) for s in peer_seeds]

    def records(key: str, row_seeds: Sequence[int]) -> List[Dict]:
        found = [study.row(key, s, train=key in rows) for s in row_seeds]
        return [r for r in found if r is not None]

    results = {key: records(key, seeds if key == "recommended" else ROW_SEEDS.get(key, peer_seeds)) for key in ROWS}
    rec_bundles = [study.out / f"recommended_seed{r['seed']}" for r in results["recommended"]]
    no_flips = [r for r in (study.derived(f"recommended_no_flips_seed{r['seed']}", [b], inference_flips=False)
                            for r, b in zip(results["recommended"], rec_bundles)) if r is not None]
    best_val = [r for r in (study.derived(f"recommended_best_val_seed{r['seed']}", [b], ckpt_path=str(b / "models" / "model_best_val.pt"))
                            for r, b in zip(results["recommended"], rec_bundles)) if r is not None]
    ensemble = study.seed_ensembles("recommended", results["recommended"], members=len(results["recommended"]))
    bf16_ensemble = study.seed_ensembles("bf16", results["bf16"], members=2)
    long_ensemble = study.seed_ensembles("bf16_long", results["bf16_long"], members=2)
    first_threshold = study.records_dir / "bf16_ensemble_seeds01_first_threshold.json"  # served with seed 0's threshold
    bf16_ensemble_first = [json.loads(first_threshold.read_text())] if first_threshold.is_file() else []
    bf16_ensemble_01 = [r for r in bf16_ensemble if r.get("name") == "bf16_ensemble_seeds01"]
    old_lite0 = [json.loads(p.read_text()) for p in sorted((study.records_dir.parent).glob("munet_efficientnet_lite0__imagenet_seed*.json"))]
    def earlier(recipe: str, pattern: str) -> List[Dict]:
        return [json.loads(p.read_text()) for p in sorted((study.records_dir / recipe).glob(pattern))]

    recipe_v1 = earlier("recipe_v1", "recommended_seed*.json")
    recipe_v2 = earlier("recipe_v2", "recommended_seed*.json")
    v2_ensemble = earlier("recipe_v2", "recommended_ensemble.json")
    recipe_v3 = earlier("recipe_v3", "recommended_seed*.json")
    v3_seeds = {x.get("seed") for x in recipe_v3}
    v2_same_seeds = [r for r in recipe_v2 if r.get("seed") in v3_seeds]
    rec_seeds = {x.get("seed") for x in results["recommended"]}
    v3_same_seeds = [r for r in recipe_v3 if r.get("seed") in rec_seeds]

    train_values = json.loads((Path(__file__).resolve().parents[1] / "configs" / "train.json").read_text())
    recipe = {k: train_values[k] for k in ("backbone", "pretrained", "image_size", "presence_head", "precision", "max_epochs",
                                           "inference_scales", "inference_flips", "model_selection", "normal_repeats")}
    rec = results["recommended"]
    def same_seeds(group: List[Dict], like: List[Dict]) -> List[Dict]:
        return [r for r in group if r.get("seed") in {x.get("seed") for x in like}]

    bf16_peer = same_seeds(results["bf16"], results["lite1"])
    same_machine = bool(results["lite1"] and bf16_peer) and run_conditions(results["lite1"][0]) == run_conditions(bf16_peer[0])
    lite0_peer = bf16_peer if same_machine else same_seeds(rec, results["lite1"])  # Lite1 against Lite0 on the same CPU and precision
    lines = [SECTION, "",
             "Made by `python -m research.recommended_study --busi_dir ../shared/data/busi` from runs of "
             "`python -m research.train_recommended` (recipe: `configs/train.json`'s defaults: "
             + ", ".join(f"{k} {v}" for k, v in recipe.items()) + "). Test split: benign + malignant images for Dice, "
             "Sen, Spec, Acc, AUC (malignant positive, threshold 0.5); the normal test images for the false-positive rate "
             "(share of normal images with any lesion pixel). The presence threshold is chosen on the validation split "
             "(lesion + normal images), never on the test split. Targets: "
             + ", ".join(f"{COLUMNS[k]} {'<=' if k == 'normal_fpr' else '>='} {v}" for k, v in TARGETS.items()) + ".", ""]
    named = {ROWS[k][0]: v for k, v in results.items()}
    named["recommended without test-time flips"] = no_flips
    named["recommended, best validation score's weights instead of the last epoch's"] = best_val
    named["first recipe (20 epochs, best validation score, lesion-recall threshold; commit 8bb89a9)"] = recipe_v1
    named["second recipe (25 epochs, last epoch, normal training images listed once; commit ce67db8)"] = recipe_v2
    named["ensemble of the second recipe's two seeds"] = v2_ensemble
    named["third recipe (the same trained models, single-scale inference; " + _commits(recipe_v3) + ")"] = recipe_v3
    if ensemble:
        named[f"ensemble of the recommended seeds ({len(rec_bundles)}; "
              + ("presence threshold chosen on its validation predictions)" if "validation_presence" in ensemble[0]
                 else "first seed's presence threshold)")] = ensemble
    if bf16_ensemble:
        pairs = ", ".join("+".join(b.replace("bf16_seed", "") for b in r["bundles"]) for r in bf16_ensemble)
        named[f"ensembles of two bf16 seeds (seeds {pairs}; each with its presence threshold chosen on its validation "
              "predictions): what a CPU with native bf16 trains within 90 minutes"] = bf16_ensemble
    named["ensemble of bf16 seeds 0+1 served with seed 0's presence threshold"] = bf16_ensemble_first
    if long_ensemble:
        named["ensemble of the two 40-epoch bf16 seeds (presence threshold chosen on its validation predictions)"] = long_ensemble
    lines += table(named)
    if rec:
        met = {k: float(np.mean([r[k] for r in rec if isinstance(r.get(k), (int, float))])) for k in TARGETS}
        verdict = ", ".join(f"{COLUMNS[k]} {met[k]:.3f} ({'met' if (met[k] <= v if k == 'normal_fpr' else met[k] >= v) else 'missed'})"
                            for k, v in TARGETS.items())
        lesion_only = results["lesions_only"]
        if lesion_only:
            gap = met["dice"] - float(np.mean([r["dice"] for r in lesion_only]))
            verdict += f"; lesion Dice {gap:+.3f} against the lesion-only recipe (target >= -0.01: {'met' if gap >= -0.01 else 'missed'})"
        thresholds = ", ".join(f"{r['presence_threshold']:.3f}" for r in rec if "presence_threshold" in r)
        lines += ["", f"Recommended model, mean over seeds {[r['seed'] for r in rec]}: {verdict}. Presence thresholds "
                  f"chosen on validation: {thresholds}. Commits: {', '.join(sorted({r.get('commit', '?')[:12] for r in rec}))}; "
                  f"Trained with (threads, CPU, precision): {'; '.join(run_conditions(r) or '?' for r in rec)}."]
    lines += ["", "### Levers (each measured against the same model without it)", ""]
    lines += lever_table([
        ("224 px, presence head + normals, flips (the recipe)", "Table I's EfficientNet-Lite0 row (128 px, 20 epochs, lesion images only)",
         rec, old_lite0, "different image size, data and test-time flips at once"),
        ("test-time multi-scale masks (192, 224, 256 px; class and presence at 224 px)",
         "the same trained models with one scale (the third recipe)", rec, v3_same_seeds, "inference only: 6 forward passes instead of 2"),
        ("test-time horizontal flips", "the same recommended models without flips", rec, no_flips, "inference only, half the forward passes"),
        ("model selection: last epoch", "the best validation score's (Dice + AUC) weights of the same runs", rec, best_val,
         "which checkpoint is published"),
        ("25-epoch schedule, last epoch, Youden threshold", "the first recipe (20 epochs, best validation score, lesion-recall threshold)",
         recipe_v2, recipe_v1, "second recipe against the first; +25 % training time"),
        ("normal training images listed twice", "the second recipe (each listed once), same seeds; both single-scale",
         recipe_v3, v2_same_seeds, "+19 % iterations per epoch"),
        ("presence head + normal images in training", "same recipe on lesion images only", rec, results["lesions_only"],
         "FPR is the point; Dice is on lesion images"),
        ("bf16 autocast in training (`precision auto` on a CPU with native bf16)", "the recommended model in fp32 (an AVX2 CPU)",
         results["bf16"], same_seeds(rec, results["bf16"]), "same seeds; different CPUs, so min/epoch compare machines as well as precisions"),
        ("EfficientNet-Lite1 instead of Lite0", "the recommended model trained the same way (same CPU and precision)"
         if same_machine else "the recommended model", results["lite1"], lite0_peer, "same seeds"),
        ("class head also pooling C5 inside the predicted lesion (`class_pooling: global+lesion`)",
         "the bf16 recommended model (same seeds, same CPU kind and precision)", results["lesion_pooling"],
         same_seeds(results["bf16"], results["lesion_pooling"]),
         "beyond the paper; min/epoch compare sessions too: bf16 seeds 0-1 trained about 30 % slower, in an earlier "
         "session, than seed 2 and this row (results/recommended_discussion.md)"),
        ("40-epoch cosine schedule instead of 25", "the bf16 recommended model (25 epochs; same seeds, same CPU kind and precision)",
         results["bf16_long"], same_seeds(results["bf16"], results["bf16_long"]),
         "+60 % epochs; min/epoch compare sessions too (bf16 seeds 0-1 of 25 epochs trained in an earlier, slower session)"),
        ("ensemble of the two 40-epoch bf16 seeds", "the same 40-epoch models alone", long_ensemble, results["bf16_long"],
         "inference cost x 2"),
        ("ensemble of two bf16 seeds (every pair)", "the same bf16 models alone", bf16_ensemble, results["bf16"], "inference cost x 2"),
        ("ensemble presence threshold chosen on the ensemble's validation predictions", "seed 0's threshold, same two models",
         bf16_ensemble_01, bf16_ensemble_first, "inference only"),
        ("ensemble of seeds", "the single models of the same recipe", ensemble or v2_ensemble, rec if ensemble else recipe_v2,
         "inference cost x seeds" + ("" if ensemble else "; second recipe's two seeds")),
    ])
    lines += ["", "### Presence threshold rules (each run's test images predicted once without the gate)", ""]
    lines += threshold_rule_table(rec)
    if recipe_v2:
        lines += ["", "The second recipe (normal training images listed once; its \"no gate\" pass was gated by the served "
                  "threshold, because MONAI's bundle CLI dropped the None override, so its rows show the served gate):", ""]
        lines += threshold_rule_table(recipe_v2)
    lines += ["", "Speed levers measured by `munet/cli/benchmark.py` (docs/benchmarks.md): `precision auto` (bf16 only on CPUs "
              "with native bf16, fp32 elsewhere; what bf16 training does to the recipe's figures is the bf16 row above) and "
              "plain tensors into the network instead of MetaTensors (no figure changes)."]
    discussion = Path(docs_dir) / "results" / "recommended_discussion.md"
    if discussion.is_file():
        lines += ["", discussion.read_text().strip()]
    section = "\n".join(lines) + "\n"
    write_section(Path(docs_dir) / "results.md", section)
    print(section)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


if __name__ == "__main__":
    fire.Fire(main)
