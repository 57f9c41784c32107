"""The ``munet`` command: its help, its errors, and a bundle folder trained, served and checked through it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from bundle_helpers import REPO_ROOT, TINY, make_tiny_dataset

COMMANDS = ("demo", "data", "train", "fit", "evaluate", "infer", "serve", "rollback", "package", "verify", "receive", "benchmark")


def _munet(*args: str, cwd: Path = REPO_ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    """The console script the set-up installs (``.venv/bin/munet``), or ``python -m munet.cli`` beside this Python."""
    script = Path(sys.executable).with_name("munet")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "munet.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PAGER": "cat"})


def test_help_lists_every_command_and_each_command_has_its_reference():
    listing = _munet("--help")
    assert listing.returncode == 0, listing.stderr
    text = listing.stdout + listing.stderr  # fire writes its help to stderr when not on a terminal
    for command in COMMANDS:
        assert f"\n     {command}\n" in text, command
    train = _munet("train", "--help")
    assert train.returncode == 0 and "--recipe" in train.stdout + train.stderr and "--dataset_dir" in train.stdout + train.stderr


def test_mistakes_get_one_line_naming_what_is_wrong(tmp_path):
    missing = _munet("train", "--output_dir", str(tmp_path / "out"))
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "error: give --dataset_dir (a folder with datalist.json) or --busi_dir (the prepared BUSI folder)")
    recipe = _munet("train", "--dataset_dir", str(tmp_path), "--recipe", "fast", "--output_dir", str(tmp_path / "out"))
    assert recipe.returncode == 1 and "unknown recipe 'fast': choose one of recommended, demo, gpu, paper" in recipe.stderr
    no_bundle = _munet("evaluate", "--bundle", str(tmp_path / "nowhere"))
    assert no_bundle.returncode != 0 and f"{tmp_path / 'nowhere'} is not a bundle folder" in no_bundle.stderr


def test_train_writes_a_bundle_folder_that_serves_as_it_is_and_refuses_other_settings(tmp_path):
    """munet train --recipe paper: the folder's train.json carries the recipe and the run's values, the
    weights their record; munet infer serves it, and refuses it at another image size with one line."""
    data = make_tiny_dataset(tmp_path, n_train=8, n_val=4, n_test=3)
    bundle = tmp_path / "bundle"
    values = [a for k, v in TINY.items() for a in (f"--{k}", str(v))]
    trained = _munet("train", "--dataset_dir", str(data), "--output_dir", str(bundle), "--recipe", "paper",
                     "--tracking", "none", "--max_epochs", "2", *values)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    train = json.loads((bundle / "configs" / "train.json").read_text())
    paper = json.loads((REPO_ROOT / "configs" / "recipes" / "paper.json").read_text())
    recipe = {k: v for k, v in paper.items() if not k.startswith("_") and k not in ("image_size", "max_epochs")}
    assert {k: train[k] for k in recipe} == recipe  # the recipe's values, but those given on the command line
    assert train["image_size"] == 64 and train["base_channels"] == 8 and train["max_epochs"] == 2
    record = json.loads((bundle / "models" / "model.json").read_text())
    assert record["trained_with"]["backbone"] == "munet" and record["trained_with"]["image_size"] == 64

    out = tmp_path / "predictions"
    served = _munet("infer", str(data / "datalist.json"), "--bundle", str(bundle), "--output_dir", str(out))
    assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
    assert len(list(csv.DictReader(open(out / "predictions.csv")))) == 3

    refused = _munet("infer", str(data / "datalist.json"), "--bundle", str(bundle), "--output_dir", str(tmp_path / "x"),
                     "--image_size", "96")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "model.pt was trained with image_size 64; the bundle's configs say image_size 96" in refused.stderr


def test_rollback_serves_the_model_before_last_and_can_itself_be_rolled_back(tmp_path):
    """Three publications kept with their records: munet rollback serves the one before the last
    (weights and record together, atomically), records that as a new entry, and lists them all."""
    import torch

    from munet.engines.model_history import entries, labels_digest, record_publication
    from munet.networks import build_network

    bundle = tmp_path / "bundle"
    make = _munet("data", "demo", "--output_dir", str(tmp_path / "data"), "--n_train", "1", "--n_val", "1", "--n_test", "1")
    assert make.returncode == 0, make.stderr[-2000:]
    from munet.cli.train import make_bundle_folder
    from munet.engines.weights_info import write_weights_info

    make_bundle_folder(bundle, {"backbone": "munet", "pretrained": None, "base_channels": 8, "image_size": 64})
    (bundle / "models").mkdir()
    served = bundle / "models" / "model.pt"
    label = tmp_path / "data" / "masks"
    digest = labels_digest(sorted(label.glob("*.png")))
    versions = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = build_network("munet", base_channels=8)
        torch.save(net.state_dict(), served)
        write_weights_info(served, net, 64)
        versions.append(served.read_bytes())
        record_publication(bundle, "model.pt", {"validation": {"after": {"val_score": 0.5 + seed / 10}, "labels_sha256": digest,
                                                               "images": ["a", "b"]}}, keep=5)
    assert [e["entry"] for e in entries(bundle)] == [1, 2, 3] and entries(bundle)[0]["validation"]["labels_sha256"] == digest
    rolled = _munet("rollback", "--bundle", str(bundle))
    assert rolled.returncode == 0, rolled.stderr
    assert "serving entry 2 again" in rolled.stdout and served.read_bytes() == versions[1]
    assert json.loads((bundle / "models" / "model.json").read_text())["sha256"] == entries(bundle)[1]["sha256"]
    back = _munet("rollback", "--bundle", str(bundle), "--entry", "3")
    assert back.returncode == 0 and served.read_bytes() == versions[2]
    listed = _munet("rollback", "--bundle", str(bundle), "--list_only", "True")
    assert listed.stdout.count("val_score") == 5 and "(rollback to 2)" in listed.stdout
    missing = _munet("rollback", "--bundle", str(bundle), "--entry", "9")
    assert missing.returncode == 1 and "no history entry 9 for model.pt: kept entries are 1, 2, 3, 4, 5" in missing.stderr
