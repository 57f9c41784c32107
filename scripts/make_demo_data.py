"""Write the synthetic MUNet demo ultrasound dataset (images, masks, datalist.json).

Usage (from the repository root):
    python scripts/make_demo_data.py --output_dir demo_data --n_train 48 --n_val 16 --n_test 16
    python scripts/make_demo_data.py --output_dir demo_dicom --image_format dicom   # ultrasound DICOM images
"""

from __future__ import annotations

import os

import fire

from bundle.dataset_tools.demo_dataset import generate_demo_dataset


def main(output_dir: str = "demo_data", **options: object) -> None:
    """Generate the synthetic dataset under ``output_dir``.

    ``options`` are those of ``bundle.dataset_tools.demo_dataset.generate_demo_dataset`` (``--n_train``,
    ``--n_val``, ``--n_test``, ``--min_size``, ``--max_size``, ``--seed``, ``--malignant_fraction``,
    ``--image_format png|dicom``); an unknown one is an error naming it.
    """
    generate_demo_dataset(output_dir, **options)
    print(f"datalist: {os.path.join(os.path.abspath(output_dir), 'datalist.json')}")


if __name__ == "__main__":
    fire.Fire(main)
