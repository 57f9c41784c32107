#!/usr/bin/env bash
# The test suite: make sure .venv is installed (idempotent), then run pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup_env.sh
.venv/bin/python -m pytest -q tests "$@"
