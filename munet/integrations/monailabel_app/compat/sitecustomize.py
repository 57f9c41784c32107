"""Start-up shim for MONAI Label 0.8.5 with pydicom 3 (put this folder on PYTHONPATH).

monailabel 0.8.5 imports ``pydicom_seg`` 0.4.1, which imports ``pydicom._storage_sopclass_uids``,
a private module pydicom 3 removed (MONAILabel#1841): the server and every training subprocess
fail at import. Pinning pydicom<3 would change how this bundle reads DICOM, so instead this file
answers that one import with the same UIDs from ``pydicom.uid``. Python imports
``sitecustomize`` at start-up from any folder on ``sys.path``; ``scripts/start_monailabel.sh``
puts this folder on PYTHONPATH, which the server's subprocesses inherit. Nothing else changes.
"""

import importlib.abc
import importlib.machinery
import sys
import types

_LEGACY = "pydicom._storage_sopclass_uids"


class _LegacySopClassUids(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):  # noqa: D401 - importlib protocol
        return importlib.machinery.ModuleSpec(name, self) if name == _LEGACY else None

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module):
        import pydicom.uid

        module.__getattr__ = lambda attr: getattr(pydicom.uid, attr)  # SegmentationStorage, ...


sys.meta_path.append(_LegacySopClassUids())
