"""Middleware that keeps every MONAI Label route inside its folders.

MONAI Label 0.8.5 joins the ids a client sends (``?image=``, ``?id=``, ``?label=``, a session id,
a model name) to a folder without checking them: ``PUT /datastore/image?image=../../x`` wrote a
file three levels above the studies folder, ``DELETE /datastore/image?id=../../x`` deleted one,
and ``PUT /datastore/image?image=../../../main/models/model`` replaced the served weights, past
the training's publish gate. This middleware runs before any route and refuses, with a 4xx that
names the field:

- an id that is not a plain name (:func:`.checks.check_plain_id`): ``../``, absolute paths,
  ``%2e%2e%2f`` however encoded, backslashes (400);
- an id of an existing image or label that is not in the datastore (404), or whose file resolves
  outside the studies folder through a symbolic link (403);
- any change to model files through ``PUT``/``DELETE /model/...`` (403): weights are published only
  by the server's training, which compares them with the served ones first; a download names a
  model this server has (404 otherwise);
- a session id that is not plain (400).

JSON answers of the datastore routes carry no absolute server path (:func:`.checks.scrub_paths`).
Nothing here changes what a well-formed request does.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from munet.integrations.monailabel_app.checks import RequestError, check_inside, check_plain_id, check_tag, scrub_paths

logger = logging.getLogger(__name__)

__all__ = ["RouteGuard", "EXISTING_ID_ROUTES", "NAMED_PATHS"]

#: (method, path) -> the query field naming an image that must exist in the datastore
EXISTING_ID_ROUTES: Dict[Tuple[str, str], str] = {
    ("GET", "/datastore/image"): "image",
    ("HEAD", "/datastore/image"): "image",
    ("DELETE", "/datastore/image"): "id",
    ("DELETE", "/datastore/"): "id",
    ("GET", "/datastore/image/info"): "image",
    ("PUT", "/datastore/image/info"): "image",
    ("GET", "/datastore/label"): "label",
    ("HEAD", "/datastore/label"): "image",
    ("DELETE", "/datastore/label"): "id",
    ("GET", "/datastore/label/info"): "label",
    ("PUT", "/datastore/label/info"): "label",
    ("PUT", "/datastore/updatelabelinfo"): "label",
    ("PUT", "/datastore/label"): "image",
}
#: query fields that become file names somewhere (checked on every route)
ID_FIELDS = ("image", "id", "label", "tag", "session_id")
#: path prefixes whose remainder is a name (a model, a session, a strategy): it must be plain
NAMED_PATHS = ("/infer/wsi_v2/", "/infer/wsi/", "/batch/infer/", "/infer/", "/train/", "/model/info/", "/model/", "/session/",
               "/scoring/", "/activelearning/")
#: datastore answers whose JSON is scrubbed of absolute paths
SCRUBBED = ("/datastore/", "/datastore/image/info", "/datastore/label/info", "/session/")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_paths(value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


class RouteGuard:
    """ASGI middleware: the checks above, then the app. ``app_instance`` returns the MONAI Label app
    (its datastore, studies folder and model names); ``api`` is MONAI Label's API prefix."""

    def __init__(self, app: ASGIApp, app_instance: Callable[[], Any], api: str = "") -> None:
        self.app = app
        self.app_instance = app_instance
        self.api = api.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.api and path.startswith(self.api):
            path = path[len(self.api):]
        try:
            self.check(scope["method"], path, unquote(scope.get("raw_path", b"").decode("latin-1")),
                       parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        except RequestError as err:
            logger.warning(f"{scope['method']} {path[:120]} refused: {err.message}")
            await _answer(send, err.status, {"detail": err.message})
            return
        if scope["method"] == "GET" and path in SCRUBBED or path.startswith(("/session/", "/activelearning/")):
            await self.app(scope, receive, _scrubbing(send))
        else:
            await self.app(scope, receive, send)

    def check(self, method: str, path: str, raw_path: str, query: List[Tuple[str, str]]) -> None:
        """Raise :class:`RequestError` for a request that names something outside its folders."""
        if ".." in raw_path.split("?")[0] or "\\" in path:
            raise RequestError("path", f"{path[:80]!r} is not a route (no '..' or '\\\\' in a path)", 400)
        for field, value in query:
            if field == "tag":
                check_tag(value)
            elif field in ID_FIELDS and value:
                check_plain_id(field, value)
        for prefix in NAMED_PATHS:
            if path.startswith(prefix) and len(path) > len(prefix):
                name = path[len(prefix):].rstrip("/")
                field = "model" if prefix.startswith(("/model", "/infer", "/train", "/batch")) else prefix.strip("/")
                check_plain_id(field, name)
                break
        if path.startswith("/model/"):
            self._check_model_route(method, path)
        field = EXISTING_ID_ROUTES.get((method, path))
        if field:
            value = dict(query).get(field)
            if value:
                self._check_existing_image(field, value)

    def _check_model_route(self, method: str, path: str) -> None:
        if method in ("PUT", "POST", "DELETE"):
            raise RequestError("model", "model files are not changed through the API: the server's training publishes "
                                        "weights only when they score at least as well as the served ones", 403)
        name = path.rsplit("/", 1)[-1]
        instance = self.app_instance()
        known = set(getattr(instance, "_infers", {}) or {}) | set(getattr(instance, "_trainers", {}) or {})
        if name not in known:
            raise RequestError("model", f"{name!r} is not a model of this server (models: {', '.join(sorted(known)) or 'none'})", 404)

    def _check_existing_image(self, field: str, image_id: str) -> None:
        datastore = self.app_instance().datastore()
        uri = datastore.get_image_uri(image_id)
        if not uri:
            raise RequestError(field, f"{image_id!r} is not in the datastore (GET /datastore/?output=all lists the ids)", 404)
        folder = getattr(datastore, "_datastore_path", None)
        if folder and not str(uri).startswith(("http://", "https://")):
            check_inside(field, str(uri), str(folder))


async def _answer(send: Send, status: int, content: Dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _scrubbing(send: Send) -> Send:
    """``send`` for a JSON answer rewritten without absolute server paths (other answers pass as they are)."""
    start: Optional[Message] = None
    chunks: List[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            if headers.get(b"content-type", b"").startswith(b"application/json"):
                start = message
                return
            await send(message)
            return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        try:
            body = json.dumps(_scrub(json.loads(b"".join(chunks)))).encode()
        except ValueError:
            body = b"".join(chunks)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped
