"""Scanner-like ultrasound DICOM files from synthetic tissue images (demo data only).

Each image is written as a real Ultrasound Image DICOM file that looks
like a scanner export: the tissue image sits inside a black frame (a top band with bright burnt-in
"text" blobs, side/bottom margins, depth-scale ticks) declared as the ultrasound region with its
physical spacing; 1 in 4 files is RGB with a coloured caliper cross or text box burnt in (outside
the lesion), 1 in 4 JPEG Baseline (half YBR_FULL_422 colour, half grayscale), the rest grayscale
uncompressed. Masks stay PNG and cover the whole frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["write_dicom_case"]

#: (photometric, compression) of the DICOM files, one block of 8 consecutive cases holds each entry
#: once in a seeded random order: 4/8 grayscale uncompressed, 2/8 RGB uncompressed, 1/8 colour JPEG
#: (YBR_FULL_422), 1/8 grayscale JPEG.
_DICOM_VARIANTS: tuple[tuple[str, str | None], ...] = (
    ("MONOCHROME2", None),
    ("MONOCHROME2", None),
    ("MONOCHROME2", None),
    ("MONOCHROME2", None),
    ("RGB", None),
    ("RGB", None),
    ("YBR_FULL_422", "jpeg"),
    ("MONOCHROME2", "jpeg"),
)
#: Burnt-in overlay colours of the colour files (yellow, green, cyan, orange).
_OVERLAY_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 230, 0), (0, 230, 60), (0, 220, 255), (255, 140, 0))


# ----------------------------------------------------------------------------------------------
# scanner-like DICOM framing
# ----------------------------------------------------------------------------------------------
def _dicom_variant(seed: int, case_idx: int) -> tuple[str, str | None]:
    """(photometric, compression) of case ``case_idx``: each block of 8 cases holds every variant once."""
    block, pos = divmod(int(case_idx), len(_DICOM_VARIANTS))
    order = np.random.default_rng([seed, 3, block]).permutation(len(_DICOM_VARIANTS))
    return _DICOM_VARIANTS[int(order[pos])]


def _burn_text(rng: np.random.Generator, frame: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> None:
    """Burn bright "text" (words of small character blocks) into ``frame[y0:y1, x0:x1]`` (gray, in place)."""
    char_h = max(3, min(7, (y1 - y0) - 4))
    top = y0 + ((y1 - y0) - char_h) // 2
    x = x0 + int(rng.integers(2, 8))
    for _ in range(int(rng.integers(2, 4))):  # words
        for _ in range(int(rng.integers(2, 6))):  # characters
            cw = int(rng.integers(2, 5))
            if x + cw >= x1 - 1:
                return
            glyph = rng.random((char_h, cw)) < 0.7
            glyph[:, 0] = True  # a vertical stroke keeps it character-like
            value = int(rng.integers(190, 256))
            patch = frame[top : top + char_h, x : x + cw]
            patch[glyph] = value
            x += cw + 1
        x += int(rng.integers(4, 9))


def _overlay_box(rng: np.random.Generator, region_shape: tuple[int, int], lesion: np.ndarray, size: tuple[int, int]) -> tuple[int, int] | None:
    """Top-left (row, col) inside the tissue region of a ``size`` box in a corner clear of the lesion.

    The lesion is grown by 4 pixels before testing; ``None`` when no corner is clear.
    """
    h, w = region_shape
    bh, bw = size
    if bh + 6 > h or bw + 6 > w:
        return None
    grown = ndi.binary_dilation(lesion.astype(bool), iterations=4)
    corners = [(3, 3), (3, w - bw - 3), (h - bh - 3, 3), (h - bh - 3, w - bw - 3)]
    for k in rng.permutation(len(corners)).tolist():
        r, c = corners[k]
        if not grown[r : r + bh, c : c + bw].any():
            return r, c
    return None


def _draw_caliper(frame: np.ndarray, r: int, c: int, size: int, colour: tuple[int, int, int]) -> None:
    """A coloured "+" caliper mark with its top-left at (r, c) (RGB frame, in place)."""
    mid = size // 2
    frame[r + mid, c : c + size] = colour
    frame[r : r + size, c + mid] = colour


def _draw_text_box(rng: np.random.Generator, frame: np.ndarray, r: int, c: int, bh: int, bw: int, colour: tuple[int, int, int]) -> None:
    """A coloured outlined box with coloured "text" inside, top-left at (r, c) (RGB frame, in place)."""
    frame[r, c : c + bw] = colour
    frame[r + bh - 1, c : c + bw] = colour
    frame[r : r + bh, c] = colour
    frame[r : r + bh, c + bw - 1] = colour
    glyphs = rng.random((bh - 4, bw - 4)) < 0.45
    glyphs[:, ::3] = False  # gaps between "characters"
    inner = frame[r + 2 : r + bh - 2, c + 2 : c + bw - 2]
    inner[glyphs] = colour


def _scanner_frame(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, colour: bool
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], tuple[float, float]]:
    """Put the tissue ``image`` inside a black scanner frame with burnt-in annotations.

    Returns ``(frame, full_mask, region, spacing_mm)``: ``frame`` is (H', W') uint8, or (H', W', 3)
    when ``colour`` (gray replicated, plus a coloured caliper cross or text box in a corner of the
    tissue region that does not touch the lesion); ``full_mask`` is the lesion mask (0/1) on the
    whole frame; ``region`` = (x0, y0, x1, y1) are the inclusive bounds of the tissue inside the
    frame; ``spacing_mm`` = (x_mm, y_mm), square pixels of 0.08-0.12 mm.
    """
    h, w = image.shape
    top = int(rng.integers(8, 21))
    bottom = int(rng.integers(2, 11))
    left = int(rng.integers(4, 17))
    right = int(rng.integers(6, 17))
    fh, fw = top + h + bottom, left + w + right
    frame = np.zeros((fh, fw), dtype=np.uint8)
    frame[top : top + h, left : left + w] = image
    full_mask = np.zeros((fh, fw), dtype=np.uint8)
    full_mask[top : top + h, left : left + w] = mask
    region = (left, top, left + w - 1, top + h - 1)
    spacing = round(float(rng.uniform(0.08, 0.12)), 4)

    # burnt-in "text" in the top band (probe / preset / depth read-outs)
    _burn_text(rng, frame, 0, top, 0, fw)
    # depth-scale ticks every 0.5 cm in the right margin
    tick_px = max(4, int(round(5.0 / spacing)))
    tick_col = left + w + 2
    for y in range(top, top + h, tick_px):
        frame[y, tick_col : min(tick_col + 3, fw)] = 200

    if not colour:
        return frame, full_mask, region, (spacing, spacing)

    rgb = np.repeat(frame[..., None], 3, axis=2)
    paint = _OVERLAY_COLOURS[int(rng.integers(len(_OVERLAY_COLOURS)))]
    if rng.random() < 0.5:  # caliper cross
        size = int(rng.integers(7, 12)) | 1
        spot = _overlay_box(rng, (h, w), mask, (size, size))
        if spot is None:  # no clear corner in the tissue: put it in the top band
            size = max(3, min(size, top - 2)) | 1
            size = size if size <= top - 2 else size - 2
            spot = (-top + 1, w - size - 3)
        _draw_caliper(rgb, top + spot[0], left + spot[1], size, paint)
    else:  # text box
        bh, bw = int(rng.integers(9, 13)), int(rng.integers(18, 31))
        spot = _overlay_box(rng, (h, w), mask, (bh, bw))
        if spot is None:
            bh = top - 2
            spot = (-top + 1, w - bw - 3)
        _draw_text_box(rng, rgb, top + spot[0], left + spot[1], bh, bw, paint)
    return rgb, full_mask, region, (spacing, spacing)


def write_dicom_case(
    path: str, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, seed: int, case_idx: int
) -> np.ndarray:
    """Write one case as a scanner-like ultrasound DICOM file; returns the full-frame mask (0/1)."""
    from munet.dataset_tools.dicom_writer import deterministic_uid, write_ultrasound_dicom

    photometric, compression = _dicom_variant(seed, case_idx)
    frame, full_mask, region, spacing = _scanner_frame(rng, image, mask, colour=photometric != "MONOCHROME2")
    write_ultrasound_dicom(
        path,
        frame,
        photometric=photometric,
        compression=compression,
        spacing_mm=spacing,
        region=region,
        patient_id=f"SYN-{seed}-{case_idx:04d}",
        study_uid=deterministic_uid("munet-synthetic", seed, case_idx, "study"),
        series_uid=deterministic_uid("munet-synthetic", seed, case_idx, "series"),
        sop_uid=deterministic_uid("munet-synthetic", seed, case_idx, "image"),
        instance_number=1,
        description="MUNet synthetic ultrasound (no patient data)",
    )
    return full_mask

