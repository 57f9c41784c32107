"""MLflow runs a training could not close because the tracking server was down at its end.

MLflow has no way to close a run from the server side: a run whose training lost its server
stays RUNNING there for ever, and reads as a training still under way. The training that left
it records the run here (a small JSON file per user); the next training against the same
server closes it as FAILED, with the ``munet.tracking`` tag saying where its record stops.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List

__all__ = ["STATE_DIR_ENV", "unclosed_runs_file", "remember_unclosed_run", "close_unclosed_runs"]

logger = logging.getLogger("munet")

#: where the record lives (default ``$XDG_STATE_HOME/munet`` or ``~/.local/state/munet``)
STATE_DIR_ENV = "MUNET_STATE_DIR"


def unclosed_runs_file() -> Path:
    base = os.environ.get(STATE_DIR_ENV) or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "munet"
    return Path(base) / "unclosed_mlflow_runs.json"


def _read() -> List[Dict]:
    path = unclosed_runs_file()
    try:
        records = json.loads(path.read_text())
        return records if isinstance(records, list) else []
    except (OSError, ValueError):
        return []


def _write(records: List[Dict]) -> None:
    path = unclosed_runs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(records, indent=1))
    os.replace(partial, path)


def remember_unclosed_run(uri: str, run_id: str, note: str) -> bool:
    """Record a run left RUNNING at ``uri``; False when the record cannot be written (said in the log)."""
    try:
        records = [r for r in _read() if r.get("run_id") != run_id]
        _write(records + [{"uri": uri, "run_id": run_id, "note": note, "left_at": time.strftime("%Y-%m-%dT%H:%M:%S")}])
        return True
    except OSError as err:
        logger.warning("cannot record the unclosed MLflow run %s in %s (%s)", run_id, unclosed_runs_file(), err)
        return False


def close_unclosed_runs(uri: str, tag: str) -> int:
    """Close every recorded run of ``uri`` as FAILED with ``tag`` = its note; returns how many.
    Call it once the server answers; a run that cannot be closed now stays recorded."""
    records = _read()
    mine = [r for r in records if r.get("uri") == uri]
    if not mine:
        return 0
    from mlflow.tracking import MlflowClient

    client, closed = MlflowClient(tracking_uri=uri), []
    for record in mine:
        try:
            run = client.get_run(record["run_id"])
            if run.info.status == "RUNNING":
                client.set_tag(record["run_id"], tag, record["note"])
                client.set_terminated(record["run_id"], "FAILED")
                logger.info("MLflow run %s at %s, left RUNNING when the server went away (%s), closed as FAILED",
                            record["run_id"], uri, record.get("left_at", "?"))
            closed.append(record["run_id"])
        except Exception as err:  # noqa: BLE001 - kept for the next training; tracking never stops one
            logger.warning("could not close the earlier MLflow run %s at %s (%s); the next training tries again",
                           record["run_id"], uri, " ".join(str(err).split())[:200])
    if closed:
        try:
            _write([r for r in records if r.get("run_id") not in closed])
        except OSError as err:
            logger.warning("cannot update %s (%s)", unclosed_runs_file(), err)
    return len(closed)
