"""The model zoo's own bundle checks, run offline: metadata schema, network I/O, TorchScript export."""

from __future__ import annotations

import json

import torch
from bundle_helpers import INFERENCE, META, REPO_ROOT, config_arg, run_bundle
from monai.bundle import ConfigParser

SCHEMA = str(REPO_ROOT / "configs" / "schema" / "meta_schema_20240725.json")


def test_metadata_is_valid_against_the_shipped_schema():
    result = run_bundle(["verify_metadata", "--meta_file", META, "--filepath", SCHEMA])
    assert "metadata is verified with no error" in result.stdout + result.stderr


def test_metadata_version_is_in_the_changelog():
    meta = json.loads(open(META).read())
    assert meta["version"] in meta["changelog"]


def test_network_def_input_and_output_match_metadata():
    result = run_bundle(["verify_net_in_out", "network_def", "--meta_file", META, "--config_file", config_arg(INFERENCE), "--n", "3"])
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


def test_ckpt_export_gives_a_torchscript_that_matches_eager(tmp_path):
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["base_channels"] = 8
    net = parser.get_parsed_content("network_def").eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    ts_path = tmp_path / "model.ts"
    run_bundle(
        [
            "ckpt_export", "network_def",
            "--filepath", str(ts_path),
            "--ckpt_file", str(tmp_path / "model.pt"),
            "--meta_file", META,
            "--config_file", config_arg(INFERENCE),
            "--base_channels", "8",
        ]
    )
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == json.loads(open(META).read())["version"]
    x = torch.rand(1, 1, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-4, atol=1e-5)
        assert scripted(x).shape == (1, 1, 96, 128)
        assert set(scripted.forward_dict(x)) >= {"mask", "class_logits"}
