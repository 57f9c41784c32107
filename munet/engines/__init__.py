"""Ignite/MONAI engine glue for the multi-task output: batches, inferer, post-processing, metrics, handlers,
checkpoints, resume, interaction, weights sidecars, published-weights history and bundle folders."""

from munet.engines import (
    bundle_folder,
    checkpoint,
    distributed,
    ensemble,
    handlers,
    hard_examples,
    inferer,
    interaction,
    metrics,
    model_history,
    postprocessing,
    prepare_batch,
    presence_threshold,
    resume,
    weights_info,
)

__all__ = ["bundle_folder", "checkpoint", "distributed", "ensemble", "handlers", "hard_examples", "inferer", "interaction",
           "metrics", "model_history", "postprocessing", "prepare_batch", "presence_threshold", "resume", "weights_info"]
