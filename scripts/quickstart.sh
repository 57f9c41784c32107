#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then `munet demo` (synthetic ultrasound DICOM,
# training, evaluation with Dice/Sen/Spec/Acc/AUC, inference writing masks, SEG and SR) into runs/demo.
# Usage: bash scripts/quickstart.sh [munet demo options, e.g. --max_epochs 5]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup_env.sh
.venv/bin/munet demo "$@"
