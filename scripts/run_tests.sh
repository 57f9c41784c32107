#!/usr/bin/env bash
# The test suite: make sure .venv (and the MONAI Label extra, .venv-monailabel) are installed
# (idempotent), then run pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup_env.sh
# the MONAI Label server tests skip, naming the reason, only if this install fails
bash scripts/setup_env.sh --with-monailabel || echo "warning: MONAI Label extra not installed; its server tests will skip" >&2
# Orthanc + DICOMweb plugin and dciodvfy (apt-get, as root); the PACS tests skip, naming the reason, only if this fails
bash scripts/setup_env.sh --with-pacs || echo "warning: Orthanc/dciodvfy not installed; the PACS tests will skip" >&2
.venv/bin/python -m pytest -q tests "$@"
