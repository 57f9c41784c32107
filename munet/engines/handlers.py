"""Ignite handlers of the bundle: training progress with ETA, metric files, predictions on disk."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events
from PIL import Image
from scipy import ndimage

from munet.constants import US_SPACING_KEY
from munet.data.dicom_reader import is_dicom_file
from munet.data.formats import strip_image_suffix
from munet.data.image_size import image_size_warning
from munet.engines.finding import class_call, image_finding
from munet.engines.inferer import VIEW_AGREEMENT_KEY
from munet.engines.metrics import MUNetMetrics
from munet.engines.postprocessing import CLASS_PROB_KEY, LESION_CLICKED_KEY, LESION_PROB_KEY
from munet.engines.review import review_reasons

__all__ = ["TrainingProgress", "MetricsWriter", "PredictionWriter"]

logger = logging.getLogger("munet")


class TrainingProgress:
    """Log, each epoch: the mean loss and its parts, seconds per epoch and the ETA of the run.

    MONAI's ``StatsHandler`` prints the loss per iteration; long CPU runs need one line per epoch
    with the time left, which it does not give. ``loss_function`` is read for ``last_components``
    (the class and Dice parts of the last batch), when it has them.
    """

    def __init__(self, loss_function: Any = None, name: str = "munet") -> None:
        self.loss_function = loss_function
        self.logger = logging.getLogger(name)
        self._sums: Dict[str, float] = {}
        self._count = 0
        self._epoch_start = 0.0
        self._run_start = 0.0
        self._epochs_done = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _started(self, engine: Engine) -> None:
        self._run_start = time.perf_counter()
        self._epochs_done = 0
        self.logger.info(
            "training from epoch %d to %d, %s iterations per epoch",
            engine.state.epoch + 1,
            engine.state.max_epochs,
            engine.state.epoch_length,
        )

    def _epoch_started(self, engine: Engine) -> None:
        self._sums, self._count = {}, 0
        self._epoch_start = time.perf_counter()

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        loss = output.get("loss") if isinstance(output, dict) else None
        if loss is None and isinstance(output, list) and output:
            loss = output[0].get("loss")
        if loss is None:
            return
        parts = {"loss": float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)}
        components = getattr(self.loss_function, "last_components", None) or {}
        parts.update({k: float(v) for k, v in components.items() if k in ("class_loss", "dice_loss", "presence_loss")})
        for key, value in parts.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1

    def _epoch_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        self._epochs_done += 1
        per_epoch = (now - self._run_start) / self._epochs_done
        remaining = max(engine.state.max_epochs - engine.state.epoch, 0) * per_epoch
        means = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        parts = ", ".join(f"{k} {v:.4f}" for k, v in means.items() if k != "loss")
        self.logger.info(
            "epoch %d/%d  loss %.4f%s  %.1fs  ETA %s",
            engine.state.epoch,
            engine.state.max_epochs,
            means.get("loss", math.nan),
            f" ({parts})" if parts else "",
            now - self._epoch_start,
            timedelta(seconds=round(remaining)),
        )


def _finite(value: Any) -> Any:
    """JSON-safe number: NaN becomes None."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _finite(value.item())
    return value


class MetricsWriter:
    """At the end of an evaluation, write ``metrics.json`` (with the epoch) and ``per_case.csv``, and log them.

    Attached to the validator during training it keeps the latest validation's figures on disk.

    Why not MONAI's ``MetricsSaver``: it writes one ``<metric>_raw.csv`` per metric from
    ``engine.state.metric_details`` (images as rows, classes as columns). A case here is one row
    of different kinds of values: the Dice of the best mask and of each of the four branches, the
    true class, the malignancy and presence probabilities and the image path. Those would be split
    over several files, and the probabilities are not metric details at all; scripts
    (make_results, the studies) read the single ``per_case.csv``.
    """

    def __init__(self, metric: MUNetMetrics, output_dir: str, prefix: str = "val_", log_summary: bool = True) -> None:
        self.metric = metric
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.log_summary = log_summary

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics = {k: _finite(v) for k, v in engine.state.metrics.items() if k.startswith(self.prefix)}
        record = {"epoch": engine.state.epoch, "cases": len(self.metric.rows), **metrics}
        (self.output_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        rows = self.metric.rows
        if rows:
            fields: List[str] = []
            for row in rows:
                fields += [k for k in row if k not in fields]
            with open(self.output_dir / "per_case.csv", "w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        if not self.log_summary:
            return
        shown = ", ".join(
            f"{k[len(self.prefix):]} {v:.4f}" if isinstance(v, float) else f"{k[len(self.prefix):]} n/a"
            for k, v in metrics.items()
            if not k[len(self.prefix):].startswith("dice_mask")
        )
        logger.info("evaluation on %d cases: %s", len(rows), shown)
        logger.info("wrote %s and %s", self.output_dir / "metrics.json", self.output_dir / "per_case.csv")


def _spacing_mm(image: Any) -> Optional[tuple]:
    """(row_mm, col_mm) from the ultrasound region metadata, or None when the file had none."""
    meta = getattr(image, "meta", {}) or {}
    spacing = meta.get(US_SPACING_KEY)
    if spacing is None:
        return None
    values = np.asarray(spacing.cpu() if isinstance(spacing, torch.Tensor) else spacing, dtype=float).reshape(-1)
    if values.size != 2 or not np.isfinite(values).all() or (values <= 0).any():
        return None
    return float(values[0]), float(values[1])


def _contour(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)


class PredictionWriter:
    """Write, per image, the best mask (input size, PNG 0/255), an overlay PNG, and one CSV of classes.

    When the input declared its physical spacing (DICOM ultrasound regions), the mask PNG carries
    it as its resolution and the CSV gives the spacing and the lesion area in mm^2.

    MONAI's ``SaveImaged`` writes the mask, but not the overlay a clinician looks at nor the class
    probabilities, and for PNG it would transpose rows and columns unless told otherwise; this
    writer works in the bundle's (rows, columns) convention throughout.

    Args:
        output_dir: folder of the outputs; ``predictions.csv`` goes there.
        class_names: names of the class probabilities' columns.
        threshold: probability at which a pixel is lesion.
        overlay: write ``<name>_overlay.png`` (image in gray, predicted contour in red).
        dicom_writer: for a DICOM input also write ``<name>_seg.dcm`` (DICOM Segmentation of the
            same mask) and ``<name>_sr.dcm`` (Structured Report with the class probabilities) with
            this writer (:class:`munet.integrations.dicom_outputs.DicomResultWriter`, given by the
            config so that this glue does not depend on the DICOM integration); the CSV gets their
            paths and SOP Instance UIDs, or ``dicom_error`` when the file cannot be referenced (the
            PNG outputs are still written). None writes no DICOM.
        image_size: the network's input size: an image far from it gets a ``warnings`` entry in the
            CSV and the log (:func:`munet.data.image_size.image_size_warning`).
        presence_threshold, presence_uncertain_below: the presence thresholds of the three-way
            ``finding`` (:mod:`munet.engines.finding`); on "no lesion" the class columns stay empty.
        review_rule: thresholds of the ``needs_review`` flag and its ``review_reasons``
            (:mod:`munet.engines.review`).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str] = ("benign", "malignant"),
        threshold: float = 0.5,
        overlay: bool = True,
        dicom_writer: Any = None,
        image_size: Optional[int] = None,
        presence_threshold: Optional[float] = None,
        presence_uncertain_below: Optional[float] = None,
        review_rule: Optional[Dict[str, Optional[float]]] = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.image_size = image_size
        self.presence_threshold = presence_threshold
        self.presence_uncertain_below = presence_uncertain_below
        self.review_rule = dict(review_rule or {})
        self.class_names = list(class_names)
        self.threshold = threshold
        self.overlay = overlay
        self._dicom_writer = dicom_writer
        self.rows: List[Dict[str, Any]] = []
        self._names: Dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write_batch)
        engine.add_event_handler(Events.COMPLETED, self._write_csv)

    def _started(self, engine: Engine) -> None:
        self.rows, self._names = [], {}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self._dicom_writer is not None:  # one SEG and one SR series per study and run
            self._dicom_writer.start()

    def _unique_stem(self, source: str) -> str:
        name = strip_image_suffix(Path(source).name)
        count = self._names.get(name, 0)
        self._names[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    def _write_batch(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for sample in outputs:
            self._write_sample(sample)

    def _write_sample(self, sample: Dict[str, Any]) -> None:
        image = sample["image"]
        source = str(getattr(image, "meta", {}).get("filename_or_obj", f"case_{len(self.rows):05d}"))
        stem = self._unique_stem(source)
        prob = sample["pred"].detach().float().cpu().numpy()[0]
        mask = prob >= self.threshold
        mask_path = self.output_dir / f"{stem}_mask.png"
        spacing = _spacing_mm(image)
        save_kwargs = {"dpi": (25.4 / spacing[1], 25.4 / spacing[0])} if spacing else {}
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path, **save_kwargs)
        row: Dict[str, Any] = {"image": source, "mask": str(mask_path), "lesion_pixels": int(mask.sum())}
        if LESION_PROB_KEY in sample:  # a presence head: its decision, and the probability behind it
            row["lesion_prob"] = round(float(sample[LESION_PROB_KEY]), 6)
        lesion_prob = float(sample[LESION_PROB_KEY]) if LESION_PROB_KEY in sample else None
        finding = image_finding(bool(mask.any()), lesion_prob, self.presence_threshold, self.presence_uncertain_below,
                                lesion_clicked=bool(sample.get(LESION_CLICKED_KEY, False)))
        row["finding"] = finding
        size_warning = image_size_warning(*mask.shape, self.image_size)
        if size_warning:
            logger.warning("%s: %s", source, size_warning)
            row["warnings"] = size_warning
        if spacing:
            row.update(spacing_row_mm=spacing[0], spacing_col_mm=spacing[1],
                       lesion_area_mm2=round(float(mask.sum()) * spacing[0] * spacing[1], 3))
        if self.overlay:
            gray = image.detach().float().cpu().numpy()
            gray = gray[0] if gray.ndim == 3 else gray
            if gray.shape == mask.shape:
                rgb = np.repeat((np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)[..., None], 3, axis=2)
                rgb[_contour(mask)] = (255, 0, 0)
                overlay_path = self.output_dir / f"{stem}_overlay.png"
                Image.fromarray(rgb).save(overlay_path)
                row["overlay"] = str(overlay_path)
        probs = None
        if CLASS_PROB_KEY in sample and class_call(finding):  # given a lesion; none on "no lesion"
            probs = sample[CLASS_PROB_KEY].detach().float().cpu().tolist()
            for name, p in zip(self.class_names, probs):
                row[f"prob_{name}"] = round(float(p), 6)
            row["predicted_class"] = self.class_names[int(np.argmax(probs))]
        agreement = sample.get(VIEW_AGREEMENT_KEY)
        if agreement is not None:
            row["view_agreement"] = round(float(agreement), 4)
        reasons = review_reasons(finding, None if agreement is None else float(agreement), row.get("prob_malignant"), self.review_rule)
        row["needs_review"] = "yes" if reasons else "no"
        row["review_reasons"] = "; ".join(reasons)
        if self._dicom_writer is not None and is_dicom_file(source):
            try:
                row.update(self._dicom_writer.write(source, mask, self.output_dir, stem, probs, row.get("lesion_area_mm2"),
                                                    finding=finding, lesion_prob=lesion_prob, review=reasons))
            except Exception as err:  # the PNG outputs stand; the CSV and the log say why there is no SEG
                reason = " ".join(str(err).split()) or type(err).__name__
                logger.warning("no DICOM SEG/SR for %s: %s", source, reason)
                row["dicom_error"] = reason
        self.rows.append(row)

    def _write_csv(self, engine: Engine) -> None:
        if not self.rows:
            logger.warning("no predictions were written: the datalist was empty")
            return
        fields: List[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        path = self.output_dir / "predictions.csv"
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        segs = sum(1 for row in self.rows if row.get("dicom_seg"))
        logger.info("wrote %d masks, overlays%s and %s", len(self.rows),
                    f", {segs} DICOM SEG + SR" if self._dicom_writer is not None else "", path)

