"""The network, preprocessing and serving values that inference.json takes from the bundle's own train.json.

Training and inference must build the same network and preprocess the same way, and inference and
evaluation must serve the model the same way (presence threshold, test-time scales and flips), so
these values are written once, in ``configs/train.json``; evaluate.json, merged over train.json,
inherits them, and inference.json reads them through
``"image_size": "$@training_values['image_size']"``. Why not MONAI's own means: a ``%file#id``
macro resolves the file against the current directory, not the bundle root, so a bundle served by
MONAI Label (whose working directory is the app) or run from another folder would read another
bundle's file; merging a ``common.json`` first would change the ``--config_file configs/train.json``
command every user, zoo tool and MONAI Label task runs. A command-line override
(``--image_size 384``) still replaces the reference as it replaces any value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

__all__ = ["SHARED_KEYS", "train_config_path", "training_values"]

#: values inference.json takes from train.json (evaluate.json inherits them by the merge)
SHARED_KEYS = (
    "arch", "backbone", "base_channels", "decoder_channels", "fusion", "norm", "head_kernel_size", "presence_head",
    "class_pooling", "presence_threshold", "in_channels", "guidance", "num_classes", "class_names", "image_size",
    "dicom_frame", "crop_to_us_region", "precision", "channels_last", "inference_scales", "inference_flips",
    "inference_scale_image_heads",
)


#: the bundle folder this code belongs to (the repository root, or a received bundle's root)
CODE_BUNDLE_ROOT = Path(__file__).resolve().parents[1]


def train_config_path(bundle_root: str) -> Path:
    """``<bundle_root>/configs/train.json``; when ``bundle_root`` holds no configs (an output folder
    given with ``--bundle_root``), the train.json beside this code, i.e. the one of the bundle that runs."""
    own = Path(bundle_root) / "configs" / "train.json"
    if own.is_file():
        return own
    beside = CODE_BUNDLE_ROOT / "configs" / "train.json"
    if beside.is_file():
        return beside
    raise FileNotFoundError(f"{own} not found (nor {beside}): inference.json takes its network and preprocessing values "
                            f"({', '.join(SHARED_KEYS[:4])}, ...) from the bundle's train.json")


def training_values(bundle_root: str) -> Dict[str, Any]:
    """``SHARED_KEYS`` as the bundle's train.json sets them (expressions evaluated), see :func:`train_config_path`.

    A key the bundle's train.json lacks (a bundle written before that value existed, e.g. one
    trained before ``inference_scale_image_heads``) takes the default of the train.json beside this
    code, so an older shared bundle still serves, as it was evaluated.
    """
    from monai.bundle import ConfigParser

    path = train_config_path(bundle_root)
    parser = ConfigParser()
    parser.read_config(str(path))
    parser["bundle_root"] = str(bundle_root)
    values = {key: parser.get_parsed_content(key) for key in SHARED_KEYS if key in parser}
    missing = [key for key in SHARED_KEYS if key not in values]
    if missing:
        defaults = ConfigParser()
        defaults.read_config(str(CODE_BUNDLE_ROOT / "configs" / "train.json"))
        defaults["bundle_root"] = str(bundle_root)
        values.update({key: defaults.get_parsed_content(key) for key in missing})
    return values
