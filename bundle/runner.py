"""Running ``python -m monai.bundle`` commands from scripts (results, precision study), logged to files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

__all__ = ["REPO_ROOT", "bundle_argv", "run_bundle_command"]

#: the bundle root this package belongs to
REPO_ROOT = Path(__file__).resolve().parents[1]


def bundle_argv(*args: str) -> List[str]:
    """``python -m monai.bundle <args>`` with this interpreter: the one way every script and test spells it."""
    return [sys.executable, "-m", "monai.bundle", *[str(a) for a in args]]


def run_bundle_command(args: Sequence[str], log: Path, cwd: Path = REPO_ROOT) -> float:
    """Run ``python -m monai.bundle <args>`` offline, output to ``log``; returns its wall-clock seconds.

    Raises ``RuntimeError`` naming the log when the command fails.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as stream:
        code = subprocess.call(bundle_argv(*args), cwd=cwd, stdout=stream,
                               stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if code != 0:
        raise RuntimeError(f"monai.bundle {' '.join(list(args)[:2])} failed; see {log}")
    return time.perf_counter() - start
