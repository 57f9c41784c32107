"""Real servers for the tests: a MONAI Label server serving a bundle folder, and a private Orthanc.

Both are installed by the test command (``scripts/setup_env.sh --with-monailabel`` and
``--with-pacs``); a test skips only when that install failed and wrote its reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest
import requests

#: the repository (this module is also imported as ``tests.servers`` by research/benchmark_annotation.py)
REPO_ROOT = Path(__file__).resolve().parents[1]
MONAILABEL_PYTHON = Path(os.environ.get("MONAILABEL_PYTHON", REPO_ROOT / ".venv-monailabel" / "bin" / "python"))
MONAILABEL_INSTALL_FAILED = REPO_ROOT / ".venv-monailabel" / "INSTALL_FAILED"
PACS_INSTALL_FAILED = REPO_ROOT / ".pacs" / "INSTALL_FAILED"
ORTHANC_PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so")


def skip_unless_monailabel() -> None:
    if MONAILABEL_INSTALL_FAILED.is_file():
        pytest.skip(f"monailabel could not be installed here: {MONAILABEL_INSTALL_FAILED.read_text().strip()[-300:]}")
    if not MONAILABEL_PYTHON.is_file():
        pytest.skip("monailabel is not installed: run `bash scripts/setup_env.sh --with-monailabel`")


def skip_unless_orthanc() -> None:
    orthanc = shutil.which("Orthanc") or (Path("/usr/sbin/Orthanc").is_file() or None)
    plugin = any(Path(p).is_file() for p in ORTHANC_PLUGINS)
    if orthanc and plugin:
        return
    if PACS_INSTALL_FAILED.is_file():
        pytest.skip(f"Orthanc could not be installed here: {PACS_INSTALL_FAILED.read_text().strip()[-300:]}")
    missing = "Orthanc" if not orthanc else "the Orthanc DICOMweb plugin"
    pytest.skip(f"{missing} is not installed: run `bash scripts/setup_env.sh --with-pacs` (as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running_server(studies, bundle: Path, log_path: Path, *options: str, headers: Dict | None = None,
                   port: Optional[int] = None, env: Optional[Dict[str, str]] = None) -> Iterator[str]:
    """The real MONAI Label server on ``studies`` (a folder or a DICOMweb root) serving ``bundle``
    (start script options ``options``), up and answering (to ``headers``); stopped after."""
    port = port or free_port()
    log = open(log_path, "a")
    process = subprocess.Popen(
        ["bash", str(REPO_ROOT / "scripts" / "start_monailabel.sh"), str(studies), "--bundle_path", str(bundle), "--port", str(port),
         *options],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MONAILABEL_PYTHON": str(MONAILABEL_PYTHON), **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=5, headers=headers).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"server not up after 300 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        yield url
    finally:
        _stop(process)
        log.close()


class Orthanc:
    """A private Orthanc with DICOMweb on ``storage`` and ``port``, that a test can stop and start
    again (same storage, same port: what a PACS restart looks like to its clients)."""

    def __init__(self, storage: Path, port: Optional[int] = None) -> None:
        skip_unless_orthanc()
        self.storage, self.port = storage, port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.base}/dicom-web"
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> str:
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.storage / "orthanc.log", "a")
        self.process = subprocess.Popen(["bash", str(REPO_ROOT / "scripts" / "start_orthanc.sh"), str(self.storage), "--http_port", str(self.port)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"{self.base}/system", timeout=2).ok and "dicom-web" in requests.get(f"{self.base}/plugins", timeout=2).json():
                    return self.dicomweb
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.time() > deadline:
                raise AssertionError(f"Orthanc did not start:\n{(self.storage / 'orthanc.log').read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


@contextlib.contextmanager
def running_orthanc(storage: Path, port: Optional[int] = None) -> Iterator[Orthanc]:
    """A started :class:`Orthanc` (its DICOMweb root is ``.dicomweb``); stopped after."""
    orthanc = Orthanc(storage, port)
    try:
        orthanc.start()
        yield orthanc
    finally:
        orthanc.stop()
