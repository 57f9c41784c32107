"""Annotator clicks as guidance channels of the input (DeepGrow style), and simulated clicks.

An interactive MUNet takes the image plus two channels: foreground and background click maps
(Gaussian blobs of peak 1 at each click). With no clicks both channels are zero, which is the
automatic segmentation the same network is also trained for.

Clicks arrive as ``(x, y)`` = (column, row) pixel coordinates of the *original* image, the way
viewers send them (3D Slicer's IJK ``[i, j, k]`` for a one-slice volume; a trailing ``k`` is
ignored). They are rendered at the original size, right after loading, into a ``guidance`` item
that then goes through the same crop, resize and padding as the image, so the clicks stay on the
pixels the annotator chose whatever the preprocessing does. MONAI's deepgrow
``AddGuidanceSignald`` renders points given at the network's input size, after that geometry; it
is not used for this reason.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, List, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

__all__ = [
    "GUIDANCE_KEY",
    "FOREGROUND_KEY",
    "BACKGROUND_KEY",
    "GUIDANCE_CHANNELS",
    "parse_clicks",
    "render_clicks",
    "SimulateClicksd",
    "ClickGuidanced",
    "AppendGuidanced",
]

GUIDANCE_KEY = "guidance"
FOREGROUND_KEY = "foreground"
BACKGROUND_KEY = "background"
GUIDANCE_CHANNELS = 2
#: blob radius (sigma) as a fraction of the image's longest side: the same fraction at the original
#: size and at the network's input size (resizing is by the longest side), at least one pixel
SIGMA_FRACTION = 0.03


def parse_clicks(points: Any, shape: Sequence[int], source: str = "clicks") -> List[tuple]:
    """``[[x, y(, 0)], ...]`` (column, row) -> ``[(row, col), ...]`` inside an image of ``shape`` (rows, cols).

    Raises a ``ValueError`` naming ``source`` for a malformed point or one outside the image.
    """
    if points is None:
        return []
    if isinstance(points, str):
        import json

        points = json.loads(points) if points.strip() else []
    out = []
    for point in points:
        if not isinstance(point, (list, tuple)) or len(point) not in (2, 3):
            raise ValueError(f"{source}: a click must be [x, y] (column, row) or [x, y, 0], got {point!r}")
        if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v) for v in point):
            raise ValueError(f"{source}: click {list(point)} must hold numbers (column, row in pixels)")
        if len(point) == 3 and point[2] != 0:
            raise ValueError(f"{source}: click {list(point)} is on slice {point[2]}, but a 2D image has only slice 0")
        col, row = int(round(float(point[0]))), int(round(float(point[1])))
        if not (0 <= row < shape[0] and 0 <= col < shape[1]):
            raise ValueError(f"{source}: click {list(point)} is outside the {shape[1]}x{shape[0]} (width x height) image")
        out.append((row, col))
    return out


def render_clicks(shape: Sequence[int], foreground: Sequence[tuple], background: Sequence[tuple]) -> np.ndarray:
    """Two channels (foreground, background) of Gaussian blobs, peak 1, at (row, col) clicks."""
    rows, cols = int(shape[0]), int(shape[1])
    sigma = max(1.0, SIGMA_FRACTION * max(rows, cols))
    out = np.zeros((GUIDANCE_CHANNELS, rows, cols), dtype=np.float32)
    rr = np.arange(rows, dtype=np.float32)[:, None]
    cc = np.arange(cols, dtype=np.float32)[None, :]
    for channel, points in enumerate((foreground, background)):
        for row, col in points:
            blob = np.exp(-((rr - row) ** 2 + (cc - col) ** 2) / (2 * sigma**2))
            np.maximum(out[channel], blob, out=out[channel])
    return out


class SimulateClicksd(RandomizableTransform, MapTransform):
    """Training: clicks an annotator could have made, drawn from the mask (DeepGrow's seed points).

    With probability ``prob`` a sample gets 1..``max_clicks`` foreground clicks inside the lesion
    (away from its edge) and 0..``max_clicks`` background clicks in a band around it (where
    over-segmentation happens) or anywhere outside; otherwise none, so the network keeps working
    without clicks. Points are written as ``[x, y]`` like a viewer sends them.

    Why not MONAI's click-simulating ``Interaction``: it runs the model inside each iteration and
    expects a tensor output, while MUNet's training output is a dict of masks and class logits.
    Sampling from the mask trains the same input encoding at no extra forward pass.
    """

    def __init__(self, keys: KeysCollection = "label", prob: float = 0.7, max_clicks: int = 3, band_fraction: float = 0.1) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.max_clicks = max_clicks
        self.band_fraction = band_fraction

    def _pick(self, mask: np.ndarray, count: int) -> List[List[int]]:
        rows, cols = np.nonzero(mask)
        if count <= 0 or rows.size == 0:
            return []
        index = self.R.choice(rows.size, size=min(count, rows.size), replace=False)
        return [[int(cols[i]), int(rows[i])] for i in index]

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        key = self.first_key(d)
        d[FOREGROUND_KEY], d[BACKGROUND_KEY] = [], []
        if not self._do_transform or key == []:
            return d
        lesion = np.asarray(d[key])[0] > 0
        n_fg = int(self.R.randint(1, self.max_clicks + 1)) if lesion.any() else 0
        n_bg = int(self.R.randint(0 if n_fg else 1, self.max_clicks + 1))
        if n_fg:
            depth = ndimage.distance_transform_edt(lesion)
            d[FOREGROUND_KEY] = self._pick(depth >= 0.3 * depth.max(), n_fg)
        band = max(2, int(self.band_fraction * max(lesion.shape)))
        near = ndimage.binary_dilation(lesion, iterations=band) & ~lesion if lesion.any() else ~lesion
        d[BACKGROUND_KEY] = self._pick(near if self.R.rand() < 0.7 and near.any() else ~lesion, n_bg)
        return d


class _GuidanceTransform(MapTransform):
    """Base of the two transforms below: they work on the image item and the guidance item."""

    def __init__(self, image_key: str = "image", guidance_key: str = GUIDANCE_KEY) -> None:
        super().__init__(image_key)
        self.image_key = image_key
        self.guidance_key = guidance_key


class ClickGuidanced(_GuidanceTransform):
    """Render ``foreground``/``background`` clicks into a ``guidance`` item the image's size.

    Run it right after loading (channel first) so the clicks are in original-image pixels; list
    ``guidance`` among the spatial keys of the later crop/resize/pad. The click lists are removed.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        shape = tuple(image.shape[-2:])
        source = str(getattr(image, "meta", {}).get("filename_or_obj", "clicks"))
        # the click lists are consumed here: lists of varying length would not collate into a batch
        fg = parse_clicks(d.pop(FOREGROUND_KEY, None), shape, f"{source}: foreground")
        bg = parse_clicks(d.pop(BACKGROUND_KEY, None), shape, f"{source}: background")
        meta = dict(image.meta) if isinstance(image, MetaTensor) else {}
        d[self.guidance_key] = MetaTensor(torch.from_numpy(render_clicks(shape, fg, bg)), meta=meta)
        return d


class AppendGuidanced(_GuidanceTransform):
    """Append the ``guidance`` channels to the image, keeping the image's metadata and the record
    of its transforms (``Invertd`` maps the prediction back through them); drop ``guidance``.

    ``ConcatItemsd`` is not used because its output does not promise to carry the first item's
    ``applied_operations``.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        image, guidance = d[self.image_key], d.pop(self.guidance_key)
        if tuple(image.shape[1:]) != tuple(guidance.shape[1:]):
            raise ValueError(f"guidance {tuple(guidance.shape)} does not match image {tuple(image.shape)}")
        stacked = torch.cat([torch.as_tensor(image), torch.as_tensor(guidance, dtype=torch.as_tensor(image).dtype)])
        if isinstance(image, MetaTensor):
            stacked = MetaTensor(stacked, meta=image.meta, applied_operations=list(image.applied_operations))
        d[self.image_key] = stacked
        return d

