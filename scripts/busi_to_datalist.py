"""Turn the prepared BUSI folder into a MUNet datalist (optionally converting images and masks to DICOM).

Usage (from the repository root):
    python scripts/busi_to_datalist.py --busi_dir ../shared/data/busi --output_dir busi_data
    python scripts/busi_to_datalist.py --busi_dir ../shared/data/busi --output_dir busi_dicom --to_dicom True \\
        --include_normal True --drop_flags "label_conflict,normal_duplicates_lesion_image"
    python scripts/busi_to_datalist.py --busi_dir ../shared/data/busi --output_dir /tmp/busi_small --limit_per_split 4

Splits come from the manifest as they are (near-duplicate groups stay in one split). Without
``--to_dicom`` the datalist holds absolute paths to the PNGs and nothing is copied; with it,
``OUT/dicom/<id>.dcm`` (ultrasound image) and ``OUT/masks/<id>.dcm`` (mask) are written and the
datalist holds paths relative to OUT. See bundle/dataset_tools/busi.py.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence, Union

import fire

from bundle.dataset_tools.busi import BusiError, convert_busi


def main(
    busi_dir: str = "../shared/data/busi",
    output_dir: str = "busi_data",
    to_dicom: bool = False,
    include_normal: bool = False,
    drop_flags: Union[str, Sequence[str], None] = None,
    limit_per_split: Optional[int] = None,
) -> None:
    """Write ``output_dir/datalist.json`` for BUSI (see ``bundle.dataset_tools.busi.convert_busi``).

    Args:
        busi_dir: prepared BUSI folder with manifest.csv.
        output_dir: output folder.
        to_dicom: also write the images and masks as DICOM under output_dir and list those.
        include_normal: list the normal (lesion-free) images under normal_training/normal_validation/normal_test.
        drop_flags: comma-separated manifest flags whose rows are left out, e.g.
            "label_conflict,normal_duplicates_lesion_image".
        limit_per_split: only the first N cases per split (half of each class where possible), for quick tests.
    """
    try:
        convert_busi(
            busi_dir,
            output_dir,
            to_dicom=bool(to_dicom),
            include_normal=bool(include_normal),
            drop_flags=drop_flags,
            limit_per_split=limit_per_split,
        )
    except BusiError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    fire.Fire(main)
