"""The code version a training record carries: the commit only for the checkout the package runs from."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from munet.utils.code_version import code_version


def test_a_checkout_names_its_commit_and_a_copy_outside_any_repository_names_none(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    version = code_version()
    assert version["commit"] and len(version["commit"].split("-")[0]) == 40
    # the same package copied into a folder that is not its repository: no commit, not someone else's
    import munet

    copy = tmp_path / "site" / "munet"
    shutil.copytree(munet.__path__[0], copy, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", "from munet.utils.code_version import code_version; print(code_version()['commit'])"],
                         cwd=tmp_path / "site", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "None"
