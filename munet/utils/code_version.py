"""Which code produced a result: the installed package's version and, from a git checkout, its commit.

A training record without it cannot be matched to the commit that made it (the BUSI records of
#30 had it added by hand). ``-dirty`` marks a checkout whose tracked files differ from the commit.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

__all__ = ["code_version"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", *args], cwd=_PACKAGE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> Dict[str, Optional[str]]:
    """``{"package": version or None, "commit": sha[-dirty] or None}``."""
    try:
        version: Optional[str] = metadata.version("munet-ultrasound-bundle")
    except metadata.PackageNotFoundError:
        version = None
    top = _git("rev-parse", "--show-toplevel")  # an installed copy inside some other repository is not that repository
    sha = _git("rev-parse", "HEAD") if top and Path(top).resolve() == _PACKAGE_ROOT else None
    if sha and _git("status", "--porcelain", "--untracked-files=no"):
        sha += "-dirty"
    return {"package": version, "commit": sha}
