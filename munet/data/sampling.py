"""Batch sampling for the paper's multi-scale training and hard example mining, DDP-aware.

:class:`MultiScaleBatchSampler` yields batches of ``(case index, (height, width))``: every batch
has one size drawn from the configured set, and its cases are drawn from one aspect group
(portrait, square, landscape) whose sizes fit them, so padding is small. With ``weights`` it
samples cases in proportion to them (hard example mining updates them each epoch through
:meth:`set_weights`). Under DDP each rank takes its own share of every step, and the sizes are
drawn from a generator seeded by ``seed + epoch`` only, so every rank uses the same size at the
same step. :class:`SizedDataset` resizes each case to the size its batch asks for.

Why not MONAI's samplers: MONAI has ``DistributedSampler`` and ``DistributedWeightedRandomSampler``
(per-sample) but nothing that fixes one spatial size per batch, which multi-scale training needs.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from monai.transforms import Resize, ResizeWithPadOrCrop
from torch.utils.data import Dataset, Sampler

from munet.constants import SIZE_MULTIPLE
from munet.data.formats import file_kind
from munet.utils.process_group import world_and_rank

__all__ = ["aspect_group", "size_groups", "case_shapes", "balanced_weights", "train_loader", "MultiScaleBatchSampler", "SizedDataset",
           "CASE_INDEX_KEY"]

#: key under which SizedDataset records each sample's dataset index (for hard example mining)
CASE_INDEX_KEY = "case_index"
_GROUPS = ("portrait", "square", "landscape")


def aspect_group(height: int, width: int, tolerance: float = 0.15) -> str:
    """``portrait`` (taller), ``square`` (within ``tolerance``) or ``landscape`` (wider)."""
    ratio = height / width
    if ratio > 1 + tolerance:
        return "portrait"
    if ratio < 1 / (1 + tolerance):
        return "landscape"
    return "square"


def size_groups(sizes: Sequence[int]) -> Dict[str, List[Tuple[int, int]]]:
    """All (height, width) pairs of the size set, split by the aspect group they serve.

    From {256, 384}: square (256,256), (384,384); portrait (384,256); landscape (256,384).
    """
    pairs = [(h, w) for h in sizes for w in sizes]
    groups: Dict[str, List[Tuple[int, int]]] = {g: [] for g in _GROUPS}
    for h, w in pairs:
        groups[aspect_group(h, w, tolerance=0.0) if h != w else "square"].append((h, w))
    for name in _GROUPS:
        if not groups[name]:  # a single size serves every aspect, padded
            groups[name] = [(s, s) for s in sizes]
    return groups


class MultiScaleBatchSampler(Sampler):
    """Batches of one size and one aspect group; optional case weights; every rank in step.

    Args:
        case_shapes: (height, width) of every case (after the deterministic preprocessing, or of
            the original file: only the aspect ratio matters).
        batch_size: cases per batch on each rank.
        sizes: the size set, e.g. (256, 384, 512, 640) as in the paper.
        weights: sampling weight per case; None samples every case once per epoch.
        seed: base seed; the epoch is added (call :meth:`set_epoch`, as with DistributedSampler).
        num_replicas, rank: DDP world; taken from torch.distributed when not given.
    """

    def __init__(
        self,
        case_shapes: Sequence[Tuple[int, int]],
        batch_size: int,
        sizes: Sequence[int] = (256, 384, 512, 640),
        weights: Optional[Sequence[float]] = None,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ) -> None:
        if batch_size < 1 or not sizes:
            raise ValueError("batch_size must be positive and sizes non-empty")
        if any(int(s) % SIZE_MULTIPLE for s in sizes):
            raise ValueError(f"every size must be a multiple of {SIZE_MULTIPLE}, got {list(sizes)}")
        world, this_rank = world_and_rank()
        self.num_replicas = num_replicas if num_replicas is not None else world
        self.rank = rank if rank is not None else this_rank
        self.groups = [aspect_group(int(h), int(w)) for h, w in case_shapes]
        self.batch_size = batch_size
        self.size_options = size_groups([int(s) for s in sizes])
        self.seed = seed
        self.epoch = 0
        self.weights = torch.ones(len(self.groups), dtype=torch.float64)
        if weights is not None:
            self.set_weights(weights)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_weights(self, weights: Sequence[float]) -> None:
        values = torch.as_tensor(list(weights), dtype=torch.float64)
        if values.numel() != len(self.groups) or bool((values < 0).any()) or float(values.sum()) <= 0:
            raise ValueError("weights need one non-negative value per case and a positive sum")
        self.weights = values

    def _steps(self) -> List[Tuple[Tuple[int, int], List[int]]]:
        """The global plan of this epoch: (size, cases of every rank), identical on every rank.

        Cases are drawn within their aspect group (weighted, with replacement, when weights
        differ; a permutation otherwise), so the number of steps never changes between epochs,
        as Ignite's fixed ``epoch_length`` requires.
        """
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        uniform = bool((self.weights == self.weights[0]).all())
        per_step = self.batch_size * self.num_replicas
        steps: List[Tuple[Tuple[int, int], List[int]]] = []
        for group in _GROUPS:
            members = [i for i, g in enumerate(self.groups) if g == group]
            if not members:
                continue
            if uniform:
                drawn = [members[k] for k in torch.randperm(len(members), generator=generator).tolist()]
            else:
                picks = torch.multinomial(self.weights[members], len(members), replacement=True, generator=generator)
                drawn = [members[k] for k in picks.tolist()]
            total = math.ceil(len(drawn) / per_step) * per_step
            padded = (drawn * math.ceil(total / len(drawn)))[:total]  # fill the last step by repeating
            options = self.size_options[group]
            for start in range(0, total, per_step):
                size = options[int(torch.randint(len(options), (1,), generator=generator))]
                steps.append((size, padded[start : start + per_step]))
        order = torch.randperm(len(steps), generator=generator).tolist()
        return [steps[k] for k in order]

    def __iter__(self) -> Iterator[List[Tuple[int, Tuple[int, int]]]]:
        for size, cases in self._steps():
            mine = cases[self.rank :: self.num_replicas]
            yield [(index, size) for index in mine]

    def __len__(self) -> int:
        per_step = self.batch_size * self.num_replicas
        return sum(math.ceil(self.groups.count(g) / per_step) for g in _GROUPS if g in self.groups)


class SizedDataset(Dataset):
    """Wrap a dataset so ``dataset[(index, (h, w))]`` returns case ``index`` fitted into ``h x w``.

    The image and mask are resized with their aspect ratio kept so the longer relative side
    fills the target, then padded (or cropped by a pixel of rounding) to exactly ``h x w``.
    The dataset index is recorded under ``case_index``. A plain integer index returns the
    case unchanged.
    """

    def __init__(self, dataset: Dataset, keys: Sequence[str] = ("image", "label"), modes: Sequence[str] = ("bilinear", "nearest")) -> None:
        self.dataset = dataset
        self.keys = list(keys)
        self.modes = list(modes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        if isinstance(item, (tuple, list)):
            index, (height, width) = item
        else:
            index, height, width = item, None, None
        sample = dict(self.dataset[int(index)])
        sample[CASE_INDEX_KEY] = int(index)
        if height is None:
            return sample
        for key, mode in zip(self.keys, self.modes):
            if key not in sample:
                continue
            image = sample[key]
            h, w = image.shape[-2:]
            scale = min(height / h, width / w)
            target = (max(1, round(h * scale)), max(1, round(w * scale)))
            image = Resize(spatial_size=target, mode=mode, anti_aliasing=mode != "nearest")(image)
            sample[key] = ResizeWithPadOrCrop(spatial_size=(height, width))(image)
        return sample


def case_shapes(items: Sequence[Dict], crop_to_us_region: bool = True, image_key: str = "image") -> List[Tuple[int, int]]:
    """(rows, columns) of every case's image from file headers only (no pixel decoding).

    With ``crop_to_us_region`` a DICOM's declared ultrasound region gives the shape, as the
    preprocessing crops to it. Only the aspect ratio is used, to group cases into batches.
    """
    from PIL import Image

    shapes: List[Tuple[int, int]] = []
    for item in items:
        path = str(item[image_key])
        kind = file_kind(path)
        if kind == "nifti":
            import nibabel as nib

            shape = nib.load(path).shape[:2]
        elif kind == "pil":
            with Image.open(path) as image:
                shape = (image.height, image.width)
        else:
            from munet.data.dicom_reader import read_dataset, ultrasound_region

            ds = read_dataset(path, stop_before_pixels=True)
            shape = (int(ds.Rows), int(ds.Columns))
            box, _ = ultrasound_region(ds)
            if crop_to_us_region and (box >= 0).all():
                shape = (int(box[3] - box[1] + 1), int(box[2] - box[0] + 1))
        shapes.append((int(shape[0]), int(shape[1])))
    return shapes


def balanced_weights(items: Sequence[Dict], class_key: str = "class") -> List[float]:
    """1 / (cases of the class) per case: every class drawn equally often."""
    labels = [int(item[class_key]) if item.get(class_key) not in (None, "") else -1 for item in items]
    counts = {label: labels.count(label) for label in set(labels)}
    return [1.0 / counts[label] for label in labels]


def train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    sizes: Optional[Sequence[int]] = None,
    image_size: Optional[int] = None,
    hard_example_mining: bool = False,
    crop_to_us_region: bool = True,
    seed: int = 0,
    shuffle: bool = True,
    sampler: Optional[Sampler] = None,
    class_balance: bool = False,
):
    """The training DataLoader: plain (optionally with a DDP ``sampler``), or multi-scale batches.

    Multi-scale (``sizes``), hard example mining or ``class_balance`` use
    :class:`MultiScaleBatchSampler` over :class:`SizedDataset` (``sizes`` defaults to
    ``[image_size]``); that batch sampler shards the data over DDP ranks itself, so a
    DistributedSampler is not used then. ``class_balance`` starts every case at the weight
    1 / (number of cases of its class), so each class is drawn equally often (cases without a
    class count as one more class).
    """
    from monai.data import DataLoader

    if not sizes and not hard_example_mining and not class_balance:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, num_workers=num_workers)
    chosen = list(sizes) if sizes else [int(image_size)]
    shapes = case_shapes(dataset.data, crop_to_us_region)
    batch_sampler = MultiScaleBatchSampler(shapes, batch_size, chosen, weights=balanced_weights(dataset.data) if class_balance else None, seed=seed)
    return DataLoader(SizedDataset(dataset), batch_sampler=batch_sampler, num_workers=num_workers)
