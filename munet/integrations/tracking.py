"""MLflow tracking that never stops a training, plus the run details MONAI's handler leaves out.

``python -m monai.bundle run ... --tracking mlflow`` (or ``--tracking <settings file>``) appends
MONAI's ``MLFlowHandler`` to ``train#handlers`` and ``validate#handlers``. Two guards apply:

* at start, ``is_not_rank0`` (train.json: ``not tracking_enabled(@tracking_uri)``) disables those
  handlers on ranks above 0 and when an HTTP tracking server does not answer its ``/health``
  check, with one warning;
* during the run, train.json hands both lists to the engines through ``@mlflow_guard.wrap(...)``
  (:class:`MLflowGuard`). It bounds every MLflow HTTP call (``MLFLOW_HTTP_REQUEST_TIMEOUT``,
  ``..._MAX_RETRIES``, ``..._BACKOFF_FACTOR``; MLflow's own defaults retry for about 4 minutes,
  then raise) and attaches each handler's public event methods through a guard: the first
  exception logs one warning naming the tracking URI and switches tracking off for the rest of
  the run; training, checkpoints and metric files go on untouched. At the end the guard tries
  once (after a short health check) to close the interrupted run as FAILED with a
  ``munet.tracking`` tag saying where its record stops. When the server is still away, the run is
  recorded (:mod:`.unclosed_runs`) and the next training against that server closes it.

Tracking is switched off rather than buffered: while the server is away every attempt costs up to
timeout x retries of training time, a buffer of a long run grows without bound and its replay
would interleave with live calls, and everything a run records is on disk anyway (training log,
``metrics.json``, checkpoints). A run whose record stops early is marked, not silently completed.

The bundle's own run details go through MONAI's handler settings: run parameters (datalist path
and sha256, bundle version, precision, augmentation, early stopping, ...) into the trainer
handler's ``experiment_param`` (logged by its ``start``), files (best model, validation
``metrics.json`` and ``per_case.csv``, the training log) into its ``artifacts`` (logged by its
``complete``), and the loss parts (focal, Dice, presence) into its per-iteration output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from ignite.engine import Engine, Events

from munet.integrations.unclosed_runs import close_unclosed_runs, remember_unclosed_run
from munet.utils.hashing import sha256_of
from munet.utils.process_group import rank

__all__ = ["tracking_enabled", "config_params", "MLflowGuard", "LossParts"]

logger = logging.getLogger("munet")
_warned: set = set()

#: tag set on a run whose record stops early, saying where and why
INCOMPLETE_TAG = "munet.tracking"
#: the loss parts of ``MUNetLoss.last_components`` logged per iteration, with their metric names
LOSS_PARTS = {"class_loss": "train_focal_loss", "dice_loss": "train_dice_loss", "presence_loss": "train_presence_loss"}


def _unreachable(uri: str, timeout: float) -> Optional[str]:
    """Why an HTTP(S) tracking server does not answer its health check, or None when it does (or is no server)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            return None if response.status < 500 else f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        return None if err.code < 500 else f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def tracking_enabled(tracking_uri: Optional[str], timeout: float = 5.0) -> bool:
    """True when this process should talk to MLflow: rank 0 and, for an HTTP server, reachable."""
    if rank() > 0:
        return False
    uri = str(tracking_uri or "")
    reason = _unreachable(uri, timeout)
    if reason is None:
        return True
    if uri not in _warned:
        _warned.add(uri)
        logger.warning("MLflow tracking server %s is not reachable (%s): training continues without tracking", uri, reason)
    return False


def _param(value: Any, limit: int = 500) -> str:
    """A run parameter's text: ``str(value)``, at most ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _number(value: Any) -> float:
    return float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)


class _RetriesToDebug(logging.Filter):
    """Demote urllib3's "Retrying ..." warnings for MLflow's REST calls to DEBUG.

    While a server is away each retry would print a warning; the guard's one warning reports the
    final error instead. Other urllib3 messages pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING:
            message = record.getMessage()
            if message.startswith("Retrying") and "/mlflow" in message:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class LossParts:
    """Output transform for MONAI's trainer ``MLFlowHandler``: the total loss plus its parts.

    Wraps the handler's own ``output_transform`` (the total loss, logged as ``tag_name``) and adds
    the parts of the loss function's last call (``MUNetLoss.last_components``): focal
    (``train_focal_loss``), summed branch Dice (``train_dice_loss``, before ``lambda_dice``) and,
    with a presence head, ``train_presence_loss``. MONAI logs a dict output key by key.
    """

    def __init__(self, loss_function: Any, output_transform: Callable, tag_name: str) -> None:
        self.loss_function = loss_function
        self.output_transform = output_transform
        self.tag_name = tag_name

    def __call__(self, output: Any) -> Optional[Dict[str, float]]:
        total = self.output_transform(output)
        if total is None:
            return None
        values = dict(total) if isinstance(total, Mapping) else {self.tag_name: total}
        components = getattr(self.loss_function, "last_components", None) or {}
        values.update({name: components[key] for key, name in LOSS_PARTS.items() if key in components})
        return {key: _number(value) for key, value in values.items()}


def config_params(path: Union[str, Path]) -> Dict[str, Any]:
    """The plain values of a saved config (numbers, booleans, names, lists of them; groups without
    ``_target_`` flattened as ``augment.hflip_prob``), leaving out expressions, references and components."""
    def plain(value: Any) -> bool:
        if isinstance(value, str):
            return not value.startswith(("$", "@", "%"))
        if isinstance(value, (list, tuple)):
            return all(plain(v) and not isinstance(v, (dict, list)) for v in value)
        return value is None or isinstance(value, (bool, int, float))

    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    values: Dict[str, Any] = {}
    for key, value in config.items() if isinstance(config, dict) else ():
        if key.startswith("_") or key == "imports":
            continue
        if isinstance(value, dict) and "_target_" not in value:
            values.update({f"{key}.{k}": v for k, v in value.items() if not k.startswith("_") and plain(v)})
        elif plain(value):
            values[key] = value
    return values


class MLflowGuard:
    """Failure-tolerant MLflow tracking for the ``MLFlowHandler`` instances ``--tracking`` adds.

    ``wrap(handlers)`` returns the list with every MONAI ``MLFlowHandler`` replaced by a guarded
    attachment of the same handler (other handlers pass through), so one guard covers the trainer
    and the validator. With ``run_details=True`` (the trainer's list) the handler also gets the
    bundle's parameters, artifacts, loss parts and training log file. Without ``--tracking`` the
    lists hold no ``MLFlowHandler`` and nothing changes.

    Args:
        params: run parameters, added to the trainer handler's ``experiment_param``.
        datalist: the datalist file; its path and sha256 become the parameters ``datalist`` and
            ``datalist_sha256``.
        artifacts: files logged when training completes (missing ones are skipped), added to the
            trainer handler's ``artifacts``.
        loss_function: read for the loss parts (see :class:`LossParts`); None logs the total only.
        log_file: the training log is also written here while tracking is on, and logged as an
            artifact; None for no log file.
        http_timeout, http_max_retries, http_backoff_factor: set as MLflow's
            ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (seconds per request), ``..._MAX_RETRIES`` and
            ``..._BACKOFF_FACTOR`` for this process when tracking is on; None leaves MLflow's
            setting (environment or default: 120 s, 7 retries, factor 2, about 4 minutes).
        close_check_timeout: seconds of the health check before the end-of-run attempt to close
            a run whose tracking failed.
    """

    def __init__(
        self,
        params: Optional[Mapping[str, Any]] = None,
        datalist: Optional[str] = None,
        artifacts: Sequence[Any] = (),
        loss_function: Any = None,
        log_file: Optional[str] = None,
        http_timeout: Optional[int] = 15,
        http_max_retries: Optional[int] = 2,
        http_backoff_factor: Optional[int] = 1,
        close_check_timeout: float = 2.0,
    ) -> None:
        self.params: Dict[str, Any] = dict(params or {})
        self.datalist = datalist
        self.artifacts = [str(a) for a in artifacts if isinstance(a, (str, os.PathLike)) and str(a)]
        self.loss_function = loss_function
        self.log_file = log_file
        self.http = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": http_timeout,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": http_max_retries,
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": http_backoff_factor,
        }
        self.close_check_timeout = close_check_timeout
        #: what failed first ("<what>: <error>"), None while tracking works
        self.failure: Optional[str] = None
        self.failed_at: Optional[str] = None
        self._log_handler: Optional[logging.Handler] = None

    # -- setup ---------------------------------------------------------------------------------

    def wrap(self, handlers: Optional[Sequence[Any]], run_details: bool = False) -> List[Any]:
        """``handlers`` with each MONAI ``MLFlowHandler`` attached through this guard."""
        from monai.handlers import MLFlowHandler

        wrapped: List[Any] = []
        for handler in handlers or []:
            if isinstance(handler, MLFlowHandler):
                self._set_http_limits()
                if run_details:
                    self._add_run_details(handler)
                handler = _Guarded(handler, self, run_details)
            wrapped.append(handler)
        return wrapped

    def _set_http_limits(self) -> None:
        for name, value in self.http.items():
            if value is not None:
                os.environ[name] = str(int(value))
        retries = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(f, _RetriesToDebug) for f in retries.filters):
            retries.addFilter(_RetriesToDebug())

    def _add_run_details(self, handler: Any) -> None:
        """The bundle's params, artifacts and loss parts, through MONAI's own handler settings.

        The params are the executed config's values (:func:`config_params` of the config file
        MONAI saved for the run, among the handler's artifacts) plus ``params``: what ran, not a
        second list of settings to keep in step with train.json.
        """
        handler.artifacts = tuple(_executed_config_path(a) for a in handler.artifacts or ())
        executed = [a for a in handler.artifacts if str(a).endswith(".json") and Path(str(a)).is_file()]
        params = {key: _param(value) for path in executed for key, value in config_params(path).items()}
        params.update({key: _param(value) for key, value in self.params.items()})
        if self.datalist is not None:
            params["datalist"] = _param(self.datalist)
            params["datalist_sha256"] = sha256_of(self.datalist) if Path(str(self.datalist)).is_file() else "None"
        handler.experiment_param = {**(handler.experiment_param or {}), **params}
        files = [*self.artifacts, *([self.log_file] if self.log_file else [])]
        handler.artifacts = tuple(a for a in (*handler.artifacts, *files) if a)
        if self.loss_function is not None:
            handler.output_transform = LossParts(self.loss_function, handler.output_transform, handler.tag_name)

    # -- guarded calls -------------------------------------------------------------------------

    def call(self, handler: Any, what: str, method: Callable, *args: Any) -> bool:
        """Run one MLflow call unless tracking is off; on the first failure warn once and switch off."""
        if self.failure is not None:
            return False
        try:
            method(*args)
            return True
        except Exception as err:  # tracking must never stop training, whatever the MLflow error is
            self.failure = f"{what}: {_short(err)}"
            engine = args[0] if args and isinstance(args[0], Engine) else None
            if engine is not None:
                self.failed_at = _where(engine)
            logger.warning(
                "MLflow tracking at %s failed while %s%s (%s): tracking is off for the rest of this run, "
                "training continues",
                _uri(handler), what, f" at {self.failed_at}" if engine is not None else "", _short(err),
            )
            return False

    def finish(self, handler: Any) -> None:
        """Close the handler's run at the end of training; after a failure, try once and say how it ended."""
        run = handler.cur_run
        if self.failure is None:
            if self.call(handler, "closing the run", handler.close) or run is None:
                return
        elif run is None:  # no run was created; still release a local store
            try:
                handler.close()
            except Exception:  # noqa: BLE001 - nothing left to close
                pass
            return
        uri, run_id = _uri(handler), run.info.run_id
        stop = f"stops at {self.failed_at}" if self.failed_at else "is incomplete"
        note = f"tracking failed ({self.failure}); the record {stop}, the training went on"
        reason = _unreachable(uri, self.close_check_timeout)
        if reason is None:
            try:
                handler.client.set_tag(run_id, INCOMPLETE_TAG, _param(note, 5000))
                handler.run_finish_status = "FAILED"
                handler.close()
                logger.info("MLflow run %s at %s closed as FAILED: its record %s", run_id, uri, stop)
                return
            except Exception as err:  # noqa: BLE001 - reported below
                reason = _short(err)
        remembered = remember_unclosed_run(uri, run_id, note)
        logger.warning(
            "MLflow run %s at %s could not be closed (%s): it stays RUNNING there%s; its record %s",
            run_id, uri, reason, " until the next training against that server closes it as FAILED" if remembered else "", stop,
        )

    def close_earlier_runs(self, handler: Any) -> None:
        """Close the runs earlier trainings left RUNNING at this handler's server (:mod:`.unclosed_runs`)."""
        uri = _uri(handler)
        if self.failure is None and _unreachable(uri, self.close_check_timeout) is None:
            close_unclosed_runs(uri, INCOMPLETE_TAG)

    # -- training log file ---------------------------------------------------------------------

    def open_log(self) -> None:
        if not self.log_file or self._log_handler is not None:
            return
        try:
            Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.log_file, mode="w", encoding="utf-8")
        except OSError as err:
            logger.warning("cannot write the training log %s (%s)", self.log_file, err)
            return
        root = logging.getLogger()
        formatter = next((h.formatter for h in root.handlers if h.formatter is not None), None)
        handler.setFormatter(formatter or logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
        self._log_handler = handler

    def flush_log(self) -> None:
        if self._log_handler is not None:
            self._log_handler.flush()

    def close_log(self) -> None:
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


#: the executed config's path as MONAI 1.6 builds it when ``output_dir`` is a plain command-line
#: string: ``<output_dir> + '/config_<time>.json'`` (it appends an expression's tail to a value)
_UNPARSED_CONFIG_PATH = re.compile(r"^(?P<folder>.+) \+ '/(?P<name>config_[0-9_]+\.json)'$")


def _executed_config_path(artifact: Any) -> Any:
    """The real path of the executed config among a handler's artifacts; other artifacts unchanged."""
    match = _UNPARSED_CONFIG_PATH.match(str(artifact)) if isinstance(artifact, str) else None
    return os.path.join(match["folder"], match["name"]) if match else artifact


def _where(engine: Engine) -> str:
    """Where a training stands, for the log: "epoch 1, iteration 3", "the validation of epoch 2"."""
    from monai.engines import Evaluator

    state = engine.state
    if isinstance(engine, Evaluator):
        return f"the validation of epoch {state.epoch}"
    if not state.iteration:
        return "the start"
    return f"epoch {state.epoch}, iteration {state.iteration}"


def _uri(handler: Any) -> str:
    return str(getattr(getattr(handler, "client", None), "tracking_uri", "?"))


class _Guarded:
    """One MONAI ``MLFlowHandler`` attached like its own ``attach`` does, each call through the guard."""

    def __init__(self, handler: Any, guard: MLflowGuard, run_details: bool) -> None:
        self.handler = handler
        self.guard = guard
        self.run_details = run_details

    def attach(self, engine: Engine) -> None:
        handler = self.handler
        engine.add_event_handler(Events.STARTED, self._started)
        if handler.iteration_log:
            event = Events.ITERATION_COMPLETED
            if callable(handler.iteration_log):
                event = event(event_filter=handler.iteration_log)
            engine.add_event_handler(event, self._iteration_completed)
        if handler.epoch_log:
            event = Events.EPOCH_COMPLETED
            if callable(handler.epoch_log):
                event = event(event_filter=handler.epoch_log)
            engine.add_event_handler(event, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        if self.run_details:
            self.guard.open_log()
            self.guard.close_earlier_runs(self.handler)
        self.guard.call(self.handler, "starting the run", self.handler.start, engine)

    def _iteration_completed(self, engine: Engine) -> None:
        self.guard.call(self.handler, "logging an iteration", self.handler.iteration_completed, engine)

    def _epoch_completed(self, engine: Engine) -> None:
        self.guard.call(self.handler, "logging an epoch", self.handler.epoch_completed, engine)

    def _completed(self, engine: Engine) -> None:
        if self.run_details:
            self.guard.flush_log()
        self.guard.call(self.handler, "logging the artifacts", self.handler.complete)
        if self.handler.close_on_complete:
            self.guard.finish(self.handler)
        if self.run_details:
            self.guard.close_log()

