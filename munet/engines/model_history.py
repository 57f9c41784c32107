"""Published weights of a bundle folder, kept so that any of the last few can be served again.

A server-side training publishes new weights only when they score at least as well as the served
ones, but the score is only as good as its validation images; one ``.prev`` file was not enough
(two queued trainings replaced it, and the original model was gone). Each publication is kept as
``models/history/<weights stem>/<n>/`` holding the weights, their sidecar and ``record.json``
(when, the scores, the validation images and the sha256 of their labels); the last ``keep``
entries stay. :func:`rollback` serves an entry again, itself recorded as a new entry, so a
rollback can be rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from munet.engines.checkpoint import atomic_copy
from munet.engines.weights_info import sidecar_path
from munet.utils.hashing import sha256_of

__all__ = ["DEFAULT_KEEP", "history_dir", "entries", "record_publication", "rollback", "labels_digest"]

#: publications kept per weights file
DEFAULT_KEEP = 5

PathLike = Union[str, Path]


def history_dir(bundle_root: PathLike, weights_name: str = "model.pt") -> Path:
    """``<bundle>/models/history/<weights stem>``."""
    return Path(bundle_root) / "models" / "history" / Path(weights_name).stem


def entries(bundle_root: PathLike, weights_name: str = "model.pt") -> List[Dict[str, Any]]:
    """The kept publications, oldest first: each ``record.json`` with its ``entry`` number."""
    folder = history_dir(bundle_root, weights_name)
    found = []
    for entry in sorted((p for p in folder.glob("*") if p.name.isdigit()), key=lambda p: int(p.name)) if folder.is_dir() else []:
        try:
            record = json.loads((entry / "record.json").read_text())
        except (OSError, ValueError):
            continue
        found.append({**record, "entry": int(entry.name)})
    return found


def labels_digest(label_files: Sequence[PathLike]) -> str:
    """One sha256 over the label files' own sha256 (sorted by name): which labels a score was measured on."""
    import hashlib

    listing = "".join(f"{path.name}:{sha256_of(path)}\n" for path in sorted(Path(p) for p in label_files))
    return hashlib.sha256(listing.encode()).hexdigest()


def record_publication(bundle_root: PathLike, weights_name: str, record: Mapping[str, Any], keep: int = DEFAULT_KEEP) -> int:
    """Keep the weights now served as ``weights_name`` (and their sidecar) as a new history entry
    with ``record``; drop entries beyond the last ``keep``. Returns the entry's number."""
    served = Path(bundle_root) / "models" / weights_name
    folder = history_dir(bundle_root, weights_name)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name) for p in folder.glob("*") if p.name.isdigit()]
    number = max(numbers, default=0) + 1
    staging = folder / f".{number}.writing"
    staging.mkdir()
    atomic_copy(served, staging / weights_name)
    if sidecar_path(served).is_file():
        atomic_copy(sidecar_path(served), staging / sidecar_path(served).name)
    content = {"published": time.strftime("%Y-%m-%dT%H:%M:%S"), "sha256": sha256_of(served), **dict(record)}
    (staging / "record.json").write_text(json.dumps(content, indent=1))
    os.replace(staging, folder / str(number))
    for old in sorted(numbers + [number])[:-keep] if keep > 0 else []:
        shutil.rmtree(folder / str(old), ignore_errors=True)
    return number


def rollback(bundle_root: PathLike, entry: Optional[int] = None, weights_name: str = "model.pt") -> Dict[str, Any]:
    """Serve history ``entry`` again (default: the one before the last, i.e. the model before the
    latest publication); the served weights are replaced atomically, and the result is recorded as a
    new entry. Returns that entry's record."""
    kept = entries(bundle_root, weights_name)
    if not kept:
        raise FileNotFoundError(f"no published {weights_name} kept under {history_dir(bundle_root, weights_name)}")
    if entry is None:
        if len(kept) < 2:
            raise ValueError(f"only one {weights_name} publication is kept (entry {kept[0]['entry']}): nothing before it")
        entry = kept[-2]["entry"]
    chosen = next((e for e in kept if e["entry"] == int(entry)), None)
    if chosen is None:
        raise ValueError(f"no history entry {entry} for {weights_name}: kept entries are {', '.join(str(e['entry']) for e in kept)}")
    source = history_dir(bundle_root, weights_name) / str(chosen["entry"])
    served = Path(bundle_root) / "models" / weights_name
    side = source / sidecar_path(served).name
    if side.is_file():
        atomic_copy(side, sidecar_path(served))
    atomic_copy(source / weights_name, served)
    number = record_publication(bundle_root, weights_name, {"rolled_back_to": chosen["entry"],
                                                            **{k: v for k, v in chosen.items() if k not in ("entry", "published", "sha256")}})
    return {**entries(bundle_root, weights_name)[-1], "entry": number}
