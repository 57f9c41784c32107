"""MUNet (Multi-scale U-Net) MONAI bundle: the Python package that the configs import.

Sub-packages follow the data flow: ``bundle.data`` (reading and transforms),
``bundle.networks`` (encoders, decoder, heads, fusion, MUNet, U-Net baseline),
``bundle.losses`` (the multi-task loss) and ``bundle.engines`` (Ignite glue).
"""

from . import data, engines, losses, networks

__all__ = ["data", "engines", "losses", "networks"]
