"""The one augmentation of the paper that MONAI lacks: skew, a random perspective tilt.

The paper's augmentations follow the Augmentor library, whose "skew" tilts the image as if seen
from an angle: one edge of the image is narrowed, a perspective (homography) warp. MONAI has
affine, elastic and grid distortions but no perspective warp, hence this transform; it warps the
image bilinearly and the mask with nearest neighbour through the same homography.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["RandSkewd", "homography"]


def homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 matrix mapping the four ``source`` points (x, y) onto the four ``target`` points."""
    rows = []
    for (x, y), (u, v) in zip(source, target):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows, dtype=np.float64))
    matrix = vt[-1].reshape(3, 3)
    return matrix / matrix[2, 2]


class RandSkewd(RandomizableTransform, MapTransform):
    """Tilt image and mask: one random edge shrinks by up to ``magnitude`` of the size, both ends inwards.

    Args:
        keys: image and mask keys (channel-first, 2D).
        prob: probability of skewing a sample.
        magnitude: largest inward shift of the edge's corners, as a fraction of the side length.
        modes: interpolation per key ("bilinear" for images, "nearest" for masks).
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        magnitude: float = 0.2,
        modes: Sequence[str] = ("bilinear", "nearest"),
        allow_missing_keys: bool = True,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0 <= magnitude < 0.5:
            raise ValueError(f"magnitude must be in [0, 0.5), got {magnitude}")
        self.magnitude = magnitude
        self.modes = list(modes)
        self._edge = 0
        self._shift = 0.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self._edge = int(self.R.randint(4))  # top, bottom, left, right
        self._shift = float(self.R.uniform(0, self.magnitude))

    def _grid(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)
        moved = corners.copy()
        dx, dy = self._shift * (width - 1), self._shift * (height - 1)
        if self._edge == 0:
            moved[0, 0] += dx
            moved[1, 0] -= dx
        elif self._edge == 1:
            moved[3, 0] += dx
            moved[2, 0] -= dx
        elif self._edge == 2:
            moved[0, 1] += dy
            moved[3, 1] -= dy
        else:
            moved[1, 1] += dy
            moved[2, 1] -= dy
        # for every output pixel, where it comes from in the input: the inverse warp
        inverse = homography(moved, corners)
        ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        mapped = inverse @ points
        mapped = mapped[:2] / mapped[2:]
        grid_x = mapped[0] / max(width - 1, 1) * 2 - 1
        grid_y = mapped[1] / max(height - 1, 1) * 2 - 1
        grid = np.stack([grid_x, grid_y], axis=-1).reshape(1, height, width, 2)
        return torch.as_tensor(grid, dtype=torch.float32, device=device)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        self.randomize()
        if not self._do_transform or self._shift == 0.0:
            return d
        grid = None
        for key, mode in zip(self.key_iterator(d), self.modes):
            image = d[key]
            if grid is None:
                grid = self._grid(image.shape[-2], image.shape[-1], image.device)
            warped = F.grid_sample(torch.as_tensor(image, dtype=torch.float32)[None], grid, mode=mode, padding_mode="zeros", align_corners=True)[0]
            if hasattr(image, "meta"):
                from monai.data import MetaTensor

                warped = MetaTensor(warped, meta=image.meta, applied_operations=image.applied_operations)
            d[key] = warped
        return d
