"""MUNet (Multi-scale U-Net) MONAI bundle: the Python package that the configs import.

Sub-packages follow the data flow: ``bundle.data`` (reading and transforms),
``bundle.networks`` (encoders, decoder, heads, fusion, MUNet, U-Net baseline),
``bundle.losses`` (the multi-task loss) and ``bundle.engines`` (Ignite glue).
Importing it (every config's first expression does) makes bad-input errors end a run with
their own short message instead of MONAI's chained tracebacks (:mod:`bundle.errors`).
"""

from . import errors

errors.install_excepthook()

from . import data, engines, losses, networks  # noqa: E402

__all__ = ["data", "engines", "errors", "losses", "networks"]
