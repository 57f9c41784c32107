"""A DICOMweb (PACS) datastore for 2D ultrasound, whose labels are DICOM SEG written by the bundle.

Why not MONAI Label's ``DICOMWebDatastore`` (0.8.5): it takes a *series* as one image and turns
it into a NIfTI volume through SimpleITK/GDCM, saves a label through dcmqi's
``itkimage2segimage`` (which aborts on a single-frame ultrasound image without plane tags, and
whose exit code it does not check), downloads dcmqi from the internet at start-up, and searches
``{"Modality": "CT"}`` by default. In ultrasound each *instance* is an image. So here:

- an image id is an instance's SOP Instance UID; the images are the instances the search filter
  (``MONAI_LABEL_DICOMWEB_SEARCH_FILTER``, ``{"Modality": "US"}`` by the start script) finds;
- the image is fetched once by WADO-RS into the cache folder as it is stored (a ``.dcm`` the
  bundle reads with its own DICOM reader: MONOCHROME1, VOI LUT, YBR, regions);
- a final label is written as a DICOM SEG by :func:`munet.integrations.dicom_outputs.label_segmentation`
  (highdicom; MANUAL segment; over a display copy with a plane geometry when the image has none,
  which OHIF needs), stored by STOW-RS and **read back**
  from the PACS before the save is reported: only then is it kept in the cache as the PNG that
  training reads. A PACS that does not answer is a 502 naming it; nothing is kept then;
- an image counts as labelled when the cache holds its label or the PACS holds a SEG made by an
  annotator (not AUTOMATIC) that references it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from PIL import Image

from munet.integrations.dicom_outputs import DISPLAY_COPY_MARK
from munet.integrations.monailabel_app.checks import RequestError, scrub_paths

logger = logging.getLogger(__name__)

__all__ = ["PacsDatastore", "DEFAULT_SEARCH_FILTER"]

DEFAULT_SEARCH_FILTER = {"Modality": "US"}
#: seconds a PACS listing is reused before asking again
LIST_TTL = 10.0


def _first(item: Dict, keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    value = (item.get(f"{tag_for_keyword(keyword):08X}") or {}).get("Value") or [""]
    return str(value[0])


class PacsDatastore(LocalDatastore):
    """The datastore of a DICOMweb root (module docstring); a local cache folder keeps the fetched
    images, the labels as PNG and MONAI Label's datastore file.

    Args:
        url: the DICOMweb root (``http://pacs:8042/dicom-web``).
        cache_path: the cache folder (default ``~/.cache/munet/dicomweb/<host_port>``).
        search_filter: QIDO-RS keys of the instances to annotate.
    """

    def __init__(self, url: str, cache_path: Optional[str] = None, search_filter: Optional[Dict[str, Any]] = None) -> None:
        from munet.integrations.pacs import make_client

        self.url = url.rstrip("/")
        self._client = make_client(self.url)
        self._search_filter = dict(search_filter or DEFAULT_SEARCH_FILTER)
        self._where: Dict[str, Tuple[str, str]] = {}  # SOP Instance UID -> (study, series)
        self._listed: Tuple[float, List[str], List[str]] = (0.0, [], [])
        self._lock = threading.RLock()
        host = self.url.split("://", 1)[-1].split("/", 1)[0].replace(":", "_")
        cache = Path(cache_path or Path.home() / ".cache" / "munet" / "dicomweb" / host)
        cache.mkdir(parents=True, exist_ok=True)
        logger.info(f"DICOMweb datastore {self.url}: instances matching {self._search_filter}, cache {cache}")
        super().__init__(str(cache), extensions=["*.dcm"], auto_reload=False)

    def name(self) -> str:
        return self.url

    # -- what the PACS holds ----------------------------------------------------------------
    def _pacs_error(self, what: str, err: Exception) -> RequestError:
        text = scrub_paths(" ".join(str(err).split()))[:200]
        logger.warning(f"PACS {self.url}: {what} failed: {text}")
        return RequestError("pacs", f"the PACS ({self.url}) did not answer while {what} ({type(err).__name__}: {text[:80]})", 502)

    def _listing(self) -> Tuple[List[str], List[str]]:
        """(images, annotated images) of the PACS, reused for :data:`LIST_TTL` seconds."""
        with self._lock:
            stamp, images, annotated = self._listed
            if time.time() - stamp < LIST_TTL:
                return images, annotated
            try:
                found = self._client.search_for_instances(search_filters=self._search_filter, fields=["SeriesDescription"])
                segs = self._client.search_for_series(search_filters={"Modality": "SEG"})
                annotated = []
                for seg in segs:
                    for meta in self._client.retrieve_series_metadata(_first(seg, "StudyInstanceUID"), _first(seg, "SeriesInstanceUID")):
                        annotated += self._annotated_sources(meta)
            except Exception as err:  # noqa: BLE001 - requests, HTTP errors: the PACS is the cause
                raise self._pacs_error("listing the images", err) from err
            images = []
            for item in found:
                if _first(item, "SeriesDescription").endswith(DISPLAY_COPY_MARK):
                    continue  # a copy the bundle made for viewers, not an image to annotate
                uid = _first(item, "SOPInstanceUID")
                self._where[uid] = (_first(item, "StudyInstanceUID"), _first(item, "SeriesInstanceUID"))
                images.append(uid)
            self._listed = (time.time(), images, annotated)
            return images, annotated

    @staticmethod
    def _annotated_sources(meta: Dict) -> List[str]:
        """The instances a SEG's metadata references, when an annotator made it (not AUTOMATIC)."""
        from pydicom import Dataset

        seg = Dataset.from_json(meta)
        if all(str(s.get("SegmentAlgorithmType", "")) == "AUTOMATIC" for s in seg.get("SegmentSequence", [])):
            return []
        return [str(i.ReferencedSOPInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])
                for i in s.get("ReferencedInstanceSequence", [])]

    def list_images(self) -> List[str]:
        return list(self._listing()[0])

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        images, annotated = self._listing()
        local = set(super().get_labeled_images(label_tag or DefaultLabelTag.FINAL.value))
        return [i for i in images if i in local or i in set(annotated)]

    def get_unlabeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        labelled = set(self.get_labeled_images(label_tag))
        return [i for i in self.list_images() if i not in labelled]

    # -- images -----------------------------------------------------------------------------
    def get_image_uri(self, image_id: str) -> str:
        """The cached ``.dcm`` of the instance, fetched from the PACS the first time; "" when the
        PACS has no such image."""
        path = Path(self._datastore.image_path()) / f"{image_id}.dcm"
        if path.is_file() and image_id in self._datastore.objects:
            return str(path)
        if image_id not in self._where:
            self._listed = (0.0, [], [])
            if image_id not in self.list_images():
                return ""
        study, series = self._where[image_id]
        try:
            instance = self._client.retrieve_instance(study, series, image_id)
        except Exception as err:  # noqa: BLE001
            raise self._pacs_error(f"fetching image {image_id}", err) from err
        # written outside the cache first: add_image copies the file in (onto itself it would fail)
        handle, incoming = tempfile.mkstemp(suffix=".dcm", prefix="munet-pacs-")
        os.close(handle)
        try:
            instance.save_as(incoming, enforce_file_format=True)
            super().add_image(image_id, incoming, {"StudyInstanceUID": study, "SeriesInstanceUID": series})
        finally:
            os.unlink(incoming)
        return str(path)

    # -- labels -----------------------------------------------------------------------------
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        """A final label goes to the PACS as a DICOM SEG, read back before it is kept here; other
        tags (drafts) stay in the cache only."""
        if label_tag != DefaultLabelTag.FINAL.value:
            return super().save_label(image_id, label_filename, label_tag, label_info)
        from munet.integrations.dicom_outputs import label_segmentation

        source = self.get_image_uri(image_id)
        if not source:
            raise RequestError("image", f"{image_id!r} is not an image of the PACS", 404)
        mask = np.asarray(Image.open(label_filename)) > 0
        seg, display = label_segmentation(source, mask, label_info.get("class"))
        try:
            self._client.store_instances([display, seg] if display is not None else [seg])
            stored = self._client.retrieve_instance_metadata(seg.StudyInstanceUID, seg.SeriesInstanceUID, seg.SOPInstanceUID)
        except Exception as err:  # noqa: BLE001
            raise self._pacs_error(f"storing the label of {image_id} as DICOM SEG", err) from err
        if _first(stored, "SOPInstanceUID") != seg.SOPInstanceUID:
            raise RequestError("pacs", f"the PACS ({self.url}) did not give back the SEG it was sent for {image_id}", 502)
        info = {**label_info, "seg_sop_instance_uid": str(seg.SOPInstanceUID), "seg_series_instance_uid": str(seg.SeriesInstanceUID),
                "StudyInstanceUID": str(seg.StudyInstanceUID)}
        logger.info(f"label of {image_id} stored in the PACS as SEG {seg.SOPInstanceUID} and read back")
        self._listed = (0.0, [], [])
        return super().save_label(image_id, label_filename, label_tag, info)

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The cached PNG; a final label only the PACS holds (made elsewhere) is fetched and cached first."""
        uri = super().get_label_uri(label_id, label_tag)
        if uri or label_tag != DefaultLabelTag.FINAL.value:
            return uri
        return self._fetch_label(image_id or label_id)

    def _fetch_label(self, image_id: str) -> str:
        if image_id not in self.get_labeled_images():
            return ""
        for seg in self._client.search_for_series(search_filters={"Modality": "SEG"}):
            study, series = _first(seg, "StudyInstanceUID"), _first(seg, "SeriesInstanceUID")
            for meta in self._client.retrieve_series_metadata(study, series):
                if image_id in self._annotated_sources(meta):
                    ds = self._client.retrieve_instance(study, series, _first(meta, "SOPInstanceUID"))
                    mask = (np.asarray(ds.pixel_array) > 0).astype(np.uint8)
                    png = Path(self._datastore.image_path()) / f".{image_id}_seg.png"
                    Image.fromarray(mask.reshape(mask.shape[-2:])).save(png)
                    self.get_image_uri(image_id)
                    try:
                        return self._label_uri_after(super().save_label(image_id, str(png), DefaultLabelTag.FINAL.value, {"from_pacs": True}))
                    finally:
                        png.unlink(missing_ok=True)
        return ""

    def _label_uri_after(self, label_id: str) -> str:
        return super().get_label_uri(label_id, DefaultLabelTag.FINAL.value)

    def datalist(self, full_path: bool = True) -> List[Dict[str, Any]]:
        """Every labelled image with its label, fetched from the PACS where the cache lacks them."""
        for image_id in self.get_labeled_images():
            self.get_image_uri(image_id)
            self.get_label_uri(image_id, DefaultLabelTag.FINAL.value, image_id)
        return super().datalist(full_path)
