"""Run the MONAI model zoo's checks on a bundle, offline (exit code 1 when one fails).

    python scripts/verify_bundle.py [--bundle_root .] [--ckpt_file models/model.pt]
"""

from __future__ import annotations

import sys

import fire

from bundle.sharing.zoo_checks import run_zoo_checks


def main(bundle_root: str = ".", ckpt_file: str = "") -> None:
    """Verify ``bundle_root``; ``ckpt_file`` defaults to models/model.pt (random weights if absent)."""
    results = run_zoo_checks(bundle_root, ckpt_file or None)
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    fire.Fire(main)
