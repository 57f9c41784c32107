#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the bundle's pinned dependencies (runtime + tests).
# Safe to re-run. Usage: bash scripts/setup_env.sh [--with-monailabel | --with-pacs | --with-browser]
#
# --with-monailabel also creates .venv-monailabel: the same pinned runtime plus monailabel 0.8.5
# for the MONAI Label app (munet/integrations/monailabel_app). It is a separate environment because
# monailabel's dependency pydicom-seg pins numpy<2 and jsonschema<4, which the lean base install
# does not need; building sam2 from source makes it take about 5 minutes. If it fails, the reason
# is written to .venv-monailabel/INSTALL_FAILED (the server tests skip with it) and the script
# exits non-zero.
#
# --with-pacs installs only the system tools of the PACS tests (nothing in .venv): Orthanc with its
# DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb) and dciodvfy (dicom3tools), with
# apt-get when a tool is missing and the user is root; about 30 s each. Otherwise the reason is
# written to .pacs/INSTALL_FAILED (the Orthanc and dciodvfy tests skip naming it) and the script
# exits non-zero. The tests start their own Orthanc (scripts/start_orthanc.sh) on free ports; a
# system service the package may start (port 8042/4242) is neither used nor touched.
#
# --with-browser installs Debian's chromium for the annotation page's browser tests (Playwright,
# from PyPI in requirements-dev.txt, drives it through its executable path: no browser download),
# with apt-get when missing and the user is root; about a minute. Otherwise the reason is written
# to .browser/INSTALL_FAILED (those tests skip naming it) and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

install_pacs() {
  mkdir -p .pacs
  rm -f .pacs/INSTALL_FAILED
  local need=() reason=""
  { command -v Orthanc >/dev/null || [ -x /usr/sbin/Orthanc ]; } || need+=(orthanc)
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || [ -f /usr/lib/orthanc/plugins/libOrthancDicomWeb.so ] \
    || need+=(orthanc-dicomweb)
  command -v dciodvfy >/dev/null || need+=(dicom3tools)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      reason="not root, so apt-get cannot install ${need[*]}; as root run: apt-get install -y ${need[*]}"
    elif ! command -v apt-get >/dev/null; then
      reason="no apt-get here (not Debian/Ubuntu): install ${need[*]} (Orthanc with its DICOMweb plugin; dicom3tools) another way"
    else
      echo "installing ${need[*]} with apt-get (about 30 s; log: .pacs/install.log)"
      if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"; } > .pacs/install.log 2>&1; then
        reason="apt-get install ${need[*]} failed: $(grep -v '^\s*$' .pacs/install.log | tail -3 | tr '\n' ' ')"
      fi
    fi
  fi
  if [ -n "$reason" ]; then
    echo "$reason" > .pacs/INSTALL_FAILED
    echo "warning: $reason" >&2
    return 1
  fi
  echo "PACS tools ready: $( (command -v Orthanc || echo /usr/sbin/Orthanc) | head -1), DICOMweb plugin, $(command -v dciodvfy)"
}

install_browser() {
  mkdir -p .browser
  rm -f .browser/INSTALL_FAILED
  local reason=""
  if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      reason="not root, so apt-get cannot install chromium; as root run: apt-get install -y chromium"
    elif ! command -v apt-get >/dev/null; then
      reason="no apt-get here (not Debian/Ubuntu): install chromium another way"
    else
      echo "installing chromium with apt-get (about a minute; log: .browser/install.log)"
      if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } > .browser/install.log 2>&1; then
        reason="apt-get install chromium failed: $(grep -v '^\s*$' .browser/install.log | tail -3 | tr '\n' ' ')"
      fi
    fi
  fi
  if [ -n "$reason" ]; then
    echo "$reason" > .browser/INSTALL_FAILED
    echo "warning: $reason" >&2
    return 1
  fi
  echo "browser ready: $(chromium --version 2>/dev/null | head -1)"
}

if [ "${1:-}" = "--with-browser" ]; then
  install_browser
  exit $?
fi

if [ "${1:-}" = "--with-pacs" ]; then
  install_pacs
  exit $?
fi

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
# the repository itself, editable (pyproject.toml): scripts and tests import `bundle` without sys.path edits
.venv/bin/python -m pip install --quiet --no-deps -e .
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
  PYTHONPATH=munet/integrations/monailabel_app/compat .venv-monailabel/bin/python -c "import monailabel.interfaces.app; print('monailabel', __import__('monailabel').__version__, 'ready in .venv-monailabel')"
fi
