"""Shared pytest setup: import the bundle from the repo root, stay offline, keep CPU use small."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT in sys.path:
    sys.path.remove(_REPO_ROOT)
sys.path.insert(0, _REPO_ROOT)

# timm and huggingface_hub must never try the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(2)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds a large timm backbone (seconds each on CPU); deselect with -m 'not slow'"
    )
