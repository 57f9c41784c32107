#!/usr/bin/env bash
# Start the MONAI Label server for this bundle.
#   bash scripts/start_monailabel.sh STUDIES_DIR [--bundle_path DIR] [--host 127.0.0.1] [--port 8000] [--min_validation_images 10]
#                                                [--token_file FILE]
# With --token_file every request must send 'Authorization: Bearer <token>'; a --host other than
# 127.0.0.1 needs one (munet/integrations/monailabel_app/auth.py).
# STUDIES_DIR holds the images (PNG, JPEG or DICOM); labels are saved under STUDIES_DIR/labels/final.
# STUDIES_DIR may instead be a PACS's DICOMweb root (http(s)://...): the app's PACS datastore (an
# image per US instance, labels stored as DICOM SEG; munet/integrations/monailabel_app/dicomweb.py).
# The annotation page: http://HOST:PORT/annotate/
# Needs the optional extra: bash scripts/setup_env.sh --with-monailabel (creates .venv-monailabel).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${MONAILABEL_PYTHON:-$REPO/.venv-monailabel/bin/python}"
[ -x "$PY" ] || { echo "MONAI Label is not installed: run  bash scripts/setup_env.sh --with-monailabel" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: $0 STUDIES_DIR [--bundle_path DIR] [--host H] [--port P] [--min_validation_images N] [--token_file F]" >&2; exit 2; }
case "$1" in
  http://*|https://*) STUDIES="$1";;  # a DICOMweb server: passed to MONAI Label as it is
  *) STUDIES="$(cd "$1" && pwd)";;
esac
shift
BUNDLE="$REPO"; HOST=127.0.0.1; PORT=8000; MIN_VAL=10; TOKEN_FILE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle_path) BUNDLE="$(cd "$2" && pwd)"; shift 2;;
    --host) HOST="$2"; shift 2;;
    --port) PORT="$2"; shift 2;;
    --min_validation_images) MIN_VAL="$2"; shift 2;;
    --token_file) TOKEN_FILE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
# the web app is MONAI Label's own with its label, infer and train requests checked first
# (munet/integrations/monailabel_app/server.py: a clear 4xx instead of a stored bad label or a bare 500).
# The repo (munet package) and the pydicom 3 shim (compat/sitecustomize.py) for the server and
# the training subprocesses it starts; .dcm files are not in the datastore's default extensions
export PYTHONPATH="$REPO/munet/integrations/monailabel_app/compat:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export MONAI_LABEL_DATASTORE_FILE_EXT='["*.png", "*.jpg", "*.jpeg", "*.dcm"]'
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export MUNET_SERVER_HOST="$HOST" MUNET_SERVER_TOKEN_FILE="$TOKEN_FILE"
# a server reachable from other machines needs a token: one clear line before anything starts
"$PY" -c "import sys
from munet.integrations.monailabel_app.auth import auth_settings
try:
    auth_settings()
except ValueError as err:
    sys.exit(f'error: {err}')"
exec "$PY" -m monailabel.main start_server --app "$REPO/munet/integrations/monailabel_app" --studies "$STUDIES" \
  --host "$HOST" --port "$PORT" --conf bundle_path "$BUNDLE" --conf min_validation_images "$MIN_VAL" --uvicorn_app munet.integrations.monailabel_app.server:app
