"""MUNet (Multi-scale U-Net) MONAI bundle: the Python package that the configs import.

Sub-packages follow the data flow: ``bundle.data`` (reading and transforms),
``bundle.networks`` (encoders, decoder, heads, fusion, MUNet, U-Net baseline),
``bundle.losses`` (the multi-task loss) and ``bundle.engines`` (Ignite glue); ``bundle.constants``
holds the values they share. ``bundle.dataset_tools`` (demo data, BUSI converter) and ``bundle.sharing``
(packaging; its ``checksums`` is the one file hash) serve the scripts.
Importing it (every config's first expression does) makes bad-input errors end a run with
their own short message instead of MONAI's chained tracebacks (:mod:`bundle.errors`).
"""

from . import errors

errors.install_excepthook()

from . import constants, data, engines, losses, networks, process_group, shared_values  # noqa: E402

__all__ = ["constants", "data", "engines", "errors", "losses", "networks", "process_group", "shared_values"]
