"""Sharing a trained bundle: zoo checks, the packaged zip run elsewhere, tampering refused, review."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from bundle_helpers import REPO_ROOT, make_tiny_dataset, overrides
from monai.bundle import ConfigWorkflow
from PIL import Image

from munet.engines.bundle_folder import bundle_argv, read_bundle_config
from munet.integrations.sharing.package import PACKAGED, build_package, unpack_package
from munet.integrations.sharing.review import review_configs
from munet.integrations.sharing.zoo_checks import run_zoo_checks
from munet.utils.hashing import IntegrityError, sha256_of

NETWORK_OVERRIDES = {"base_channels": 8, "image_size": 64}


def _copy_bundle(dest: Path) -> Path:
    for entry in PACKAGED:
        source = REPO_ROOT / entry
        if source.is_dir():
            shutil.copytree(source, dest / entry, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, dest / entry)
    return dest


def _infer(bundle_root: Path, data: Path, out: Path) -> subprocess.CompletedProcess:
    """Inference in a fresh process whose working directory is the bundle, without this repo on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    command = bundle_argv("run", "inferring", "--meta_file", "configs/metadata.json",
               "--config_file", "['configs/train.json','configs/inference.json']", "--logging_file", "configs/logging.conf",
               "--dataset_dir", str(data), "--output_dir", str(out))
    result = subprocess.run(command, cwd=bundle_root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A trained copy of the bundle, its zip, and the zip unpacked on the 'receiving' side."""
    base = tmp_path_factory.mktemp("sharing")
    source = _copy_bundle(base / "source")
    data = make_tiny_dataset(base)
    workflow = ConfigWorkflow(workflow_type="train", config_file=str(source / "configs" / "train.json"),
                              meta_file=str(source / "configs" / "metadata.json"),
                              **overrides(source, data, max_epochs=2))
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    archive = build_package(str(source), str(base / "dist"), overrides=NETWORK_OVERRIDES)
    received = unpack_package(str(archive), str(base / "received"))
    return base, source, data, archive, received


def test_package_layout_and_manifest(shared):
    _, _, _, archive, received = shared
    assert archive.name == "munet_ultrasound_v" + json.loads((REPO_ROOT / "configs/metadata.json").read_text())["version"] + ".zip"
    names = zipfile.ZipFile(archive).namelist()
    for required in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "models/model.ts",
                     "checksums.sha256", "large_files.yml", "LICENSE", "munet/networks/munet.py", "docs/README.md"):
        assert f"munet_ultrasound/{required}" in names, required
    assert not [n for n in names if "__pycache__" in n or n.startswith("munet_ultrasound/tests/")]
    large = yaml.safe_load((received / "large_files.yml").read_text())["large_files"]
    assert [entry["path"] for entry in large] == ["models/model.pt", "models/model.ts"]
    assert large[0]["hash_val"] == sha256_of(received / "models" / "model.pt") and large[0]["hash_type"] == "sha256"
    # the trained width is written once, in train.json; inference.json merges over it; the weights' record travels along
    assert json.loads((received / "configs" / "train.json").read_text())["base_channels"] == 8
    assert "base_channels" not in json.loads((received / "configs" / "inference.json").read_text())
    assert read_bundle_config(received).get_parsed_content("base_channels") == 8
    assert json.loads((received / "models" / "model.json").read_text())["sha256"] == sha256_of(received / "models" / "model.pt")


def test_received_bundle_passes_the_zoo_checks(shared):
    *_, received = shared
    results = run_zoo_checks(str(received), log=lambda line: None)
    assert [r.name for r in results if not r.passed] == [], [r.detail for r in results if not r.passed]
    assert {r.name for r in results} >= {"verify_metadata", "verify_net_in_out", "ckpt_export + TorchScript",
                                          "onnx_export + onnxruntime", "check_properties"}


def test_received_bundle_gives_the_same_masks_as_the_source(shared, tmp_path):
    base, source, data, _, received = shared
    for key, value in NETWORK_OVERRIDES.items():  # the source bundle runs with the values it was trained with
        config = json.loads((source / "configs" / "train.json").read_text())
        config[key] = value
        (source / "configs" / "train.json").write_text(json.dumps(config, indent=4))
    _infer(source, data, tmp_path / "source_out")
    _infer(received, data, tmp_path / "received_out")
    source_masks = sorted((tmp_path / "source_out").glob("*_mask.png"))
    assert len(source_masks) == 4
    for mask in source_masks:
        other = tmp_path / "received_out" / mask.name
        np.testing.assert_array_equal(np.asarray(Image.open(mask)), np.asarray(Image.open(other)))


def _rewrite_zip(archive: Path, target: Path, member: str, change) -> Path:
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, change(data) if info.filename == member else data)
    return target


@pytest.mark.parametrize("member", ["munet_ultrasound/models/model.pt", "munet_ultrasound/configs/inference.json"])
def test_tampered_weights_or_config_are_refused(shared, tmp_path, member):
    _, _, _, archive, _ = shared
    flip_last_byte = lambda data: data[:-1] + bytes([data[-1] ^ 1])  # noqa: E731
    tampered = _rewrite_zip(archive, tmp_path / "tampered.zip", member, flip_last_byte)
    with pytest.raises(IntegrityError, match=member.split("/", 1)[1] + ": sha256 differs"):
        unpack_package(str(tampered), str(tmp_path / "out"))


def test_added_file_wrong_archive_hash_and_escaping_entries_are_refused(shared, tmp_path):
    _, _, _, archive, _ = shared
    with pytest.raises(IntegrityError, match="differs from the expected"):
        unpack_package(str(archive), str(tmp_path / "a"), expected_sha256="0" * 64)
    added = tmp_path / "added.zip"
    shutil.copy(archive, added)
    with zipfile.ZipFile(added, "a") as zf:
        zf.writestr("munet_ultrasound/configs/extra.json", "{}")
    with pytest.raises(IntegrityError, match="extra.json: not listed"):
        unpack_package(str(added), str(tmp_path / "b"))
    escaping = tmp_path / "escape.zip"
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("../evil.py", "print('x')")
    with pytest.raises(IntegrityError, match="escape"):
        unpack_package(str(escaping), str(tmp_path / "c"))


def test_review_lists_every_executable_entry_and_flags_foreign_code(tmp_path):
    entries = review_configs(REPO_ROOT)
    assert not [e for e in entries if e.flagged], [e.text for e in entries if e.flagged]
    kinds = {e.kind for e in entries}
    assert kinds == {"import", "expression", "target"}
    assert any(e.config_id == "network_def#_target_" and e.text == "munet.networks.build_network" for e in entries)
    bundle = _copy_bundle(tmp_path / "b")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["ckpt_path"] = "$__import__('subprocess').run(['id']) and @bundle_root + '/models/model.pt'"
    config["device"] = "$requests.get('http://example.invalid')"
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    flagged = {e.config_id for e in review_configs(bundle) if e.flagged}
    assert flagged == {"ckpt_path", "device"}
