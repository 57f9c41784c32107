"""The results script runs end to end on a 10-case BUSI subset (skipped without the BUSI folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from bundle_helpers import REPO_ROOT

BUSI = REPO_ROOT.parent / "shared" / "data" / "busi"


@pytest.mark.skipif(not (BUSI / "manifest.csv").is_file(), reason=f"BUSI data not found at {BUSI} (../shared/data/busi)")
def test_results_script_on_a_small_busi_subset(tmp_path):
    command = [sys.executable, "-m", "research.make_results", "--busi_dir", str(BUSI), "--output_dir", str(tmp_path / "out"),
               "--docs_dir", str(tmp_path / "docs"), "--image_size", "64", "--base_channels", "8", "--epochs", "1",
               "--seeds", "[0]", "--limit_per_split", "4", "--multiscale_sizes", "[64,96]"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "docs" / "results.md").read_text()
    for heading in ("## Table I", "## Table II", "## Fusion", "U-Net baseline", "MUNet-EfficientNet-Lite0 (ImageNet)",
                    "+ hard example mining", "+ ensemble", "+ multi-scale (training and inference)", "finest",
                    "## Normal images in training", "trained with the normal images"):
        assert heading in report, heading
    for figure in ("roc.png", "training_curves.png", "test_grid.png"):
        assert (tmp_path / "docs" / "results" / figure).stat().st_size > 1000
    record = json.loads((tmp_path / "docs" / "results" / "runs" / "munet__paper_encoder_seed0.json").read_text())
    assert len(record["cases"]) == 4 and record["dice"] == pytest.approx(sum(c["dice"] for c in record["cases"]) / 4)
    assert record["history"]["val_dice"]  # per-epoch validation read back from the run's MLflow store
    # the normal-images row trained on the lesion images plus the normal ones (empty masks pass the checks)
    data = tmp_path / "out" / "data"
    with_normals = json.loads((data / "datalist_with_normals.json").read_text())
    plain = json.loads((data / "datalist.json").read_text())
    assert len(with_normals["training"]) == len(plain["training"]) + len(plain["normal_training"]) > len(plain["training"])
    assert with_normals["validation"] == plain["validation"]
    normals_run = tmp_path / "docs" / "results" / "runs" / "munet__paper_encoder___trained_with_the_normal_images_seed0.json"
    marked = json.loads(normals_run.read_text())["normal_fpr"] * len(plain["normal_test"])  # a share of whole images
    assert marked == pytest.approx(round(marked)) and 0 <= round(marked) <= len(plain["normal_test"])
    # a rerun reuses every finished run instead of training again
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0 and (tmp_path / "docs" / "results.md").read_text() == report
    # --report_only trains nothing: a row whose run file is gone is reported as not run, not retrained
    (tmp_path / "docs" / "results" / "runs" / "munet_resnet18_seed0.json").unlink()
    partial = subprocess.run(command + ["--report_only", "True"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert "| MUNet-ResNet18 | not run yet" in (tmp_path / "docs" / "results.md").read_text()
    assert not (tmp_path / "docs" / "results" / "runs" / "munet_resnet18_seed0.json").exists()
