"""sha256 manifests in ``sha256sum`` format, so a receiver can also check with coreutils alone."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Iterable, List

__all__ = ["MANIFEST", "IntegrityError", "sha256_of", "write_manifest", "read_manifest", "verify_manifest"]

#: File name of the checksum manifest at the bundle root (``sha256sum -c checksums.sha256`` works).
MANIFEST = "checksums.sha256"


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (the one file hash of the bundle: weights, manifests, datalists)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class IntegrityError(ValueError):
    """A received bundle whose files do not match its checksums."""


def write_manifest(root: Path, files: Iterable[Path]) -> Path:
    """Write ``root/checksums.sha256`` for ``files`` (paths relative to ``root``, sorted)."""
    lines = [f"{sha256_of(root / f)}  {Path(f).as_posix()}" for f in sorted(files, key=lambda p: Path(p).as_posix())]
    path = root / MANIFEST
    path.write_text("\n".join(lines) + "\n")
    return path


def read_manifest(root: Path) -> Dict[str, str]:
    """``{relative path: sha256}`` from ``root/checksums.sha256``."""
    path = root / MANIFEST
    if not path.is_file():
        raise IntegrityError(f"{root} has no {MANIFEST}: cannot verify the bundle, refusing it")
    entries: Dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise IntegrityError(f"{path}: line {number} is not '<sha256>  <path>'")
        entries[name] = digest
    return entries


def verify_manifest(root: Path) -> List[str]:
    """Check every file against the manifest; files missing, altered or not listed are refused.

    Returns the verified relative paths; raises :class:`IntegrityError` naming every mismatch.
    """
    root = Path(root)
    expected = read_manifest(root)
    problems: List[str] = []
    for name, digest in expected.items():
        file = root / name
        if not file.is_file():
            problems.append(f"{name}: listed in {MANIFEST} but missing")
        elif sha256_of(file) != digest:
            problems.append(f"{name}: sha256 differs from {MANIFEST} (altered after packaging)")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for name in sorted(present - set(expected) - {MANIFEST}):
        problems.append(f"{name}: not listed in {MANIFEST} (added after packaging)")
    if problems:
        raise IntegrityError(f"{root}: the bundle failed its checksum verification, refusing it:\n  " + "\n  ".join(problems))
    return sorted(expected)
