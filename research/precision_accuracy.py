"""What the CPU fast path (bf16 autocast + channels-last) costs in accuracy, on the demo data.

    python -m research.precision_accuracy --epochs 20 --output_dir runs/precision

Trains the paper recipe (configs/recipes/paper.json) twice from the same seed, in fp32 and with ``--precision bf16
--channels_last True``, evaluates both on the test split in the precision they were trained in,
and also evaluates the fp32 model with bf16 inference; prints test Dice and AUC and training time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fire

from munet.engines.bundle_folder import run_bundle_command

REPO = Path(__file__).resolve().parents[1]
PAPER = "['configs/train.json','configs/recipes/paper.json']"
PAPER_EVAL = "['configs/train.json','configs/recipes/paper.json','configs/evaluate.json']"


def main(epochs: int = 20, output_dir: str = "runs/precision", dataset_dir: str = "") -> None:
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = Path(dataset_dir).resolve() if dataset_dir else out / "demo_data"
    if not dataset_dir:
        subprocess.check_call([sys.executable, "-m", "munet.cli", "data", "demo", "--output_dir", str(data), "--image_format", "dicom"], cwd=REPO)
    meta = ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    rows = []
    for name, switches in (("fp32", []), ("bf16+channels_last", ["--precision", "bf16", "--channels_last", "True"])):
        root = out / name
        common = ["--bundle_root", str(root), "--dataset_dir", str(data), *switches]
        seconds = run_bundle_command(["run", "training", "--config_file", PAPER, *meta, *common, "--max_epochs", str(epochs)],
                                     root.with_suffix(".train.log"))
        run_bundle_command(["run", "evaluating", "--config_file", PAPER_EVAL, *meta, *common], root.with_suffix(".eval.log"))
        metrics = json.loads((root / "eval" / "metrics.json").read_text())
        rows.append((name, name, metrics, seconds))
        if name == "fp32":  # the fp32-trained model, evaluated with bf16 inference
            alt = ["--bundle_root", str(root), "--dataset_dir", str(data), "--output_dir", str(root / "eval_bf16"),
                   "--precision", "bf16", "--channels_last", "True"]
            run_bundle_command(["run", "evaluating", "--config_file", PAPER_EVAL, *meta, *alt], root.with_suffix(".eval_bf16.log"))
            rows.append(("fp32", "bf16+channels_last", json.loads((root / "eval_bf16" / "metrics.json").read_text()), None))
    lines = [f"Demo data ({data}), {epochs} epochs, seed 0, test split.", "",
             "| trained in | evaluated in | test Dice | test AUC | training time (s) |", "|---|---|---|---|---|"]
    for trained, evaluated, metrics, seconds in rows:
        auc = metrics.get("val_auc")
        auc_text, seconds_text = "None" if auc is None else f"{auc:.4f}", "" if seconds is None else f"{seconds:.0f}"
        lines.append(f"| {trained} | {evaluated} | {metrics['val_dice']:.4f} | {auc_text} | {seconds_text} |")
    table = "\n".join(lines)
    print(table)
    (out / "precision_accuracy.md").write_text(table + "\n")


if __name__ == "__main__":
    fire.Fire(main)
