"""A training killed with SIGKILL mid-epoch resumes from its last completed epoch and finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import torch
from bundle_helpers import LOGGING, META, REPO_ROOT, TRAIN, cli_args, config_arg, make_tiny_dataset, overrides, run_bundle

from munet.engines.bundle_folder import bundle_argv


def _train_command(values) -> list:
    return bundle_argv("run", "training", "--meta_file", META, "--config_file", config_arg(TRAIN),
            "--logging_file", LOGGING, *cli_args(values))


def _completed_epochs(checkpoint) -> int:
    """Finished epochs recorded in ``checkpoint_last.pt`` (0 before the first is written).

    The file is replaced atomically (temp file, then rename), so a read never sees half a file.
    """
    if not checkpoint.is_file():
        return 0
    trainer = torch.load(checkpoint, weights_only=True)["trainer"]
    return trainer["iteration"] // trainer["epoch_length"]


def test_sigkill_mid_epoch_then_resume_reaches_the_requested_epochs(tmp_path):
    data = make_tiny_dataset(tmp_path, n_train=16, n_val=2, n_test=2)
    values = overrides(tmp_path, data, max_epochs=6, batch_size=2)
    log_path = tmp_path / "first_run.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(_train_command(values), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.time() + 300
        while _completed_epochs(tmp_path / "models" / "checkpoint_last.pt") < 2:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "training did not finish epoch 2 in time"
            time.sleep(0.2)
        # the checkpoint shows two finished epochs: the process is now in epoch 3 (or saving it)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    first = log_path.read_text()
    assert "epoch 6/6" not in first

    killed_state = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)
    epoch_length = killed_state["trainer"]["epoch_length"]
    completed = killed_state["trainer"]["iteration"] // epoch_length
    assert 2 <= completed < 6

    result = run_bundle(["run", "training", "--meta_file", META, "--config_file", config_arg(TRAIN), "--logging_file", LOGGING,
                         *cli_args({**values, "resume": True})])
    output = result.stdout + result.stderr
    assert f"resuming from {tmp_path / 'models' / 'checkpoint_last.pt'} after epoch {completed} of 6" in output
    assert f"training from epoch {completed + 1} to 6" in output
    assert "epoch 6/6" in output
    final = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)
    assert final["trainer"]["iteration"] == 6 * epoch_length
    assert (tmp_path / "models" / "model.pt").is_file()
    # no temporary files left behind by the atomic writes
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.endswith(".tmp")]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("simulated crash while writing")


def test_a_fixed_name_saver_removes_the_temp_files_of_a_killed_save_and_only_those(tmp_path):
    """A SIGKILL during ``torch.save`` leaves ``.checkpoint_last.pt.<random>.tmp`` (no cleanup runs in a killed
    process); the resumed run's saver deletes it, and leaves other files alone."""
    from munet.engines.checkpoint import AtomicDiskSaver

    stale = tmp_path / ".checkpoint_last.pt.k1ll3d00.tmp"
    stale.write_bytes(b"half a checkpoint")
    others = [tmp_path / ".model.pt.k1ll3d00.tmp", tmp_path / "checkpoint_last.pt.notes.tmp", tmp_path / "checkpoint_last.pt"]
    for other in others:
        other.write_bytes(b"keep")
    saver = AtomicDiskSaver(str(tmp_path), "checkpoint_last.pt")
    assert not stale.exists() and all(other.read_bytes() == b"keep" for other in others)
    saver({"epoch": 3}, "ignored.pt")
    assert torch.load(tmp_path / "checkpoint_last.pt", weights_only=True) == {"epoch": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".model.pt.k1ll3d00.tmp", "checkpoint_last.pt.notes.tmp",
                                                                 "checkpoint_last.pt"])


def test_atomic_save_keeps_the_old_checkpoint_when_a_write_fails(tmp_path):
    import pytest

    from munet.engines.checkpoint import atomic_torch_save

    path = tmp_path / "checkpoint_last.pt"
    atomic_torch_save({"weights": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        atomic_torch_save({"weights": torch.zeros(3), "bad": _Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # readable by the group, unlike ignite's atomic mode


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np
    from monai.transforms import Compose, RandGaussianNoise

    from munet.engines.checkpoint import atomic_torch_save
    from munet.engines.resume import RNGState

    transforms = Compose([RandGaussianNoise(prob=1.0)])
    state = RNGState(transforms)
    atomic_torch_save({"rng": state.state_dict()}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(transforms.transforms[0].R.rand()))
    state.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    again = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(transforms.transforms[0].R.rand()))
    assert again == expected
