"""The paper's augmentations as one list (:func:`paper_augmentations`), and the one MONAI lacks:
skew, a random perspective tilt (:class:`RandSkewd`).

The paper's augmentations follow the Augmentor library, whose "skew" tilts the image as if seen
from an angle: one edge of the image is narrowed, a perspective (homography) warp. MONAI has
affine, elastic and grid distortions but no perspective warp; torchvision has one
(``transforms.v2.functional.perspective``), so this transform only draws the edge and the shift,
MONAI-style (seeded by the bundle's ``set_determinism``), and lets torchvision warp the image
bilinearly and the mask with nearest neighbour through the same four corner points.
"""

from __future__ import annotations

from typing import Hashable, List, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Rand2DElasticd, RandAffined, RandFlipd, RandGaussianNoised, RandomizableTransform, RandRotated, RandZoomd
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

__all__ = ["RandSkewd", "paper_augmentations"]

_MODES = {"bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}


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

    def corner_points(self, height: int, width: int) -> tuple[List[List[int]], List[List[int]]]:
        """The image corners (x, y) and where the drawn edge moves them: torchvision's start and end points."""
        corners = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
        moved = [list(c) for c in corners]
        dx, dy = round(self._shift * (width - 1)), round(self._shift * (height - 1))
        # top: corners 0,1 move in x; bottom: 3,2; left: 0,3 move in y; right: 1,2
        first, second, axis, shift = [(0, 1, 0, dx), (3, 2, 0, dx), (0, 3, 1, dy), (1, 2, 1, dy)][self._edge]
        moved[first][axis] += shift
        moved[second][axis] -= shift
        return corners, moved

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        self.randomize()
        if not self._do_transform or self._shift == 0.0:
            return d
        for key, mode in zip(self.key_iterator(d), self.modes):
            if mode not in _MODES:
                raise ValueError(f"RandSkewd: mode {mode!r} for {key!r} is not one of {', '.join(_MODES)}")
            image = d[key]
            start, end = self.corner_points(image.shape[-2], image.shape[-1])
            plain = torch.as_tensor(image, dtype=torch.float32).as_subclass(torch.Tensor)
            warped = tvf.perspective(plain, start, end, interpolation=_MODES[mode], fill=0.0)
            if hasattr(image, "meta"):
                from monai.data import MetaTensor

                warped = MetaTensor(warped, meta=image.meta, applied_operations=image.applied_operations)
            d[key] = warped
        return d


def paper_augmentations(
    hflip_prob: float = 0.5,
    vflip_prob: float = 0.0,
    rotate_prob: float = 0.5,
    rotate_degrees: float = 5.0,
    zoom_prob: float = 0.3,
    shear_prob: float = 0.1,
    crop_prob: float = 0.2,
    skew_prob: float = 0.1,
    elastic_prob: float = 0.1,
    noise_prob: float = 0.3,
    keys: Sequence[str] = ("image", "label"),
) -> List[MapTransform]:
    """The paper's augmentations (flip, rotate, zoom, shear, random crop, skew, elastic distortion,
    Gaussian noise), each applied with its own probability: train.json's ``augment`` values.

    A factory instead of 10 config entries so that train.json reads as wiring; the order is the one
    the bundle has always used, so a seed draws the same augmentations as before.
    """
    image, modes = keys[0], ["bilinear", "nearest"]
    keys = list(keys)
    return [
        RandFlipd(keys, spatial_axis=1, prob=hflip_prob),
        RandFlipd(keys, spatial_axis=0, prob=vflip_prob),
        RandRotated(keys, range_x=rotate_degrees * 3.141592653589793 / 180, mode=modes, prob=rotate_prob),
        RandZoomd(keys, min_zoom=0.9, max_zoom=1.1, mode=modes, prob=zoom_prob),
        RandAffined(keys, shear_range=[0.1, 0.1], mode=modes, padding_mode="zeros", prob=shear_prob),
        # random crop of 70-100 % of the area at a random place, resized back: zoom in by up to 1/sqrt(0.7) plus a shift
        RandAffined(keys, scale_range=[[-0.16, 0.0], [-0.16, 0.0]], translate_range=[[-20, 20], [-20, 20]], mode=modes,
                    padding_mode="zeros", prob=crop_prob),
        RandSkewd(keys, magnitude=0.2, modes=modes, prob=skew_prob),
        Rand2DElasticd(keys, spacing=[32, 32], magnitude_range=[1.0, 2.0], mode=modes, padding_mode="zeros", prob=elastic_prob),
        RandGaussianNoised(image, std=0.0316, prob=noise_prob / 2),
        RandGaussianNoised(image, std=0.1, prob=noise_prob / 2),
    ]
