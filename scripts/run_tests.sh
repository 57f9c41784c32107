#!/usr/bin/env bash
# The test suite: install .venv, the MONAI Label extra (.venv-monailabel), the PACS tools
# (Orthanc, dciodvfy) and the browser (chromium) when missing (idempotent), check lint (ruff), then run
# pytest (listing its 25 slowest tests). A failed install fails the run: the server and PACS tests must run, not skip.
# Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
bash scripts/setup_env.sh
bash scripts/setup_env.sh --with-monailabel
bash scripts/setup_env.sh --with-pacs
bash scripts/setup_env.sh --with-browser
.venv/bin/ruff check munet research tests
.venv/bin/python -m pytest -q --durations=25 tests "$@"  # the slowest tests, to keep CI under 30 minutes
