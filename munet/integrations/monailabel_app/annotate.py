"""The annotation page of the server, for 2D ultrasound: ``/annotate/``.

MONAI Label's clients do not fit 2D ultrasound: the OHIF it serves offers its MONAI Label mode for
CT and MR only (three black MPR viewports on a US study, a 3D labelmap, no save), and 3D Slicer is
a desktop program. This page is plain HTML, CSS and JavaScript (``annotate/``, no build step, no
library: a 2D canvas is all it draws on) and talks to MONAI Label's own API (``/info/``,
``/infer/<model>``, ``PUT /datastore/label``), through the same checks and guard as any client.

What the page needs that MONAI Label's API lacks, served here:

- ``GET /annotate/api/images``: every image of the datastore with its state (labelled or not) and
  the model's uncertainty when recorded, and the next image to annotate (the most uncertain
  unlabelled one, else the first unlabelled);
- ``GET /annotate/api/image?image=<id>``: the image as an 8-bit PNG as a viewer shows it, read by
  the bundle's own readers (DICOM with its VOI LUT and photometric interpretation; PNG and JPEG
  in any PIL mode), at full resolution. A browser cannot show DICOM, and MONAI Label's
  ``GET /datastore/image`` returns the stored file.

The static files are public (they hold no data); with a token (:mod:`.auth`), the page asks for it
and sends it with every API request.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance
from PIL import Image
from starlette.concurrency import run_in_threadpool

from munet.integrations.monailabel_app.checks import RequestError, check_plain_id, scrub_paths

logger = logging.getLogger(__name__)

__all__ = ["PAGE_DIR", "PAGE_PATH", "install_page", "display_png"]

PAGE_DIR = Path(__file__).resolve().parent / "annotate"
PAGE_PATH = "/annotate"
router = APIRouter(prefix=f"{PAGE_PATH}/api", tags=["Annotation page"])


def display_png(path: str) -> bytes:
    """The image at ``path`` as an 8-bit PNG (gray or RGB) the way the bundle reads it: 8-bit
    values kept, wider ranges (16-bit DICOM after its VOI LUT) scaled to 0-255."""
    from munet.data.loading import load_image

    array = np.asarray(load_image(path), dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] not in (3, 4):
        array = array[..., 0]
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        array = (array - low) / max(high - low, 1e-6) * 255
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_states() -> Dict[str, Any]:
    datastore = app_instance().datastore()
    images = sorted(datastore.list_images())
    labelled = set(datastore.get_labeled_images())
    rows: List[Dict[str, Any]] = []
    for image_id in images:
        row: Dict[str, Any] = {"id": image_id, "labelled": image_id in labelled}
        try:
            score = (datastore.get_image_info(image_id) or {}).get("munet_uncertainty")
        except Exception:  # noqa: BLE001 - a PACS image not fetched yet has no info
            score = None
        if score is not None:
            row["uncertainty"] = float(score)
        rows.append(row)
    unlabelled = [r for r in rows if not r["labelled"]]
    scored = sorted((r for r in unlabelled if "uncertainty" in r), key=lambda r: -r["uncertainty"])
    following = scored[0]["id"] if scored else (unlabelled[0]["id"] if unlabelled else None)
    return {"images": rows, "next": following, "labelled": len(rows) - len(unlabelled), "total": len(rows)}


@router.get("/images", summary="The images with their state and the next one to annotate")
async def api_images(user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> Dict[str, Any]:
    return await run_in_threadpool(_image_states)


def _image_png(image: str) -> bytes:
    image = check_plain_id("image", image)
    uri = app_instance().datastore().get_image_uri(image)
    if not uri or not Path(uri).is_file():
        raise RequestError("image", f"{image[:120]!r} is not in the datastore", 404)
    try:
        return display_png(uri)
    except Exception as err:  # the bundle's readers name the problem; the client gets it without paths
        text = scrub_paths(" ".join(str(err).split()))[:300]
        logger.warning(f"annotation page: image {image} cannot be shown: {text}")
        raise RequestError("image", f"{image[:120]!r} cannot be read: {text}", 422) from None


@router.get("/image", summary="The image as an 8-bit PNG as a viewer shows it", response_class=Response)
async def api_image(image: str = "", user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> Response:
    if not image:
        raise RequestError("image", "missing: give ?image=<id> (GET /annotate/api/images lists them)")
    data = await run_in_threadpool(_image_png, image)
    return Response(content=data, media_type="image/png", headers={"Cache-Control": "no-store"})


def install_page(app: FastAPI) -> None:
    """Add the page's API and its static files (``/annotate/``) to ``app``."""
    app.include_router(router)
    app.mount(PAGE_PATH, StaticFiles(directory=str(PAGE_DIR), html=True), name="annotate")
