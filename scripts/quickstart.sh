#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, generate the demo data, train, evaluate, infer.
# Usage: bash scripts/quickstart.sh [EPOCHS]   (default 20 epochs, about 5 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-20}
export HF_HUB_OFFLINE=1

bash scripts/setup_env.sh
PY=.venv/bin/python

echo "== 1/4 demo data: synthetic ultrasound DICOM (grayscale, RGB, JPEG), deterministic =="
$PY scripts/make_demo_data.py --output_dir demo_data --image_format dicom

echo "== 2/4 training for $EPOCHS epochs =="
$PY -m monai.bundle run training --meta_file configs/metadata.json --config_file configs/train.json \
    --logging_file configs/logging.conf --dataset_dir demo_data --max_epochs "$EPOCHS"

echo "== 3/4 evaluation on the test split (Dice, Sen, Spec, Acc, AUC) =="
$PY -m monai.bundle run evaluating --meta_file configs/metadata.json \
    --config_file "['configs/train.json','configs/evaluate.json']" --logging_file configs/logging.conf \
    --dataset_dir demo_data

echo "== 4/4 inference: masks, overlays and class probabilities =="
$PY -m monai.bundle run inferring --meta_file configs/metadata.json --config_file configs/inference.json \
    --logging_file configs/logging.conf --dataset_dir demo_data

echo "done: metrics in eval/metrics.json, predictions in eval/inference/ (predictions.csv, *_mask.png, *_overlay.png; *_seg.dcm + *_sr.dcm for DICOM inputs)"
