"""The synthetic demo dataset: images, masks and a MONAI decathlon-style ``datalist.json``.

Cases come from :mod:`munet.dataset_tools.ultrasound_simulator`; with ``image_format="dicom"`` the
images are framed and written as scanner-like DICOM by :mod:`munet.dataset_tools.scanner_frame`.
Everything is driven by seeded ``numpy.random.Generator``s, so the same arguments give
byte-identical files.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from PIL import Image

from munet.constants import SIZE_MULTIPLE
from munet.dataset_tools.scanner_frame import write_dicom_case
from munet.dataset_tools.ultrasound_simulator import ATYPICAL_FRACTION, make_case

__all__ = ["generate_demo_dataset", "IMAGE_FORMATS"]

#: Values of ``generate_demo_dataset(image_format=...)``.
IMAGE_FORMATS: tuple[str, ...] = ("png", "dicom")

_SPLITS: tuple[tuple[str, str], ...] = (("training", "train"), ("validation", "val"), ("test", "test"))


def _draw_size(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform size in [lo, hi], nudged off multiples of 32 when the range allows it."""
    s = int(rng.integers(lo, hi + 1))
    if s % SIZE_MULTIPLE == 0 and hi > lo:
        s = s + 1 if s + 1 <= hi else s - 1
    return s


def generate_demo_dataset(
    output_dir: str,
    n_train: int = 48,
    n_val: int = 16,
    n_test: int = 16,
    min_size: int = 180,
    max_size: int = 300,
    seed: int = 0,
    malignant_fraction: float = 0.4,
    image_format: str = "png",
) -> dict[str, Any]:
    """Write a synthetic ultrasound dataset and its MONAI decathlon-style ``datalist.json``.

    Files: ``images/case_XXXX.png`` (8-bit grayscale) and ``masks/case_XXXX.png`` (8-bit, 0/255)
    under ``output_dir``. Heights and widths are drawn independently in ``[min_size, max_size]``
    (non-square, deliberately not multiples of 32). Each split holds
    ``round(n * malignant_fraction)`` malignant cases in shuffled order. Same arguments give
    byte-identical files.

    With ``image_format="dicom"`` the images are ``images/case_XXXX.dcm`` Ultrasound Image DICOM
    files instead: the same tissue image as in PNG mode (same seed) framed by a black border with
    burnt-in text (8-20 px on top, 2-10 px below, 4-16 px left, 6-16 px right), which is declared as
    the ultrasound region (0018,6011) with 0.08-0.12 mm pixels. Per block of 8 cases: 4 grayscale
    uncompressed, 2 RGB uncompressed with a coloured caliper cross or text box outside the lesion,
    1 colour JPEG Baseline (YBR_FULL_422), 1 grayscale JPEG. UIDs are derived from ``seed`` and the
    case index, so same arguments still give byte-identical files. The masks stay PNG, cover the
    whole frame (same rows/columns as the DICOM image) and are zero outside the tissue region.

    Returns:
        The datalist dict (also written to ``output_dir/datalist.json``); entries are
        ``{"image": "images/case_0000.png", "label": "masks/case_0000.png", "class": 0 | 1}`` with
        paths relative to ``output_dir`` (``.dcm`` images with ``image_format="dicom"``).
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    counts = {"training": int(n_train), "validation": int(n_val), "test": int(n_test)}
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"case counts must be >= 0, got {counts}")
    min_size, max_size = int(min_size), int(max_size)
    if not 32 <= min_size <= max_size:
        raise ValueError(f"need 32 <= min_size <= max_size, got {min_size}, {max_size}")
    if not 0.0 <= float(malignant_fraction) <= 1.0:
        raise ValueError(f"malignant_fraction must be in [0, 1], got {malignant_fraction}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")

    img_dir = os.path.join(output_dir, "images")
    msk_dir = os.path.join(output_dir, "masks")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(msk_dir, exist_ok=True)

    datalist: dict[str, Any] = {
        "name": "MUNet synthetic ultrasound demo",
        "description": (
            "Synthetic 2D B-mode ultrasound images with one hypoechoic lesion each (no patient data). "
            "Benign: oval, circumscribed, wider than tall, posterior enhancement; malignant: irregular/"
            f"spiculated, taller than wide, posterior shadowing; ~{int(ATYPICAL_FRACTION * 100)}% atypical "
            f"cases per class. seed={seed}, sizes in [{min_size}, {max_size}]."
            + (
                " Images are ultrasound DICOM files (tissue inside a black frame with burnt-in text, "
                "declared as the ultrasound region; grayscale/RGB, uncompressed/JPEG Baseline)."
                if image_format == "dicom"
                else ""
            )
        ),
        "modality": {"0": "ultrasound"},
        "labels": {"0": "background", "1": "lesion"},
        "classes": {"0": "benign", "1": "malignant"},
        "training": [],
        "validation": [],
        "test": [],
    }

    case_idx = 0
    for split_idx, (split, _) in enumerate(_SPLITS):
        n = counts[split]
        n_mal = int(round(n * float(malignant_fraction)))
        labels = np.array([1] * n_mal + [0] * (n - n_mal), dtype=np.int64)
        np.random.default_rng([seed, 0, split_idx]).shuffle(labels)
        for label in labels.tolist():
            rng = np.random.default_rng([seed, 1, case_idx])
            h = _draw_size(rng, min_size, max_size)
            w = _draw_size(rng, min_size, max_size)
            image, mask = make_case(rng, h, w, malignant=bool(label))
            name = f"case_{case_idx:04d}.png"
            if image_format == "dicom":
                image_name = f"case_{case_idx:04d}.dcm"
                frame_rng = np.random.default_rng([seed, 2, case_idx])
                mask = write_dicom_case(os.path.join(img_dir, image_name), frame_rng, image, mask, seed, case_idx)
            else:
                image_name = name
                Image.fromarray(image).save(os.path.join(img_dir, name))
            Image.fromarray((mask * 255).astype(np.uint8)).save(os.path.join(msk_dir, name))
            datalist[split].append({"image": f"images/{image_name}", "label": f"masks/{name}", "class": int(label)})
            case_idx += 1
        print(f"wrote {n} {split} cases ({n_mal} malignant) to {os.path.abspath(output_dir)}")

    with open(os.path.join(output_dir, "datalist.json"), "w", encoding="utf-8") as f:
        json.dump(datalist, f, indent=2)
        f.write("\n")
    return datalist
