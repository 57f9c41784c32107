"""Every common PIL image mode is read as a viewer shows it (docs/dicom.md, "Input files").

Each variant is one picture (a synthetic ultrasound image) saved by PIL in another mode; its
network input and the mask the bundle predicts for it must match those of the same picture saved
as plain 8-bit grayscale. Before, a palette PNG was read as its indices (an inverted picture), a
CMYK JPEG as a blank image, and a grayscale PNG with alpha was refused.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
from bundle_helpers import INFERENCE, TRAIN, make_tiny_dataset, run_workflow
from monai.transforms import Compose
from PIL import Image

from munet.data.image_size import image_size_warning
from munet.data.loading import load_image
from munet.data.pil_modes import as_displayed
from munet.data.preprocessing import deterministic_transforms


def _palette(gray: np.ndarray) -> Image.Image:
    """A palette image whose indices are NOT the gray values: index i shows gray 255 - i."""
    image = Image.fromarray((255 - gray).astype(np.uint8)).convert("P")
    image.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    return image


def _opaque(mode: str) -> Callable[[np.ndarray], Image.Image]:
    return lambda gray: Image.fromarray(gray).convert(mode)


def _sixteen_bit(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(gray.astype(np.uint16) * 257)  # I;16: the full 16-bit range


def _transparent_palette(gray: np.ndarray) -> Image.Image:
    image = _palette(gray)
    image.info["transparency"] = 7  # one index (gray 248) see-through: composited over black
    return image


#: variant -> (file suffix, how PIL makes it from the 8-bit gray picture)
VARIANTS: Dict[str, tuple] = {
    "png_L": (".png", _opaque("L")),
    "png_P": (".png", _palette),
    "png_P_transparency": (".png", _transparent_palette),
    "png_LA": (".png", _opaque("LA")),
    "png_RGB": (".png", _opaque("RGB")),
    "png_RGBA": (".png", _opaque("RGBA")),
    "png_I16": (".png", _sixteen_bit),
    "png_1": (".png", _opaque("1")),
    "jpeg_L": (".jpg", _opaque("L")),
    "jpeg_RGB": (".jpg", _opaque("RGB")),
    "jpeg_CMYK": (".jpg", _opaque("CMYK")),
    "tiff_L": (".tif", _opaque("L")),
    "tiff_P": (".tif", _palette),
    "tiff_LA": (".tif", _opaque("LA")),
    "tiff_RGBA": (".tif", _opaque("RGBA")),
    "tiff_CMYK": (".tif", _opaque("CMYK")),
    "tiff_I16": (".tif", _sixteen_bit),
    "tiff_1": (".tif", _opaque("1")),
}
LOSSY = {"jpeg_L", "jpeg_RGB", "jpeg_CMYK"}


def _reference_of(name: str) -> str:
    """The plain 8-bit grayscale file the variant is compared with: the same format's L file (a
    JPEG's own compression), and for 1-bit, its own picture saved as L (1-bit loses the grays)."""
    if name.endswith("_1"):
        return f"{name}_as_L"
    return "jpeg_L" if name in LOSSY else "png_L"


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> Dict:
    root = tmp_path_factory.mktemp("modes")
    data = make_tiny_dataset(root, n_train=16, n_val=2, n_test=2)
    picture = Path(sorted((data / "images").glob("*.png"))[-1])
    gray = np.asarray(Image.open(picture).convert("L"))
    folder = root / "variants"
    folder.mkdir()
    files = {}
    for name, (suffix, make) in VARIANTS.items():
        image = make(gray)
        files[name] = folder / f"{name}{suffix}"
        image.save(files[name], **({"quality": 95} if suffix == ".jpg" else {}))
        if name.endswith("_1"):
            files[f"{name}_as_L"] = folder / f"{name}_as_L.png"
            Image.open(files[name]).convert("L").save(files[f"{name}_as_L"])
        assert Image.open(files[name]).mode == make(gray).mode or name.endswith("I16"), name
    Image.fromarray(gray[:16, :16]).save(folder / "tiny.png")  # far below a useful size
    run_workflow("train", TRAIN, root, data, max_epochs=20)
    out = root / "predicted"
    run_workflow("infer", INFERENCE, root, data, datalist=str(folder), output_dir=str(out))
    masks = {name: np.asarray(Image.open(out / f"{name}_mask.png")) > 0 for name in files}
    rows = {Path(row["image"]).name: row for row in csv.DictReader(open(out / "predictions.csv"))}
    return {"files": files, "masks": masks, "gray": gray, "rows": rows}


def _network_input(path: Path) -> np.ndarray:
    chain = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=64))
    return np.asarray(chain({"image": str(path)})["image"])


@pytest.mark.parametrize("name", [n for n in VARIANTS if n not in ("png_L", "jpeg_L")])
def test_each_mode_gives_the_mask_of_its_grayscale_picture(variants, name):
    reference = _reference_of(name)
    mine, theirs = variants["masks"][name], variants["masks"][reference]
    assert 0.01 < theirs.mean() < 0.9, f"the reference mask of {reference} is trivial ({theirs.mean():.3f}): the test model is too weak"
    union = (mine | theirs).sum()
    agreement = (mine & theirs).sum() / union
    assert agreement >= (0.9 if name in LOSSY else 0.98), f"{name}: mask IoU {agreement:.3f} with {reference}'s"
    a, b = _network_input(variants["files"][name]), _network_input(variants["files"][reference])
    if name in LOSSY:
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98, name
    else:
        np.testing.assert_allclose(a, b, atol=1.5 / 255, err_msg=name)


def test_palette_transparency_is_composited_over_black():
    image = _palette(np.full((4, 4), 248, np.uint8))  # index 7 everywhere
    image.info["transparency"] = 7
    assert np.asarray(as_displayed(image)).max() == 0


def test_masks_keep_their_stored_values(tmp_path):
    """A palette mask's indices are its labels: not turned into the palette's colours."""
    mask = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).convert("P")
    mask.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    mask.save(tmp_path / "mask.png")
    np.testing.assert_array_equal(np.asarray(load_image(str(tmp_path / "mask.png"), mask=True)), [[0, 1], [1, 0]])


@pytest.mark.parametrize("rows, cols, expected", [
    (16, 16, "below the 48-pixel minimum"), (400, 300, None), (4000, 1200, "over 8x the model's 224-pixel input")])
def test_images_far_from_the_model_size_get_a_warning(rows, cols, expected):
    warning = image_size_warning(rows, cols, 224)
    assert (warning is None) if expected is None else (expected in warning)


def test_a_tiny_image_is_answered_with_a_warning_in_predictions_csv(variants):
    rows = variants["rows"]
    assert "below the 48-pixel minimum" in rows["tiny.png"]["warnings"]
    assert all(not row.get("warnings") for name, row in rows.items() if name != "tiny.png")
