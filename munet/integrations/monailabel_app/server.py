"""The web app the MUNet MONAI Label server runs: MONAI Label 0.8.5's own, with its requests checked.

``scripts/start_monailabel.sh`` starts ``monailabel.main start_server --uvicorn_app
munet.integrations.monailabel_app.server:app``. Every request first passes :class:`.guard.RouteGuard`,
which refuses ids and paths that would reach outside the studies folder and any change to model
files. Every MONAI Label endpoint stays as it is, except four that this module answers itself (a
small app, :data:`checked`, reached through a middleware placed inside MONAI Label's CORS
middleware): each checks the request first and then calls MONAI Label's own code. Exception
handlers turn MONAI Label's input errors into 4xx too.

- ``PUT /datastore/image``: a plain image id, and a file with an image suffix that the bundle
  reads (422); MONAI Label stored a text file, or weights, as a study image.

- ``PUT /datastore/label``: the image id must be in the datastore (404), ``params`` a JSON object,
  ``params.class`` a known class, ``tag`` a plain name, and the label an image the bundle reads,
  with its image's rows x columns, binary (422); MONAI Label stored any file before.
- ``POST /infer/<model>``: a served model (404 naming the served ones), ``params`` a JSON object
  whose ``model_filename`` and ``device`` are the model's own weights and a device here (422), an
  ``image`` that is in the datastore (404 naming the id, not ": file not found").
- ``POST /train/<model>``: a known trainer (404), a JSON-object body whose options are checked
  (:func:`.checks.check_train_options`: ``max_epochs`` 0 or "abc" is a 422 naming the field);
  the options returned are completed with the defaults (an empty body trains
  :data:`.train.DEFAULT_MAX_EPOCHS` epochs, and says so). A synchronous run answers the
  trainer's result: both validation scores and whether the new weights were published.

Errors answer ``{"detail": "<field>: <what is wrong>"}``; no message shows a server path
(:func:`.checks.scrub_paths`). The replaced routes keep MONAI Label's paths, parameters and
access roles, so 3D Slicer and the other clients see the same API.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.background import BackgroundTasks
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from monailabel.app import app as monailabel_app
from monailabel.config import settings
from monailabel.endpoints import datastore as datastore_endpoint
from monailabel.endpoints import infer as infer_endpoint
from monailabel.endpoints import train as train_endpoint
from monailabel.endpoints.infer import ResultType
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException, MONAILabelError, MONAILabelException
from monailabel.interfaces.utils.app import app_instance
from monailabel.utils.others.generic import device_map, remove_file
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from munet.integrations.monailabel_app.annotate import PAGE_PATH, install_page
from munet.integrations.monailabel_app.auth import TokenAuth, auth_settings
from munet.integrations.monailabel_app.checks import (
    RequestError,
    check_clicks,
    check_image_upload,
    check_infer_options,
    check_infer_params,
    check_label_class,
    check_label_file,
    check_plain_id,
    check_tag,
    parse_json_object,
    scrub_paths,
)
from munet.integrations.monailabel_app.guard import RouteGuard

logger = logging.getLogger(__name__)

__all__ = ["app", "checked", "install", "CheckedRoutes"]

#: the three checked endpoints (same paths, parameters and roles as MONAI Label's)
checked = FastAPI(title="MUNet: checked MONAI Label endpoints", openapi_url=None, docs_url=None, redoc_url=None)
_API = settings.MONAI_LABEL_API_STR


def _image_uri(instance: Any, image: Optional[str]) -> str:
    """The datastore file of ``image``; RequestError naming the id when there is none."""
    if not image:
        raise RequestError("image", "missing: give the image id, ?image=<id> (GET /datastore/?output=all lists them)")
    uri = instance.datastore().get_image_uri(image)
    if not uri or not os.path.isfile(uri):
        raise RequestError("image", f"{scrub_paths(image[:200])!r} is not in the datastore (GET /datastore/?output=all lists the ids)", 404)
    return uri


def _suffix(filename: Optional[str]) -> str:
    suffixes = "".join(Path(filename).suffixes) if filename else ""
    return suffixes if suffixes and len(suffixes) <= 16 and all(c.isalnum() or c == "." for c in suffixes) else ".png"


@checked.put(f"{_API}/datastore/label", summary="Save Finished Label (checked: readable, same rows x columns, binary, known class)")
async def api_save_label(
    background_tasks: BackgroundTasks,
    image: Optional[str] = None,
    params: Optional[str] = Form(None),
    tag: Optional[str] = DefaultLabelTag.FINAL.value,
    label: Optional[UploadFile] = File(None),
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
):
    instance = app_instance()
    label_file = None
    try:
        tag = check_tag(tag)
        info = parse_json_object(params, "params")
        image_uri = _image_uri(instance, image)
        check_label_class(info, instance.class_names())
        if label is None:
            raise RequestError("label", "missing: upload the mask as the form file 'label' (a PNG of the image's rows x columns)")
        label_file = tempfile.NamedTemporaryFile(suffix=_suffix(label.filename), delete=False).name
        with open(label_file, "wb") as buffer:
            shutil.copyfileobj(label.file, buffer)
        checked = check_label_file(label_file, label.filename or "label", image_uri, str(image))
    except BaseException as err:  # a RequestError is answered by _request_error
        if isinstance(err, RequestError):
            logger.warning(f"PUT /datastore/label refused: {err.message}")
        if label_file:
            remove_file(label_file)
        raise
    background_tasks.add_task(remove_file, label_file)  # after the answer
    logger.info(f"Saving label for {image} (tag {tag}): {checked['shape'][0]}x{checked['shape'][1]}, "
                f"{checked['lesion_pixels']} lesion pixels; params {info}")
    datastore = instance.datastore()
    label_id = datastore.save_label(image, label_file, tag, info)
    result = instance.on_save_label(image, label_id) or {}
    result.update({"image": image, "label": label_id})
    stored = datastore.get_label_info(label_id, tag) or {}
    if stored.get("seg_sop_instance_uid"):  # a PACS datastore: the SEG it stored and read back
        result["dicom_seg"] = {k: stored[k] for k in ("seg_sop_instance_uid", "seg_series_instance_uid", "StudyInstanceUID") if k in stored}
    if checked["warnings"]:
        logger.warning(f"label of {image} saved with warnings: {'; '.join(checked['warnings'])}")
        result["warnings"] = checked["warnings"]
    return result


@checked.put(f"{_API}/datastore/image/info", summary="Update Image Info (checked: info is a JSON object)")
async def api_put_image_info(image: str, info: str = Form("{}"), user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    parse_json_object(info, "info", example='{"comment": "reviewed"}')
    return datastore_endpoint.update_image_info(image, info, user.username)


@checked.put(f"{_API}/datastore/label/info", summary="Update Label Info (checked: info is a JSON object)")
async def api_put_label_info(label: str, tag: str, info: str = Form("{}"),
                             user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    parse_json_object(info, "info", example='{"class": "benign"}')
    return datastore_endpoint.update_label_info(label, check_tag(tag), info, user.username)


@checked.put(f"{_API}/datastore/updatelabelinfo", include_in_schema=False)
async def api_update_label_info(label: str, tag: str, params: str = Form("{}"),
                                user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))):
    parse_json_object(params, "params", example='{"class": "benign"}')
    return datastore_endpoint.update_label_info(label, check_tag(tag), params, user.username)


@checked.put(f"{_API}/datastore/image", summary="Upload new Image (checked: a plain id, an image file the bundle reads)")
@checked.put(f"{_API}/datastore/", summary="Upload new Image (checked)", include_in_schema=False)
async def api_add_image(
    background_tasks: BackgroundTasks,
    image: Optional[str] = None,
    params: str = Form("{}"),
    file: UploadFile = File(None),
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)),
):
    instance = app_instance()
    image_file = None
    try:
        info = parse_json_object(params, "params")
        if file is None:
            raise RequestError("file", "missing: upload the image as the form file 'file'")
        name = os.path.basename(file.filename or "")
        image_file = tempfile.NamedTemporaryFile(suffix=_suffix(name), delete=False).name
        with open(image_file, "wb") as buffer:
            shutil.copyfileobj(file.file, buffer)
        suffix = check_image_upload(image_file, name)
        image_id = check_plain_id("image", image or name[: -len(suffix)])
    except BaseException as err:
        if isinstance(err, RequestError):
            logger.warning(f"PUT /datastore/image refused: {err.message}")
        if image_file:
            remove_file(image_file)
        raise
    background_tasks.add_task(remove_file, image_file)
    info["user"] = user.username
    return {"image": instance.datastore().add_image(image_id, image_file, info)}


@checked.post(f"{_API}/infer/{{model}}", summary="Run Inference for supported model (checked model, params and image)")
async def api_run_inference(
    background_tasks: BackgroundTasks,
    model: str,
    image: str = "",
    session_id: str = "",
    params: str = Form("{}"),
    file: UploadFile = File(None),
    label: UploadFile = File(None),
    output: Optional[ResultType] = None,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER)),
):
    instance = app_instance()
    try:
        served = instance.served_models()
        if model not in served:
            why = instance.not_served.get(model)
            raise RequestError("model", f"{model[:100]!r} is not served here" + (f": {why}" if why else "")
                               + f" (served: {', '.join(served) or 'none'})", 404)
        options = parse_json_object(params, "params", example='{"foreground": [[40, 31]], "background": []}')
        task = instance._infers.get(model)
        check_infer_params(options, list(task.config()) if task is not None else [])
        check_clicks(options)
        devices = sorted(set(device_map()) | set(device_map().values()))
        check_infer_options(options, [task.const.model_pytorch()] if task is not None else [], devices)
        if session_id:
            sessions = instance.sessions()
            if sessions is None or sessions.get_session(session_id) is None:
                raise RequestError("session_id", f"{session_id[:80]!r} is not a session of this server (it may have expired; "
                                                 "PUT /session/ creates one)", 404)
        elif not file:
            _image_uri(instance, image)
    except RequestError as err:
        logger.warning(f"POST /infer/{model[:100]} refused: {err.message}")
        raise
    # in a worker thread, one inference at a time: /info/ and the datastore keep answering meanwhile
    # (MONAI Label runs it on the event loop, which blocked every other request)
    return await run_in_threadpool(_run_inference_alone, background_tasks, model, image, session_id, params, file, label, output)


_INFERENCE = threading.Lock()


def _run_inference_alone(*args: Any) -> Any:
    with _INFERENCE:
        return infer_endpoint.run_inference(*args)


@checked.post(f"{_API}/train/{{model}}", summary="Run Training Task for specific model (checked options; publishes only better weights)")
async def api_run_model(
    model: str,
    request: Request,
    run_sync: Optional[bool] = False,
    enqueue: Optional[bool] = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    instance = app_instance()
    raw = await request.body()
    try:
        body: Any = {}
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as err:
                raise RequestError("body", f"not valid JSON ({err}); send a JSON object such as {{\"max_epochs\": 5}}") from None
        options = instance.check_train_request(model, body)
    except RequestError as err:
        logger.warning(f"POST /train/{model[:100]} refused: {err.message}")
        raise
    # a RequestError found while training synchronously (no labels yet) is answered the same way
    return await run_in_threadpool(train_endpoint.run_model, model, options, run_sync, enqueue)


async def _monailabel_exception(request: Request, err: MONAILabelException) -> JSONResponse:
    """MONAI Label's own errors: bad input is the client's (4xx), the rest the server's (500)."""
    if isinstance(err, (ImageNotFoundException, LabelNotFoundException)):
        status = 404
    elif err.error == MONAILabelError.INVALID_INPUT:
        status = 422
    else:
        status = 500
    return JSONResponse(status_code=status, content={"detail": scrub_paths(str(err.msg))})


async def _request_error(request: Request, err: RequestError) -> JSONResponse:
    return JSONResponse(status_code=err.status, content={"detail": err.message})


async def _scrubbed_http_exception(request: Request, err: StarletteHTTPException) -> Any:
    if isinstance(err.detail, str):
        err.detail = scrub_paths(err.detail)
    return await http_exception_handler(request, err)


class CheckedRoutes:
    """Middleware: requests for one of :data:`checked`'s routes go there, all others to MONAI Label."""

    def __init__(self, app: ASGIApp, checked_app: FastAPI) -> None:
        self.app = app
        self.checked_app = checked_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.checked_app.router.routes:
                if isinstance(route, APIRoute) and route.matches(scope)[0] == Match.FULL:
                    await self.checked_app(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> FastAPI:
    """Before the server starts: add the annotation page (:mod:`.annotate`), check the client's token when the server has one (:mod:`.auth`),
    guard every route's ids and paths (:class:`.guard.RouteGuard`), route the checked endpoints to
    :data:`checked` (inner middleware: CORS still applies) and add the exception handlers to both apps."""
    install_page(app)
    app.user_middleware.append(Middleware(TokenAuth, token=auth_settings(), public_prefix=f"{PAGE_PATH}/"))
    app.user_middleware.append(Middleware(RouteGuard, app_instance=app_instance, api=_API))
    app.user_middleware.append(Middleware(CheckedRoutes, checked_app=checked))
    for target in (app, checked):
        target.add_exception_handler(MONAILabelException, _monailabel_exception)
        target.add_exception_handler(RequestError, _request_error)
        target.add_exception_handler(StarletteHTTPException, _scrubbed_http_exception)
    return app


app = install(monailabel_app)
