"""MLflow tracking glue: skip tracking when it cannot work, and log what MONAI's handler leaves out.

``python -m monai.bundle run ... --tracking mlflow`` appends MONAI's ``MLFlowHandler`` to
``train#handlers`` and ``validate#handlers``; each is disabled by the config value
``is_not_rank0``. train.json defines that value as ``not tracking_enabled(@tracking_uri)``, so
only rank 0 tracks, and a tracking server that is down turns tracking off with one warning
instead of stopping the training (MLflow would otherwise retry for minutes, then raise).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch.distributed as dist
from ignite.engine import Engine, Events

__all__ = ["tracking_enabled", "MLflowExtras"]

logger = logging.getLogger("munet")
_warned: set = set()


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def tracking_enabled(tracking_uri: Optional[str], timeout: float = 5.0) -> bool:
    """True when this process should talk to MLflow: rank 0 and, for an HTTP server, reachable."""
    if _rank() > 0:
        return False
    uri = str(tracking_uri or "")
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status < 500:
                return True
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = str(getattr(err, "reason", err))
    else:
        reason = f"HTTP {response.status}"
    if uri not in _warned:
        _warned.add(uri)
        logger.warning("MLflow tracking server %s is not reachable (%s): training continues without tracking", uri, reason)
    return False


def _mlflow_handlers(engine: Engine) -> List[Any]:
    """The MONAI MLFlowHandler instances attached to ``engine`` (found through their bound methods)."""
    from monai.handlers import MLFlowHandler

    found: List[Any] = []
    for handlers in engine._event_handlers.values():  # ignite keeps (handler, args, kwargs) per event
        for handler, *_ in handlers:
            owner = getattr(handler, "__self__", None)
            if isinstance(owner, MLFlowHandler) and owner not in found:
                found.append(owner)
    return found


class MLflowExtras:
    """Log the run's hyper-parameters and artifacts (best checkpoint, ...) to MONAI's MLflow run.

    MONAI's ``MLFlowHandler`` logs metrics and the executed config; its params and artifacts are
    fixed by the tracking settings. This handler, listed in ``train#handlers`` before the one
    ``--tracking mlflow`` appends, logs ``params`` at the first epoch (when the run exists) and the
    existing files of ``artifacts`` when training completes (before the run is closed). Without
    ``--tracking`` it does nothing.
    """

    def __init__(self, params: Optional[Mapping[str, Any]] = None, artifacts: Sequence[str] = ()) -> None:
        self.params: Dict[str, Any] = dict(params or {})
        self.artifacts = list(artifacts)
        self._params_logged = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._log_params)
        engine.add_event_handler(Events.COMPLETED, self._log_artifacts)

    def _log_params(self, engine: Engine) -> None:
        if self._params_logged:
            return
        self._params_logged = True
        for handler in _mlflow_handlers(engine):
            if handler.cur_run is not None and self.params:
                handler._log_params({k: str(v)[:500] for k, v in self.params.items()})

    def _log_artifacts(self, engine: Engine) -> None:
        for handler in _mlflow_handlers(engine):
            if handler.cur_run is None:
                continue
            for path in self.artifacts:
                if Path(path).is_file():
                    handler.client.log_artifact(handler.cur_run.info.run_id, str(path))
