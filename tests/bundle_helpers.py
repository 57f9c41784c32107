"""Helpers shared by the workflow tests: tiny generated datasets and bundle command runners."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

from munet.dataset_tools.demo_dataset import generate_demo_dataset
from munet.engines.bundle_folder import bundle_argv, config_arg  # noqa: F401 (config_arg: for the tests)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
META = str(CONFIGS / "metadata.json")
LOGGING = str(CONFIGS / "logging.conf")
PAPER = str(CONFIGS / "recipes" / "paper.json")
#: the workflow tests run the paper recipe (its encoder at TINY sizes trains in seconds on 2 cores);
#: inference and evaluation merge over train.json as the bundle's own commands do
TRAIN = [str(CONFIGS / "train.json"), PAPER]
EVALUATE = TRAIN + [str(CONFIGS / "evaluate.json")]
INFERENCE = TRAIN + [str(CONFIGS / "inference.json")]

#: small enough for a 2-core CPU: 64 px images, 8-wide encoder
TINY = {"image_size": 64, "base_channels": 8, "batch_size": 4, "num_workers": 0}


def make_tiny_dataset(root: Path, n_train: int = 8, n_val: int = 4, n_test: int = 4, seed: int = 0) -> Path:
    """Write a small synthetic dataset under ``root/data`` (images 60-100 px) and return its folder."""
    data = root / "data"
    generate_demo_dataset(str(data), n_train=n_train, n_val=n_val, n_test=n_test, min_size=60, max_size=100, seed=seed)
    return data


def overrides(bundle_root: Path, dataset_dir: Path, **extra: object) -> Dict[str, object]:
    """Config overrides pointing the bundle at a tmp root and dataset, at tiny sizes."""
    values: Dict[str, object] = {"bundle_root": str(bundle_root), "dataset_dir": str(dataset_dir), **TINY}
    values.update(extra)
    return values


def cli_args(values: Dict[str, object]) -> List[str]:
    """``--key value`` pairs for ``python -m monai.bundle``."""
    args: List[str] = []
    for key, value in values.items():
        args += [f"--{key}", str(value)]
    return args


def run_bundle(args: Sequence[str], timeout: float = 600, env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle <args>`` from the repo root; raises with the output on failure."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(
        bundle_argv(*args),
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"monai.bundle {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def run_workflow(workflow_type: str, config_file, root: Path, data: Path, **extra: object):
    """Build, check and run a ConfigWorkflow at tiny sizes; asserts ``check_properties() == []``."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        workflow_type=workflow_type, config_file=config_file, meta_file=META, logging_file=LOGGING,
        **overrides(root, data, **extra),
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return workflow
