"""The MONAI model zoo's bundle checks, offline, in one call.

Mirrors the zoo's ``ci/verify_bundle.py`` and unit tests: required files, version in the
changelog, ``verify_metadata`` against the shipped schema, ``verify_net_in_out`` on
``network_def``, ``ckpt_export`` to TorchScript then loading it and comparing with eager outputs,
``onnx_export`` then onnxruntime compared with eager outputs, and ``check_properties()`` of the
train and inference workflows. The commands run as the zoo runs them (``python -m monai.bundle``,
``PYTHONPATH`` = bundle root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from munet.engines.bundle_folder import bundle_argv, config_files, read_bundle_config

__all__ = ["CheckResult", "run_zoo_checks", "SCHEMA", "TORCHSCRIPT_TOLERANCE", "ONNX_TOLERANCE"]

SCHEMA = "configs/schema/meta_schema_20240725.json"
#: inference.json merges over train.json (a JSON list, as MONAI's command line takes it)
INFERENCE_CONFIGS = "['configs/train.json','configs/inference.json']"
#: max |TorchScript - eager| on the best-mask probabilities
TORCHSCRIPT_TOLERANCE = 1e-5
#: max |onnxruntime - eager| on the best-mask probabilities (float32 kernels differ slightly)
ONNX_TOLERANCE = 1e-4


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str


def _monai_bundle(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(bundle_argv(*args), cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-12:]
        raise RuntimeError("\n".join(tail))
    return result


def _eager_network(root: Path, ckpt: Path) -> torch.nn.Module:
    parser = read_bundle_config(root)
    sys.path.insert(0, str(root))
    try:
        net = parser.get_parsed_content("network_def")
    finally:
        sys.path.remove(str(root))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("model", state) if isinstance(state, dict) and "model" in state else state)
    return net.eval()


def run_zoo_checks(bundle_root: str = ".", ckpt_file: Optional[str] = None, input_shape=(1, 1, 256, 320),
                   log: Callable[[str], None] = print) -> List[CheckResult]:
    """Run every check; ``ckpt_file`` defaults to ``models/model.pt`` or, when absent, random weights."""
    root = Path(bundle_root).resolve()
    results: List[CheckResult] = []
    work = Path(tempfile.mkdtemp(prefix="zoo_checks_"))

    def check(name: str, fn: Callable[[], str]) -> None:
        try:
            detail = fn()
            results.append(CheckResult(name, True, detail))
            log(f"PASS {name}: {detail}")
        except Exception as err:  # every check is reported, the run goes on
            results.append(CheckResult(name, False, str(err)))
            log(f"FAIL {name}: {err}")

    def required_files() -> str:
        missing = [f for f in ("configs/metadata.json", "LICENSE", "configs/inference.json", "configs/train.json") if not (root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"missing {missing}")
        return "configs/metadata.json, LICENSE, configs/train.json, configs/inference.json present"

    def version() -> str:
        meta = json.loads((root / "configs" / "metadata.json").read_text())
        if meta["version"] not in meta.get("changelog", {}):
            raise ValueError(f"version {meta['version']} is not in the changelog")
        return f"version {meta['version']} is in the changelog"

    check("required files", required_files)
    check("version in changelog", version)
    meta = ("--meta_file", "configs/metadata.json")
    check("verify_metadata", lambda: (_monai_bundle(root, "verify_metadata", *meta, "--filepath", SCHEMA),
                                      "metadata valid against meta_schema_20240725")[1])
    check("verify_net_in_out", lambda: (_monai_bundle(root, "verify_net_in_out", "network_def", *meta, "--config_file", INFERENCE_CONFIGS,
                                                      "--n", "4"), "network_def input/output match network_data_format")[1])

    ckpt = Path(ckpt_file) if ckpt_file else root / "models" / "model.pt"
    if not ckpt.is_file():
        ckpt = work / "random_model.pt"
        parser = read_bundle_config(root)
        sys.path.insert(0, str(root))
        try:
            torch.save(parser.get_parsed_content("network_def").state_dict(), ckpt)
        finally:
            sys.path.remove(str(root))
        log(f"note: no trained weights at models/model.pt, checking export with random weights ({ckpt})")
    x = torch.rand(*input_shape)

    def torchscript() -> str:
        ts = work / "model.ts"
        _monai_bundle(root, "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(ckpt),
                      "--meta_file", "configs/metadata.json", "--config_file", INFERENCE_CONFIGS)
        extra = {"metadata.json": ""}
        scripted = torch.jit.load(str(ts), _extra_files=extra)
        if not json.loads(extra["metadata.json"]).get("version"):
            raise ValueError("TorchScript file lacks the embedded metadata")
        with torch.no_grad():
            diff = float((scripted(x) - _eager_network(root, ckpt)(x)).abs().max())
        if diff > TORCHSCRIPT_TOLERANCE:
            raise ValueError(f"TorchScript differs from eager by {diff:.2e} > {TORCHSCRIPT_TOLERANCE}")
        return f"exported, loaded, max |ts - eager| = {diff:.1e} on {list(input_shape)}"

    def onnx() -> str:
        import onnxruntime

        path = work / "model.onnx"
        kwargs = ("{'dynamo': False, 'input_names': ['image'], 'output_names': ['pred'], "
                  "'dynamic_axes': {'image': {0: 'batch', 2: 'height', 3: 'width'}, 'pred': {0: 'batch', 2: 'height', 3: 'width'}}}")
        _monai_bundle(root, "onnx_export", "network_def", "--filepath", str(path), "--ckpt_file", str(ckpt),
                      "--meta_file", "configs/metadata.json", "--config_file", INFERENCE_CONFIGS,
                      "--input_shape", str([1, input_shape[1], 256, 256]), "--use_trace", "True", "--converter_kwargs", kwargs)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(None, {"image": x.numpy()})[0]  # another size than the export's: dynamic axes
        with torch.no_grad():
            diff = float(np.abs(out - _eager_network(root, ckpt)(x).numpy()).max())
        if diff > ONNX_TOLERANCE:
            raise ValueError(f"onnxruntime differs from eager by {diff:.2e} > {ONNX_TOLERANCE}")
        return f"exported at 256x256, onnxruntime at {list(input_shape)}: max |onnx - eager| = {diff:.1e}"

    def properties() -> str:
        from monai.bundle import ConfigWorkflow

        from munet.dataset_tools.demo_dataset import generate_demo_dataset

        data = work / "data"  # the properties include the datasets, which need a datalist to build
        generate_demo_dataset(str(data), n_train=2, n_val=2, n_test=2, min_size=64, max_size=96)
        sys.path.insert(0, str(root))
        try:
            found = {}
            for kind, overlays in (("train", ()), ("infer", ("inference.json",))):
                config = "+".join(["train.json", *overlays])
                workflow = ConfigWorkflow(workflow_type=kind, config_file=config_files(root, *overlays),
                                          meta_file=str(root / "configs" / "metadata.json"), bundle_root=str(root),
                                          dataset_dir=str(data))
                workflow.initialize()
                missing = workflow.check_properties()
                if missing:
                    raise ValueError(f"{config}: missing required properties {missing}")
                found[kind] = "ok"
        finally:
            sys.path.remove(str(root))
        return "train and infer workflows: check_properties() == []"

    check("ckpt_export + TorchScript", torchscript)
    check("onnx_export + onnxruntime", onnx)
    check("check_properties", properties)
    return results
