"""Training tracked in MLflow: a real local SQLite store, a real ``mlflow server``, and a server that is down."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from monai.bundle import ConfigWorkflow
from monai.utils import path_to_sqlite_uri

from bundle_helpers import LOGGING, META, TRAIN, cli_args, make_tiny_dataset, overrides, run_bundle


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on loopback with its own SQLite store and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = open(root / "server.log", "w")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [
            str(mlflow_cli), "server",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--backend-store-uri", path_to_sqlite_uri(str(root / "mlflow.db")),
            "--artifacts-destination", str(root / "artifacts"),
            "--workers", "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(1)
    yield uri
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_training_against_a_real_mlflow_server(mlflow_server, tmp_path):
    data = make_tiny_dataset(tmp_path)
    values = overrides(tmp_path, data, max_epochs=2, run_name="server_run")
    run_bundle(
        ["run", "training", "--meta_file", META, "--config_file", TRAIN, "--logging_file", LOGGING,
         "--tracking", "mlflow", "--tracking_uri", mlflow_server, *cli_args(values)]
    )
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("monai_experiment")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'server_run'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    # per-epoch validation metrics, one point per epoch
    for name in ("val_dice", "val_auc", "val_score", "val_dice_mask_stride2"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2], name
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 2
    # parameters of the run, including ours
    assert run.data.params["max_epochs"] == "2"
    assert run.data.params["backbone"] == "munet"
    assert run.data.params["base_channels"] == "8"
    # the executed config and the best checkpoint as artifacts
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts
    assert any(p.startswith("config_") and p.endswith(".json") for p in artifacts)


def test_training_tracks_into_the_default_local_sqlite_store(tmp_path):
    data = make_tiny_dataset(tmp_path)
    workflow = ConfigWorkflow(
        workflow_type="train", config_file=TRAIN, meta_file=META, logging_file=LOGGING,
        tracking="mlflow", **overrides(tmp_path, data, max_epochs=1),
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    store = tmp_path / "eval" / "mlruns.db"
    assert store.is_file()
    client = MlflowClient(tracking_uri=path_to_sqlite_uri(str(store)))
    experiment = client.get_experiment_by_name("monai_experiment")
    (run,) = client.search_runs([experiment.experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 1
    assert run.data.params["arch"] == "munet"


def test_training_continues_when_the_tracking_server_is_down(tmp_path):
    data = make_tiny_dataset(tmp_path)
    down = f"http://127.0.0.1:{_free_port()}"
    result = run_bundle(
        ["run", "training", "--meta_file", META, "--config_file", TRAIN, "--logging_file", LOGGING,
         "--tracking", "mlflow", "--tracking_uri", down, *cli_args(overrides(tmp_path, data, max_epochs=2))]
    )
    output = result.stdout + result.stderr
    assert output.count("is not reachable") == 1
    assert (tmp_path / "models" / "model.pt").is_file()
    assert "epoch 2/2" in output
