"""Ignite/MONAI engine glue for the multi-task output: batches, inferer, post-processing, metrics, handlers."""

from . import checkpoint, dicom_outputs, distributed, ensemble, handlers, hard_examples, inferer, metrics, postprocessing, prepare_batch, resume, tracking

__all__ = ["checkpoint", "dicom_outputs", "distributed", "ensemble", "handlers", "hard_examples", "inferer", "metrics", "postprocessing", "prepare_batch", "resume", "tracking"]
