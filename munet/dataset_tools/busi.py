"""BUSI (Breast Ultrasound Images, Al-Dhabyani et al. 2020) -> MUNet decathlon-style datalist.

Reads the prepared BUSI folder (``manifest.csv`` + PNG images and masks, see its README) and
writes ``datalist.json`` with ``training`` / ``validation`` / ``test`` lists taken from the
manifest's ``split`` column as it is (the splits keep near-duplicate groups together; they are
never reassigned here). Entries are ``{"image", "label", "class", "id"}`` with ``class`` 0 benign /
1 malignant. Normal images (no lesion, empty masks) are only listed with ``include_normal``, under
``normal_training`` / ``normal_validation`` / ``normal_test`` and without ``class``.

With ``to_dicom`` every listed image is also written as an uncompressed ultrasound DICOM file
(``dicom/<id>.dcm``, no spacing since BUSI's is unknown) and its mask as a Secondary Capture DICOM
file (``masks/<id>.dcm``), so the whole DICOM path of the bundle runs on real images; the datalist
then holds paths relative to the output folder. Otherwise the datalist points at the PNGs with
absolute paths and nothing is copied. UIDs are derived from the case ids: converting twice gives
identical files.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "BusiError",
    "REQUIRED_COLUMNS",
    "KNOWN_FLAGS",
    "read_manifest",
    "select_rows",
    "convert_busi",
    "parse_flags",
]

#: Columns ``manifest.csv`` must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "image", "mask", "label", "split")
#: Flags the prepared BUSI manifest uses (``;``-separated in its ``flags`` column).
KNOWN_FLAGS: tuple[str, ...] = (
    "multi_mask_union",
    "color_overlay",
    "label_conflict",
    "exact_pixel_duplicate",
    "normal_duplicates_lesion_image",
)
_CLASSES = {"benign": 0, "malignant": 1}
_LABELS = ("benign", "malignant", "normal")
#: manifest split -> datalist key
_SPLIT_KEYS = {"train": "training", "val": "validation", "test": "test"}
_PROGRESS_EVERY = 50


class BusiError(ValueError):
    """The BUSI folder or its manifest cannot be used; the message says which file and why."""


def parse_flags(flags: str | Iterable[str] | None) -> tuple[str, ...]:
    """Flag names from ``"a,b"`` / ``"a;b"`` / a sequence (as Fire passes ``--drop_flags a,b``) / None."""
    if flags is None:
        return ()
    if isinstance(flags, str):
        parts: Iterable[str] = flags.replace(";", ",").split(",")
    else:
        parts = [str(p) for p in flags]
    return tuple(dict.fromkeys(p.strip() for p in parts if p and p.strip()))


def _row_flags(row: dict[str, str]) -> set[str]:
    return {f.strip() for f in (row.get("flags") or "").split(";") if f.strip()}


def read_manifest(busi_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``busi_dir/manifest.csv`` (in file order), checked for columns, labels, splits and unique ids."""
    root = Path(busi_dir)
    if not root.is_dir():
        raise BusiError(f"BUSI folder not found: {root} (pass --busi_dir, e.g. ../shared/data/busi)")
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise BusiError(f"{root} has no manifest.csv (expected the prepared BUSI folder with manifest.csv, images/, masks/)")
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise BusiError(
                f"{manifest}: missing column(s) {', '.join(missing)} (has: {', '.join(columns) or 'nothing'}; "
                f"required: {', '.join(REQUIRED_COLUMNS)})"
            )
        rows = [dict(r) for r in reader]
    if not rows:
        raise BusiError(f"{manifest}: no rows")
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        for col in REQUIRED_COLUMNS:
            if not (row.get(col) or "").strip():
                raise BusiError(f"{manifest} line {line}: empty {col!r}")
        if row["label"] not in _LABELS:
            raise BusiError(f"{manifest} line {line}: label {row['label']!r} is not one of {', '.join(_LABELS)}")
        if row["split"] not in _SPLIT_KEYS:
            raise BusiError(f"{manifest} line {line}: split {row['split']!r} is not one of {', '.join(_SPLIT_KEYS)}")
        if row["id"] in seen:
            raise BusiError(f"{manifest} line {line}: duplicate id {row['id']!r}")
        seen.add(row["id"])
    return rows


def _limit(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """First rows of one split, ``n`` in all, half of each lesion class where possible (manifest order kept).

    Malignant gets ``n // 2``, benign the rest; a class with too few rows leaves its share to the other.
    Normal rows (listed separately) are simply the first ``n``.
    """
    benign = [r for r in rows if r["label"] == "benign"]
    malignant = [r for r in rows if r["label"] == "malignant"]
    normal = [r for r in rows if r["label"] == "normal"]
    n_mal = min(n // 2, len(malignant))
    n_ben = min(n - n_mal, len(benign))
    n_mal = min(n - n_ben, len(malignant))
    keep = {id(r) for r in benign[:n_ben] + malignant[:n_mal] + normal[:n]}
    return [r for r in rows if id(r) in keep]


def select_rows(
    rows: Sequence[dict[str, str]],
    *,
    include_normal: bool = False,
    drop_flags: Sequence[str] = (),
    limit_per_split: int | None = None,
) -> tuple[list[dict[str, str]], Counter]:
    """The rows to list, in manifest order, and a Counter of rows dropped per flag.

    Normal rows are dropped unless ``include_normal``; rows carrying any of ``drop_flags`` are
    dropped (counted under each such flag); then ``limit_per_split`` keeps, per split, the first
    ``limit // 2`` malignant and the rest benign (and the first ``limit`` normal) rows.
    """
    drop = set(drop_flags)
    available = set(KNOWN_FLAGS) | {f for r in rows for f in _row_flags(r)}
    unknown = sorted(drop - available)
    if unknown:
        raise BusiError(f"unknown flag(s) in drop_flags: {', '.join(unknown)} (known: {', '.join(sorted(available))})")
    dropped: Counter = Counter()
    kept = []
    for row in rows:
        if row["label"] == "normal" and not include_normal:
            continue
        hit = _row_flags(row) & drop
        if hit:
            dropped.update(hit)
            continue
        kept.append(row)
    if limit_per_split is not None:
        n = int(limit_per_split)
        if n < 1:
            raise BusiError(f"limit_per_split must be >= 1, got {limit_per_split}")
        by_split = {s: _limit([r for r in kept if r["split"] == s], n) for s in _SPLIT_KEYS}
        keep_ids = {id(r) for part in by_split.values() for r in part}
        kept = [r for r in kept if id(r) in keep_ids]
    return kept, dropped


def _load_png(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise BusiError(f"{what} not found: {path}")
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "RGB"):
            if im.mode in ("I;16", "I;16B", "I", "F"):
                raise BusiError(f"{path}: {im.mode} images are not 8-bit; the converter writes 8-bit DICOM only")
            im = im.convert("RGB" if im.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
        return np.asarray(im)


def _write_case(row: dict[str, str], root: Path, out: Path) -> tuple[str, str]:
    """Write one image + mask pair as DICOM; returns their paths relative to ``out``."""
    import pydicom

    from munet.dataset_tools.dicom_writer import deterministic_uid, write_mask_dicom, write_ultrasound_dicom

    case = row["id"]
    pixels = _load_png(root / row["image"], "image")
    mask = _load_png(root / row["mask"], "mask")
    if mask.ndim == 3:
        mask = mask.any(axis=-1)
    if mask.shape[:2] != pixels.shape[:2]:
        raise BusiError(f"{case}: mask {mask.shape[:2]} and image {pixels.shape[:2]} differ in size")
    image_rel, mask_rel = f"dicom/{case}.dcm", f"masks/{case}.dcm"
    image_path = write_ultrasound_dicom(
        out / image_rel,
        pixels,
        photometric="MONOCHROME2" if pixels.ndim == 2 else "RGB",
        compression=None,
        spacing_mm=None,  # BUSI gives no pixel spacing
        patient_id=f"BUSI-{case}",
        study_uid=deterministic_uid("busi", case, "study"),
        series_uid=deterministic_uid("busi", case, "series"),
        sop_uid=deterministic_uid("busi", case, "image"),
        description=f"BUSI {case}",
    )
    reference = pydicom.dcmread(image_path, stop_before_pixels=True)
    write_mask_dicom(
        out / mask_rel,
        mask > 0,
        reference,
        sop_uid=deterministic_uid("busi", case, "mask"),
        series_uid=deterministic_uid("busi", case, "mask-series"),
    )
    return image_rel, mask_rel


def convert_busi(
    busi_dir: str | Path,
    output_dir: str | Path,
    *,
    to_dicom: bool = False,
    include_normal: bool = False,
    drop_flags: str | Iterable[str] | None = None,
    limit_per_split: int | None = None,
    log: Callable[[str], Any] | None = print,
) -> dict[str, Any]:
    """Write ``output_dir/datalist.json`` for the prepared BUSI folder (and DICOM copies with ``to_dicom``).

    Args:
        busi_dir: the prepared BUSI folder (``manifest.csv``, ``images/``, ``masks/``, ``normal/``).
        output_dir: where ``datalist.json`` (and with ``to_dicom`` ``dicom/`` and ``masks/``) go.
        to_dicom: write each image as ``dicom/<id>.dcm`` (Ultrasound Image, grayscale, uncompressed,
            no region/spacing) and its mask as ``masks/<id>.dcm`` (Secondary Capture, 0/255); the
            datalist then holds paths relative to ``output_dir``. Otherwise absolute paths to the PNGs.
        include_normal: also list the normal images (empty masks) under ``normal_<split key>``.
        drop_flags: flags (``"a,b"`` or a sequence) whose rows are left out, e.g.
            ``"label_conflict,normal_duplicates_lesion_image"`` for clean labels.
        limit_per_split: keep only the first N rows per split (N // 2 malignant, the rest benign
            where possible; first N normal), for quick tests.
        log: progress/summary printer (``None``: silent).

    Returns:
        The datalist dict (also written as ``output_dir/datalist.json``).
    """
    say = log or (lambda _msg: None)
    root = Path(busi_dir).expanduser().resolve()
    rows = read_manifest(root)
    flags = parse_flags(drop_flags)
    selected, dropped = select_rows(rows, include_normal=include_normal, drop_flags=flags, limit_per_split=limit_per_split)
    if not selected:
        raise BusiError("no cases left to list (check drop_flags / limit_per_split)")
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    datalist: dict[str, Any] = {
        "name": "BUSI breast ultrasound (benign/malignant lesions) for MUNet",
        "description": (
            "Breast Ultrasound Images (Al-Dhabyani et al., Data in Brief 28 (2020) 104863), prepared: 8-bit grayscale, "
            "longer side 320 px, mask = union of the lesion masks; splits from manifest.csv (near-duplicate groups "
            "kept together)."
            + (" Converted to DICOM (ultrasound image + Secondary Capture mask, no pixel spacing)." if to_dicom else "")
        ),
        "reference": "doi:10.1016/j.dib.2019.104863",
        "license": "CC0 1.0 (Kaggle copy); see the BUSI README",
        "source": str(root),
        "modality": {"0": "ultrasound"},
        "labels": {"0": "background", "1": "lesion"},
        "classes": {"0": "benign", "1": "malignant"},
        "dropped_flags": list(flags),
        "limit_per_split": limit_per_split,
    }
    for key in _SPLIT_KEYS.values():
        datalist[key] = []
    if include_normal:
        for key in _SPLIT_KEYS.values():
            datalist[f"normal_{key}"] = []

    start = time.perf_counter()
    for done, row in enumerate(selected, start=1):
        if to_dicom:
            image, label = _write_case(row, root, out)
        else:
            image, label = str(root / row["image"]), str(root / row["mask"])
            for what, path in (("image", image), ("mask", label)):
                if not Path(path).is_file():
                    raise BusiError(f"{row['id']}: {what} not found: {path}")
        key = _SPLIT_KEYS[row["split"]]
        if row["label"] == "normal":
            datalist[f"normal_{key}"].append({"image": image, "label": label, "id": row["id"]})
        else:
            datalist[key].append({"image": image, "label": label, "class": _CLASSES[row["label"]], "id": row["id"]})
        if done % _PROGRESS_EVERY == 0 or done == len(selected):
            verb = "converted" if to_dicom else "listed"
            say(f"{verb} {done}/{len(selected)} cases ({time.perf_counter() - start:.1f} s)")

    path = out / "datalist.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(datalist, f, indent=2)
        f.write("\n")

    counts = Counter((r["split"], r["label"]) for r in selected)
    say(f"datalist: {path}")
    say(f"{'split':<12}{'benign':>8}{'malignant':>11}" + (f"{'normal':>8}" if include_normal else "") + f"{'total':>7}")
    for split, key in _SPLIT_KEYS.items():
        line = f"{key:<12}{counts[(split, 'benign')]:>8}{counts[(split, 'malignant')]:>11}"
        if include_normal:
            line += f"{counts[(split, 'normal')]:>8}"
        say(line + f"{sum(v for (s, _), v in counts.items() if s == split):>7}")
    if dropped:
        say("dropped by flag: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return datalist


def busi_with_normals(busi_dir: str | Path, data_dir: str | Path, limit_per_split: int | None = None,
                      folds: int | None = None, fold: int | None = None) -> Path:
    """BUSI converted once into ``data_dir`` (``datalist.json``: lesion images, normals apart), and
    ``datalist_with_normals.json``: the normal images added to training and validation, so the
    presence head learns them and its threshold can be chosen on validation. Returns that datalist.

    With ``folds`` and ``fold``: ``datalist_with_normals_fold<i>of<k>.json`` instead, training +
    validation pooled and split into ``folds`` (:func:`munet.dataset_tools.folds.fold_datalist`),
    the manifest's near-duplicate groups (``dup_group``) kept in one fold; the test split unchanged.
    """
    data_dir = Path(data_dir)
    datalist = data_dir / "datalist.json"
    if not datalist.is_file():
        convert_busi(busi_dir, data_dir, include_normal=True, limit_per_split=limit_per_split, log=None)
    content = json.loads(datalist.read_text())
    with_normals = dict(content)
    for split in ("training", "validation"):
        with_normals[split] = content[split] + content.get(f"normal_{split}", [])
    if (folds is None) != (fold is None):
        raise BusiError(f"give both folds and fold, or neither (got folds={folds!r}, fold={fold!r})")
    if folds is None:
        target = data_dir / "datalist_with_normals.json"
    else:
        from munet.dataset_tools.folds import fold_datalist

        group = {row["id"]: row.get("dup_group") or row["id"] for row in read_manifest(busi_dir)}
        with_normals = fold_datalist(with_normals, folds, fold, lambda case: group.get(case.get("id"), case["image"]))
        target = data_dir / f"datalist_with_normals_fold{fold}of{folds}.json"
    target.write_text(json.dumps(with_normals, indent=1))
    return target
