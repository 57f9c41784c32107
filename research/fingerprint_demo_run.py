"""Fingerprint a checkout's demo run, to show that a refactoring changed no computed figure.

    python -m research.fingerprint_demo_run run --repo /tmp/before --output_dir /tmp/fp_before
    python -m research.fingerprint_demo_run run --repo . --output_dir /tmp/fp_after
    python -m research.fingerprint_demo_run compare /tmp/fp_before/fingerprint.json /tmp/fp_after/fingerprint.json

``run`` uses only the checkout's command-line entry points (``scripts/make_demo_data.py`` and
``python -m monai.bundle run training / evaluating / inferring``), so two commits with different
module layouts are run the same way: demo DICOM data (16/8/8 images), a 64 px, 8-wide MUNet trained
a few epochs with seed 0 on one thread (thread count changes float reductions), then evaluation and
inference (6 epochs at learning rate 0.01, so that masks are not all empty). The fingerprint holds the sha256 of every inferred
mask PNG, the predictions.csv rows,
the evaluation metrics.json and the trained weights' tensors. ``compare`` prints every difference
and exits 1 if there is one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import fire

TINY = ["--image_size", "64", "--base_channels", "8", "--batch_size", "4", "--num_workers", "0", "--seed", "0"]


def _configs(repo: Path, *names: str) -> str:
    """The config list that runs the paper recipe for ``names`` in this checkout: before #28,
    ``names`` as they are (train.json's defaults were the paper's); since #28, train.json, then
    ``configs/recipes/paper.json``, then the workflow's overlay (inference.json merges over train.json)."""
    if not (repo / "configs" / "recipes" / "paper.json").is_file():
        files = [f"configs/{n}" for n in names]
    else:
        files = ["configs/train.json", "configs/recipes/paper.json"] + [f"configs/{n}" for n in names if n != "train.json"]
    return files[0] if len(files) == 1 else json.dumps(files)


def _bundle(repo: Path, log: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0",
           "PYTHONPATH": str(repo)}  # the checkout's own package, whatever is installed
    with open(log, "a") as stream:
        code = subprocess.call([sys.executable, *args], cwd=repo, env=env, stdout=stream, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed in {repo}; see {log}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_digest(path: Path) -> Dict[str, str]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: hashlib.sha256(v.cpu().contiguous().numpy().tobytes()).hexdigest() for k, v in sorted(state.items())}


def run(repo: str = ".", output_dir: str = "runs/fingerprint", epochs: int = 6) -> None:
    """Generate, train ``epochs``, evaluate and infer in ``output_dir``; write ``fingerprint.json``."""
    repo_path, out = Path(repo).resolve(), Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "run.log"
    log.write_text("")
    data, root = out / "demo_data", out / "bundle"
    meta = ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    common = [*meta, "--bundle_root", str(root), "--dataset_dir", str(data), *TINY]
    print(f"[fingerprint] {repo_path} -> {out}", flush=True)
    make_data = ["scripts/make_demo_data.py"] if (repo_path / "scripts" / "make_demo_data.py").is_file() else ["-m", "munet.cli", "data", "demo"]
    _bundle(repo_path, log, *make_data, "--output_dir", str(data), "--image_format", "dicom",
            "--n_train", "16", "--n_val", "8", "--n_test", "8", "--min_size", "80", "--max_size", "120")
    _bundle(repo_path, log, "-m", "monai.bundle", "run", "training", "--config_file", _configs(repo_path, "train.json"),
            *common, "--max_epochs", str(epochs), "--learning_rate", "0.01")
    print("[fingerprint] trained", flush=True)
    _bundle(repo_path, log, "-m", "monai.bundle", "run", "evaluating", "--config_file",
            _configs(repo_path, "train.json", "evaluate.json"), *common)
    _bundle(repo_path, log, "-m", "monai.bundle", "run", "inferring", "--config_file", _configs(repo_path, "inference.json"), *common)
    print("[fingerprint] evaluated and inferred", flush=True)
    inferred = root / "eval" / "inference"
    fingerprint = {
        "masks": {p.name: _sha256(p) for p in sorted(inferred.glob("*_mask.png"))},
        # new DICOM UIDs are drawn per run, and paths name the output folder: both left out
        "predictions": [{k: v for k, v in row.items() if k not in ("image", "mask", "overlay") and "uid" not in k and "dicom" not in k}
                        for row in csv.DictReader(open(inferred / "predictions.csv"))],
        "metrics": json.loads((root / "eval" / "metrics.json").read_text()),
        "weights": _weights_digest(root / "models" / "model.pt"),
    }
    (out / "fingerprint.json").write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
    marked = sum(int(row["lesion_pixels"]) > 0 for row in fingerprint["predictions"])
    print(f"[fingerprint] {len(fingerprint['masks'])} masks ({marked} with lesion pixels), {len(fingerprint['weights'])} weight tensors, "
          f"val_dice {fingerprint['metrics'].get('val_dice')} -> {out / 'fingerprint.json'}")


def compare(before: str, after: str) -> None:
    """Print every difference between two fingerprints; exit 1 if there is any."""
    a, b = json.loads(Path(before).read_text()), json.loads(Path(after).read_text())
    differences: List[str] = []
    for part in ("masks", "predictions", "metrics", "weights"):
        if a.get(part) != b.get(part):
            if isinstance(a.get(part), dict) and isinstance(b.get(part), dict):
                keys = sorted(set(a[part]) | set(b[part]))
                differences += [f"{part}/{k}: {a[part].get(k)} != {b[part].get(k)}" for k in keys if a[part].get(k) != b[part].get(k)]
            else:
                differences.append(f"{part} differ")
    counts = {part: len(a.get(part, [])) for part in ("masks", "predictions", "weights")}
    if differences:
        print("\n".join(differences[:50]))
        print(f"{len(differences)} difference(s)")
        sys.exit(1)
    print(f"identical: {counts['masks']} mask PNGs (sha256), {counts['predictions']} prediction rows, metrics.json, "
          f"{counts['weights']} weight tensors")


if __name__ == "__main__":
    fire.Fire({"run": run, "compare": compare})
