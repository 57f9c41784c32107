"""The receiving side of a shared bundle: unpack and verify, review the configs, then run.

    python scripts/receive_bundle.py unpack --archive munet_ultrasound_v0.2.0.zip --destination /data/bundles/munet \\
        [--expected_sha256 <hash sent by the sender>]
    python scripts/receive_bundle.py review --bundle_root /data/bundles/munet/munet_ultrasound
    python scripts/receive_bundle.py verify --bundle_root /data/bundles/munet/munet_ultrasound

``unpack`` refuses any zip whose files do not match checksums.sha256 (altered, missing or added
files) and imports nothing from the bundle. ``review`` lists every import, ``_target_`` and ``$``
expression of the configs, since configs run Python when a workflow starts; read it first.
Then, inside the bundle folder:

    python -m monai.bundle run inferring --meta_file configs/metadata.json --config_file configs/inference.json \\
        --logging_file configs/logging.conf --datalist /path/to/images --dataset_dir /path/to/images
"""

from __future__ import annotations

import sys
from pathlib import Path

import fire

from bundle.sharing.checksums import IntegrityError, verify_manifest
from bundle.sharing.package import unpack_package
from bundle.sharing.review import format_review, review_configs


def unpack(archive: str, destination: str, expected_sha256: str = "") -> None:
    """Unpack into an empty folder and verify every checksum; prints the review summary."""
    try:
        root = unpack_package(archive, destination, expected_sha256 or None)
    except IntegrityError as err:
        print(f"refused: {err}", file=sys.stderr)
        sys.exit(2)
    entries = review_configs(root)
    print(f"verified {root}: every file matches checksums.sha256")
    flagged = [e for e in entries if e.flagged]
    if flagged:
        print(format_review(flagged))
    print(f"{len(entries)} executable config entries, {len(flagged)} flagged; list them all with: review --bundle_root {root}")


def verify(bundle_root: str) -> None:
    """Verify an unpacked bundle against its checksums again (e.g. before each use)."""
    try:
        files = verify_manifest(Path(bundle_root))
    except IntegrityError as err:
        print(f"refused: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"{bundle_root}: {len(files)} files match checksums.sha256")


def review(bundle_root: str) -> None:
    """List every import, _target_ and $ expression of the bundle's configs ('!' = look closer)."""
    print(format_review(review_configs(bundle_root)))


if __name__ == "__main__":
    fire.Fire({"unpack": unpack, "verify": verify, "review": review})
