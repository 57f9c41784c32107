"""Two real torchrun processes train with DDP over gloo on the CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from bundle_helpers import CONFIGS, LOGGING, META, REPO_ROOT, TRAIN, cli_args, config_arg, make_tiny_dataset, overrides


@pytest.mark.parametrize("recipe", [{}, {"multiscale_sizes": "[64,96]", "hard_example_mining": True}], ids=["plain", "multiscale+mining"])
def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path, recipe):
    data = make_tiny_dataset(tmp_path, n_train=8, n_val=3, n_test=2)
    # an extra override file makes every rank save its final weights for the comparison below
    ranks_config = tmp_path / "save_rank_weights.json"
    ranks_config.write_text(json.dumps({"finalize": [
        "$torch.save(@network.module.state_dict(), @output_dir + '/rank' + str(dist.get_rank()) + '_weights.pt')",
        "$dist.is_initialized() and dist.destroy_process_group()",
    ]}))
    configs = config_arg(TRAIN + [str(CONFIGS / 'multi_gpu_train.json'), str(ranks_config)])
    values = overrides(tmp_path, data, max_epochs=2, batch_size=2, **recipe)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", "training", "--meta_file", META, "--config_file", configs,
               "--logging_file", LOGGING, *cli_args(values)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]

    # rank 0 wrote the checkpoints and the validation metrics
    assert (tmp_path / "models" / "model.pt").is_file()
    last = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)
    # 8 training cases, 2 ranks, batch 2: 2 iterations per epoch on each rank (multi-scale pads
    # each aspect group to whole steps, so it may take more)
    epoch_length = last["trainer"]["epoch_length"]
    assert (epoch_length == 2 if not recipe else epoch_length >= 2) and last["trainer"]["iteration"] == 2 * epoch_length
    metrics = json.loads((tmp_path / "eval" / "validation" / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and metrics["cases"] == 3  # validation cases of both ranks gathered
    with open(tmp_path / "eval" / "validation" / "per_case.csv") as stream:
        case_dice = [float(row["dice"]) for row in csv.DictReader(stream)]
    assert len(case_dice) == 3 and metrics["val_dice"] == pytest.approx(sum(case_dice) / 3)
    assert output.count("epoch 2/2") == 1  # only rank 0 reports progress

    # both ranks ended with identical weights
    rank0 = torch.load(tmp_path / "eval" / "rank0_weights.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "eval" / "rank1_weights.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    # and the saved best model is DDP-free (no "module." prefix)
    assert not any(k.startswith("module.") for k in torch.load(tmp_path / "models" / "model.pt", weights_only=True))
