#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the bundle's pinned dependencies (runtime + tests).
# Safe to re-run. Usage: bash scripts/setup_env.sh [--with-monailabel]
#
# --with-monailabel also creates .venv-monailabel: the same pinned runtime plus monailabel 0.8.5
# for the MONAI Label app (bundle/monailabel_app). It is a separate environment because
# monailabel's dependency pydicom-seg pins numpy<2 and jsonschema<4, which the lean base install
# does not need; building sam2 from source makes it take about 5 minutes. If it fails, the reason
# is written to .venv-monailabel/INSTALL_FAILED (the server tests skip with it) and the script
# exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "Python 3.10+ is required"'

check_torch() {  # pip must not have swapped torch for another version
  "$1" - <<'PY'
import torch, torchvision
assert torch.__version__.split("+")[0] == "2.14.1", f"torch {torch.__version__} installed, expected 2.14.1"
assert torchvision.__version__.split("+")[0] == "0.29.1", f"torchvision {torchvision.__version__}, expected 0.29.1"
import monai
print(f"environment ready: torch {torch.__version__}, torchvision {torchvision.__version__}, monai {monai.__version__}")
PY
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt caps torch/torchvision at the pair pip finds locally (any other torch pulls gigabytes)
.venv/bin/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt
check_torch .venv/bin/python

if [ "${1:-}" = "--with-monailabel" ]; then
  echo "installing the MONAI Label extra into .venv-monailabel (about 5 minutes the first time)"
  [ -x .venv-monailabel/bin/python ] || "$PYTHON" -m venv .venv-monailabel
  rm -f .venv-monailabel/INSTALL_FAILED
  if ! .venv-monailabel/bin/python -m pip install --quiet --upgrade pip > .venv-monailabel/install.log 2>&1 \
     || ! .venv-monailabel/bin/python -m pip install --quiet -c constraints.txt -r requirements-monailabel.txt >> .venv-monailabel/install.log 2>&1; then
    { echo "pip install -r requirements-monailabel.txt failed:"; grep -v "is ignored" .venv-monailabel/install.log | tail -5; } > .venv-monailabel/INSTALL_FAILED
    cat .venv-monailabel/INSTALL_FAILED >&2
    exit 1
  fi
  check_torch .venv-monailabel/bin/python
  PYTHONPATH=bundle/monailabel_app/compat .venv-monailabel/bin/python -c "import monailabel.interfaces.app; print('monailabel', __import__('monailabel').__version__, 'ready in .venv-monailabel')"
fi
