"""MUNet (Multi-scale U-Net) for 2D ultrasound: the Python package the bundle's configs import.

Layers, each importing only the ones below it (docs/architecture.md has the map):

- ``munet.utils``: hashing, process-group helpers (the bottom);
- ``munet.constants``, ``munet.errors``: shared keys and the bad-input error;
- the runtime: ``munet.data`` (reading, checking, transforms), ``munet.networks``,
  ``munet.losses``, ``munet.engines`` (Ignite glue);
- ``munet.integrations``: DICOM SEG/SR output, MLflow tracking, sharing, the MONAI Label app;
- ``munet.dataset_tools``: tools that make data (demo data, BUSI converter);
- ``munet.cli``: the ``munet`` command.

Importing it changes nothing in the process: the configs install the short bad-input report
(:func:`munet.errors.install_excepthook`) in their ``initialize`` step.
"""

from munet import constants, data, engines, errors, losses, networks, utils
from munet.utils import hashing, process_group

__all__ = ["constants", "data", "engines", "errors", "losses", "networks", "utils", "hashing", "process_group"]
