#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the bundle's pinned dependencies (runtime + tests).
# Safe to re-run. Usage: bash scripts/setup_env.sh [--with-monailabel]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "Python 3.10+ is required"'

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt caps torch/torchvision at the pair pip finds locally (any other torch pulls gigabytes)
.venv/bin/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt
if [ "${1:-}" = "--with-monailabel" ]; then
  .venv/bin/python -m pip install --quiet -c constraints.txt -r requirements-monailabel.txt
fi

# pip must not have swapped torch for another version
.venv/bin/python - <<'PY'
import torch, torchvision
assert torch.__version__.split("+")[0] == "2.14.1", f"torch {torch.__version__} installed, expected 2.14.1"
assert torchvision.__version__.split("+")[0] == "0.29.1", f"torchvision {torchvision.__version__}, expected 0.29.1"
import monai
print(f"environment ready: torch {torch.__version__}, torchvision {torchvision.__version__}, monai {monai.__version__}")
PY
