"""Training tracked in MLflow: a real local SQLite store, a real ``mlflow server``, and a server that is down."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from bundle_helpers import LOGGING, META, REPO_ROOT, TRAIN, cli_args, config_arg, make_tiny_dataset, overrides, run_bundle
from mlflow.tracking import MlflowClient
from monai.bundle import ConfigWorkflow
from monai.utils import path_to_sqlite_uri

from munet.engines.bundle_folder import bundle_argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(root: Path, port: int | None = None):
    """A real ``mlflow server`` on loopback with its own SQLite store and artifact folder.

    It runs in its own process group: ``mlflow server`` starts uvicorn as a child process, and
    stopping it (or killing it, to simulate an outage) must reach that child too.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    log = open(root / "server.log", "a")
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
        # no background job runner (a dozen huey processes): tracking does not use it and the CPU is shared
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
    )
    log.close()
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                if response.status == 200:
                    return process, uri
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            _stop_server(process, signal.SIGKILL)
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(1)


def _stop_server(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the server's whole process group and wait for its leader."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def _answers(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    process, uri = _start_server(tmp_path_factory.mktemp("mlflow_server"))
    yield uri
    _stop_server(process)


def test_training_against_a_real_mlflow_server(mlflow_server, tmp_path):
    data = make_tiny_dataset(tmp_path)
    # --output_dir as a plain path: MONAI then records the executed config as "<dir> + '/config_...json'"
    values = overrides(tmp_path, data, max_epochs=2, run_name="server_run", output_dir=str(tmp_path / "elsewhere"))
    run_bundle(
        ["run", "training", "--meta_file", META, "--config_file", config_arg(TRAIN), "--logging_file", LOGGING,
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
    # the loss and its two parts per iteration
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(losses) >= 2
    for part in ("train_focal_loss", "train_dice_loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, part)] == [m.step for m in losses], part
    # parameters of the run: the executed config's values, and ours
    params = run.data.params
    assert params["max_epochs"] == "2"
    assert params["backbone"] == "munet"
    assert params["base_channels"] == "8"
    assert params["datalist"] == str(data / "datalist.json")
    assert params["datalist_sha256"] == hashlib.sha256((data / "datalist.json").read_bytes()).hexdigest()
    assert params["bundle_version"] == json.loads(Path(META).read_text())["version"]
    assert params["precision"] == "fp32"
    assert params["augment.hflip_prob"] == "0.5" and params["augment.elastic_prob"] == "0.1"  # groups, flattened
    assert params["presence_head"] == "False" and "network_def" not in params  # the paper recipe's value; no components
    assert params["early_stop_patience"] == "20" and params["val_interval"] == "1"
    # the executed config, the best checkpoint, the last validation's figures and the log as artifacts
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "metrics.json", "per_case.csv", "train.log"} <= artifacts
    assert any(p.startswith("config_") and p.endswith(".json") for p in artifacts)
    log = Path(client.download_artifacts(run.info.run_id, "train.log", str(tmp_path))).read_text()
    assert "epoch 2/2" in log


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
        ["run", "training", "--meta_file", META, "--config_file", config_arg(TRAIN), "--logging_file", LOGGING,
         "--tracking", "mlflow", "--tracking_uri", down, *cli_args(overrides(tmp_path, data, max_epochs=2))]
    )
    output = result.stdout + result.stderr
    assert output.count("is not reachable") == 1
    assert (tmp_path / "models" / "model.pt").is_file()
    assert "epoch 2/2" in output


def _wait_for_logged_iteration(uri: str, run_name: str, training: subprocess.Popen, timeout: float = 300) -> int:
    """Poll the server until the run has logged its first training loss; the number of points logged."""
    client = MlflowClient(tracking_uri=uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and training.poll() is None:
        experiment = client.get_experiment_by_name("monai_experiment")
        if experiment is not None:
            runs = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
            if runs:
                logged = client.get_metric_history(runs[0].info.run_id, "train_loss")
                if logged:
                    return len(logged)
        time.sleep(0.2)
    pytest.fail("the training logged no iteration to the server")


def test_training_finishes_when_the_tracking_server_dies_mid_epoch(tmp_path):
    """The server answers at start and is SIGKILLed once the first iteration is logged.

    Training must finish (exit 0) with its models and metric files, warn once, say that the run
    could not be closed, and take at most 60 s more than the same training without tracking.
    """
    data = make_tiny_dataset(tmp_path, n_train=16, n_val=2, n_test=1)
    common = {"max_epochs": 3, "batch_size": 2}  # 8 iterations an epoch: the kill lands early in the run
    train = ["run", "training", "--meta_file", META, "--config_file", config_arg(TRAIN), "--logging_file", LOGGING]

    start = time.monotonic()
    run_bundle([*train, *cli_args(overrides(tmp_path / "plain", data, **common))])
    plain_seconds = time.monotonic() - start

    server, uri = _start_server(tmp_path / "server")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUNET_STATE_DIR": str(tmp_path / "state")}
    root = tmp_path / "tracked"
    log_path = tmp_path / "tracked.log"
    command = bundle_argv(*train, "--tracking", "mlflow", "--tracking_uri", uri,
               *cli_args(overrides(root, data, run_name="killed_run", **common)))
    training = None
    try:
        with open(log_path, "w") as log:
            start = time.monotonic()
            training = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            logged = _wait_for_logged_iteration(uri, "killed_run", training)
            _stop_server(server, signal.SIGKILL)
            killed_after = time.monotonic() - start
            assert not _answers(uri)
            returncode = training.wait(timeout=plain_seconds + 300)
            tracked_seconds = time.monotonic() - start
    finally:
        if training is not None and training.poll() is None:
            training.kill()
            training.wait()
        _stop_server(server, signal.SIGKILL)
    output = log_path.read_text()
    print(f"\nwithout tracking: {plain_seconds:.1f} s; with the server killed {killed_after:.1f} s after the start, "
          f"once {logged} iteration(s) were logged: {tracked_seconds:.1f} s")

    assert returncode == 0, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    for name in ("model.pt", "checkpoint_last.pt"):
        assert (root / "models" / name).is_file(), name
    metrics = json.loads((root / "eval" / "validation" / "metrics.json").read_text())
    assert metrics["epoch"] == 3
    assert "epoch 3/3" in output
    # one warning for the outage, naming the server, and one note that the run stays open
    # (MONAI warns once that the recipe's file is in another folder than train.json)
    warnings = [line for line in output.splitlines() if " - WARNING - " in line and "nvImageCodec" not in line
                and "Not all config files are in" not in line]
    assert len([line for line in warnings if f"MLflow tracking at {uri} failed" in line]) == 1, warnings
    assert len([line for line in warnings if "could not be closed" in line and "stays RUNNING" in line]) == 1, warnings
    assert len(warnings) == 2, warnings
    assert tracked_seconds <= plain_seconds + 60, (plain_seconds, tracked_seconds)

    # the server comes back (same store, same address): the next training against it closes the run
    server, _ = _start_server(tmp_path / "server", port=int(uri.rsplit(":", 1)[1]))
    try:
        client = MlflowClient(tracking_uri=uri)
        (left,) = client.search_runs([client.get_experiment_by_name("monai_experiment").experiment_id],
                                     filter_string="attributes.run_name = 'killed_run'")
        assert left.info.status == "RUNNING"  # what MLflow shows without the next training
        nxt = subprocess.run(bundle_argv(*train, "--tracking", "mlflow", "--tracking_uri", uri,
                                         *cli_args(overrides(tmp_path / "next", data, run_name="next_run", max_epochs=1, batch_size=2))),
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert nxt.returncode == 0, nxt.stderr[-3000:]
        run = client.get_run(left.info.run_id)
        assert run.info.status == "FAILED", run.info.status
        assert "tracking failed" in run.data.tags["munet.tracking"] and "the training went on" in run.data.tags["munet.tracking"]
        assert f"MLflow run {left.info.run_id} at {uri}, left RUNNING when the server went away" in nxt.stdout + nxt.stderr
        assert json.loads((tmp_path / "state" / "unclosed_mlflow_runs.json").read_text()) == []
    finally:
        _stop_server(server)


def test_guard_switches_tracking_off_once_and_closes_the_run_as_failed(tmp_path, monkeypatch, caplog):
    """A store that starts failing mid-run: one warning, no further calls, the run closed as FAILED with a note."""
    import logging
    from types import SimpleNamespace

    import torch
    from ignite.engine import Engine
    from mlflow.exceptions import MlflowException
    from monai.handlers import MLFlowHandler

    from munet.integrations.tracking import INCOMPLETE_TAG, MLflowGuard

    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.setenv(name, "99")  # restored afterwards; the guard sets its own values
    loss = SimpleNamespace(last_components={"class_loss": torch.tensor(0.5), "dice_loss": torch.tensor(2.0)})
    datalist = tmp_path / "datalist.json"
    datalist.write_text('{"training": []}')
    guard = MLflowGuard(params={"arch": "munet"}, datalist=str(datalist), loss_function=loss,
                        log_file=str(tmp_path / "train.log"), http_timeout=7, http_max_retries=1, http_backoff_factor=1)
    other = object()
    assert guard.wrap([other]) == [other] and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"  # no tracking: no change

    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    handler = MLFlowHandler(tracking_uri=uri, run_name="guarded", tag_name="train_loss", close_on_complete=True,
                            output_transform=lambda output: output["loss"])
    (wrapped,) = guard.wrap([handler], run_details=True)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7" and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"

    engine = Engine(lambda engine, batch: {"loss": torch.tensor(1.0)})
    wrapped.attach(engine)
    log_batch, calls = handler.client.log_batch, []

    def failing_from_iteration_3(*args, **kwargs):
        calls.append(engine.state.iteration)
        if engine.state.iteration >= 3:
            raise MlflowException("server gone")
        return log_batch(*args, **kwargs)

    monkeypatch.setattr(handler.client, "log_batch", failing_from_iteration_3)
    with caplog.at_level(logging.INFO, logger="munet"):
        engine.run(range(4), max_epochs=2)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"MLflow tracking at {uri} failed" in warnings[0], warnings
    assert "at epoch 1, iteration 3" in warnings[0] and "server gone" in warnings[0]
    assert calls.count(3) == 1 and max(calls) == 3  # nothing was tried after the failure
    assert any("closed as FAILED" in r.getMessage() for r in caplog.records)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(handler.client.search_runs([handler.experiment.experiment_id])[0].info.run_id)
    assert run.info.status == "FAILED"
    assert "stops at epoch 1, iteration 3" in run.data.tags[INCOMPLETE_TAG]
    assert run.data.params["arch"] == "munet" and run.data.params["datalist"] == str(datalist)
    assert run.data.params["datalist_sha256"] == hashlib.sha256(datalist.read_bytes()).hexdigest()
    for name, value in (("train_loss", 1.0), ("train_focal_loss", 0.5), ("train_dice_loss", 2.0)):
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)] == [(1, value), (2, value)]
    assert (tmp_path / "train.log").is_file()
