"""Build the shareable zip of a trained bundle: configs, docs, code, weights, checksums.

    python scripts/package_bundle.py --output_dir dist [--overrides "{'base_channels': 16}"]

Writes dist/munet_ultrasound_v<version>.zip (unpacks to munet_ultrasound/ with
models/model.pt, models/model.ts, large_files.yml and checksums.sha256) and prints its sha256:
send that hash to the receiver by another channel.
"""

from __future__ import annotations

import fire

from bundle.sharing.checksums import sha256_of
from bundle.sharing.package import build_package


def main(bundle_root: str = ".", output_dir: str = "dist", name: str = "munet_ultrasound", overrides: dict | None = None, url_base: str = "") -> None:
    """Package ``bundle_root``; ``overrides`` are the config values training was run with."""
    archive = build_package(bundle_root, output_dir, name, overrides or {}, url_base)
    print(f"wrote {archive}\nsha256 {sha256_of(archive)}")


if __name__ == "__main__":
    fire.Fire(main)
