"""Ultrasound DICOM files written by plain pydicom (not the bundle's writer), and a tiny bundle.

Shared by the DICOM output and PACS tests. The files look like a scanner's: Ultrasound Image
Storage (or Multi-frame), grayscale, RGB or YBR_FULL_422 JPEG, a Sequence of Ultrasound Regions
with the B-mode region and its spacing, and some Type 2 attributes left out as scanners do.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from munet.cli.train import make_bundle_folder, recipe_values

REPO = Path(__file__).resolve().parents[1]


def lesion_image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A gray speckle image with a dark oval (rows x columns, uint8), different rows and columns."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    image = 120 + 40 * rng.random((rows, cols))
    oval = ((yy - rows * 0.45) / (rows * 0.2)) ** 2 + ((xx - cols * 0.55) / (cols * 0.18)) ** 2 < 1
    image[oval] = 30
    image[:4, :] = 255  # a burnt-in text band above the region
    return image.astype(np.uint8)


def us_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", frames: int = 1, study_uid: Optional[str] = None,
               series_uid: Optional[str] = None, patient_id: str = "MUNET-TEST-1", instance: int = 1,
               syntax: str = ExplicitVRLittleEndian, bits_stored: Optional[int] = None) -> Dataset:
    """An Ultrasound Image dataset around ``pixels`` (frames first when ``frames > 1``), by hand.

    PatientBirthDate, PatientSex, AccessionNumber and ReferringPhysicianName are left out.
    """
    ds = Dataset()
    ds.SOPClassUID = UltrasoundImageStorage if frames == 1 else UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
    ds.PatientID, ds.PatientName, ds.StudyID = patient_id, "Test^Plain", "1"
    ds.StudyDate, ds.StudyTime, ds.Modality = "20240101", "120000", "US"
    ds.SeriesNumber, ds.InstanceNumber = 1, instance
    shape = pixels.shape[1:] if frames > 1 else pixels.shape
    ds.Rows, ds.Columns = shape[0], shape[1]
    ds.SamplesPerPixel = 3 if len(shape) == 3 else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = (0x0018, 0x1063)
        ds.FrameTime = 33.3
    ds.PhotometricInterpretation = photometric
    if pixels.dtype not in (np.uint8, np.uint16):
        pixels = pixels.astype(np.uint8)
    bits = pixels.dtype.itemsize * 8  # 8 or 16 bits allocated, as the array holds them
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = bits, bits_stored or bits, 0
    ds.HighBit = ds.BitsStored - 1
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def with_region(ds: Dataset, box: Tuple[int, int, int, int], delta_cm: Tuple[float, float] = (0.01, 0.02)) -> Dataset:
    """Declare the B-mode region ``(x0, y0, x1, y1)`` with spacing ``(dx, dy)`` in cm."""
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1, region.RegionLocationMaxY1 = box
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = delta_cm
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])
    return ds


def as_ybr_jpeg(ds: Dataset, rgb: np.ndarray) -> Dataset:
    """Make ``ds`` a YBR_FULL_422 JPEG baseline image of ``rgb`` (as many scanners send)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=95, subsampling="4:2:2")
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def tiny_bundle(root: Path, seed: int = 0, gain: float = 1000.0) -> Path:
    """A bundle folder whose ``models/model.pt`` is a random-weight 8-wide MUNet (nothing trained).

    Its configs are the paper recipe at 64 px and 8 channels (as ``munet train`` writes them). A random network's
    mask logits are nearly constant over the image (spread about 1e-4), so its mask is empty or
    full; each mask head is centred on its mean logit for :func:`lesion_image` and scaled by
    ``gain`` (weights and bias only), which gives masks with lesion and background pixels.
    """
    import torch

    from munet.engines.weights_info import write_weights_info
    from munet.networks import build_network

    make_bundle_folder(root, {**recipe_values("paper"), "image_size": 64, "base_channels": 8})
    torch.manual_seed(seed)
    net = build_network("munet", output="mask", base_channels=8).eval()
    heads = [key for key in net.state_dict() if key.startswith("mask_heads.") and key.endswith(".conv.bias")]
    with torch.no_grad():
        x = torch.tensor(lesion_image(64, 64, seed) / 255.0, dtype=torch.float32)[None, None]
        outputs = net.forward_dict(x)
        logits = [outputs[k] for k in sorted((k for k in outputs if k.startswith("mask_stride")), key=lambda k: -int(k[11:]))]
        state = net.state_dict()
        for key, logit in zip(heads, logits):  # mask_heads.0 is the deepest (stride 16)
            prefix = key[: -len("bias")]
            state[prefix + "weight"] = state[prefix + "weight"] * gain
            state[key] = (state[key] - logit.mean()) * gain
    (root / "models").mkdir(exist_ok=True)
    torch.save(state, root / "models" / "model.pt")
    write_weights_info(root / "models" / "model.pt", net, 64)
    return root


def inference_overrides(bundle: Path, images: Path, output_dir: Path, **extra: object) -> Sequence[str]:
    """``monai.bundle run inferring`` arguments for ``bundle`` on the folder ``images``."""
    from munet.engines.bundle_folder import workflow_argv

    return workflow_argv("inferring", bundle, datalist=str(images), dataset_dir=str(images), output_dir=str(output_dir), **extra)
