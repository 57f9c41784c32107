"""A bundle folder's configs, read and run the one way: ``train.json`` holds every value, the workflow's file merges over it.

``inference.json`` and ``evaluate.json`` are overlays of ``train.json`` (as MONAI's own
``--config_file "['configs/train.json','configs/inference.json']"`` merges them), so the network,
preprocessing and serving values are written once. Code that serves another bundle folder (an
ensemble member, MONAI Label, packaging) reads it here, with that folder as ``bundle_root``; the
``munet`` command, the PACS client and the studies run its workflows with :func:`workflow_argv`
and :func:`run_bundle_command` (``python -m monai.bundle run ...``, offline).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["REPO_ROOT", "WORKFLOW_OVERLAYS", "config_files", "read_bundle_config", "bundle_argv", "config_arg", "override_args",
           "workflow_argv", "run_bundle_command"]

#: the bundle root this package belongs to (the repository)
REPO_ROOT = Path(__file__).resolve().parents[2]

#: the overlay each workflow merges over train.json
WORKFLOW_OVERLAYS = {"training": (), "evaluating": ("evaluate.json",), "inferring": ("inference.json",)}

PathLike = Union[str, Path]


def config_files(bundle_root: PathLike, *overlays: str) -> List[str]:
    """``<bundle_root>/configs/train.json`` followed by each overlay (``"inference.json"``, ...); all must exist."""
    configs = Path(bundle_root) / "configs"
    files = [configs / "train.json", *[configs / name for name in overlays]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"bundle folder {bundle_root}: {', '.join(missing)} not found")
    return [str(f) for f in files]


def read_bundle_config(bundle_root: PathLike, overlays: Sequence[str] = ("inference.json",)):
    """A ``ConfigParser`` of ``bundle_root``'s train.json merged with ``overlays``, ``bundle_root`` set."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(bundle_root, *overlays))
    parser["bundle_root"] = str(bundle_root)
    return parser


def bundle_argv(*args: str) -> List[str]:
    """``python -m monai.bundle <args>`` with this interpreter: the one way every script and test spells it."""
    return [sys.executable, "-m", "monai.bundle", *[str(a) for a in args]]


def config_arg(files: Sequence[str | Path]) -> str:
    """Config files as MONAI's command line takes a list: ``['a.json','b.json']``."""
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def override_args(values: Mapping[str, Any]) -> List[str]:
    """``--key value`` pairs for ``python -m monai.bundle`` (lists and dicts as JSON).

    ``None`` is written ``$None`` (a config expression that evaluates to None): MONAI's bundle CLI
    drops overrides whose value is None (``monai.bundle.scripts.update_kwargs(ignore_none=True)``),
    so ``--presence_threshold None`` silently kept the bundle's threshold instead of switching the
    gate off.
    """
    out: List[str] = []
    for key, value in values.items():
        text = "$None" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out += [f"--{key}", text]
    return out


def workflow_argv(run_id: str, bundle_root: str | Path, overlays: Sequence[str] = (), **values: Any) -> List[str]:
    """``run <run_id>`` of the bundle folder ``bundle_root``: its train.json, the workflow's overlay
    and ``overlays``, its metadata and logging config, ``bundle_root`` and ``values`` as overrides."""
    root = Path(bundle_root).resolve()
    files = config_files(root, *WORKFLOW_OVERLAYS[run_id], *overlays)
    return ["run", run_id, "--config_file", config_arg(files), "--meta_file", str(root / "configs" / "metadata.json"),
            "--logging_file", str(root / "configs" / "logging.conf"), *override_args({"bundle_root": str(root), **values})]


def run_bundle_command(args: Sequence[str], log: Optional[Path] = None, cwd: Path = REPO_ROOT,
                       env: Optional[Dict[str, str]] = None) -> float:
    """Run ``python -m monai.bundle <args>`` offline; returns its wall-clock seconds.

    Output goes to ``log`` when given (else to this terminal). Raises ``RuntimeError`` naming the
    log when the command fails.
    """
    start = time.perf_counter()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    if log is None:
        code = subprocess.call(bundle_argv(*args), cwd=cwd, env=full_env)
    else:
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as stream:
            code = subprocess.call(bundle_argv(*args), cwd=cwd, stdout=stream, stderr=subprocess.STDOUT, env=full_env)
    if code != 0:
        raise RuntimeError(f"monai.bundle {' '.join(list(args)[:2])} failed (exit status {code})" + (f"; see {log}" if log else ""))
    return time.perf_counter() - start
