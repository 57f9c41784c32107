"""The dataset kind as a config value: decoded images cached in memory, on disk, or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import json_hashing

__all__ = ["CACHE_MODES", "make_dataset"]

CACHE_MODES = ("memory", "disk", "none")


def make_dataset(
    data: List[Dict],
    transform: Callable,
    cache: str = "memory",
    cache_dir: Optional[str] = None,
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Dataset:
    """A MONAI dataset whose deterministic transforms (reading and decoding DICOM included) run once.

    - ``memory``: ``CacheDataset``, the deterministic part of every case kept in RAM (fastest;
      needs memory for the whole resized set, about 0.3 MB per case at 256 px).
    - ``disk``: ``PersistentDataset`` under ``cache_dir`` (survives restarts, for sets larger than
      RAM; entries are reloaded with ``weights_only=True``).
    - ``none``: plain ``Dataset``, every epoch re-reads the files.
    Random transforms always run per epoch after the cached part.
    """
    if cache == "memory":
        return CacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers, progress=False)
    if cache == "disk":
        if not cache_dir:
            raise ValueError("cache='disk' needs a cache_dir")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # the transforms are part of the key, so a changed image_size never reuses a stale entry
        return PersistentDataset(data, transform, cache_dir=cache_dir, hash_transform=json_hashing, track_meta=True)
    if cache == "none":
        return Dataset(data, transform)
    raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
