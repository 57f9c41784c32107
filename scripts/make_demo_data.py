"""Write the synthetic MUNet demo ultrasound dataset (images, masks, datalist.json).

Usage (from the repository root):
    python scripts/make_demo_data.py --output_dir demo_data --n_train 48 --n_val 16 --n_test 16
    python scripts/make_demo_data.py --output_dir demo_dicom --image_format dicom   # ultrasound DICOM images
"""

from __future__ import annotations

import os
import sys

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import fire  # noqa: E402

from bundle.data.synthetic import generate_demo_dataset  # noqa: E402


def main(
    output_dir: str = "demo_data",
    n_train: int = 48,
    n_val: int = 16,
    n_test: int = 16,
    min_size: int = 180,
    max_size: int = 300,
    seed: int = 0,
    malignant_fraction: float = 0.4,
    image_format: str = "png",
) -> None:
    """Generate the synthetic dataset under ``output_dir`` (see ``generate_demo_dataset``).

    ``image_format``: ``png`` (default) or ``dicom`` (scanner-like ultrasound DICOM images; masks stay PNG).
    """
    generate_demo_dataset(
        output_dir=output_dir,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        min_size=min_size,
        max_size=max_size,
        seed=seed,
        malignant_fraction=malignant_fraction,
        image_format=image_format,
    )
    print(f"datalist: {os.path.join(os.path.abspath(output_dir), 'datalist.json')}")


if __name__ == "__main__":
    fire.Fire(main)
