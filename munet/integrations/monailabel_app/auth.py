"""Only authorised clients: a bearer token checked on every request when the server has one.

MONAI Label's own authentication (``MONAI_LABEL_AUTH_ENABLE``) validates tokens issued by a
Keycloak server; a department running this app on one workstation usually has none. So the app
checks a shared secret itself:

- started with ``--token_file FILE`` (``munet serve`` / ``scripts/start_monailabel.sh``), every
  request must carry ``Authorization: Bearer <token>``; others get 401, a wrong token too;
- bound to an address other than the loopback one, the server does not start without a token
  (:func:`auth_settings` raises): anyone on the network could otherwise upload, label and train;
- bound to 127.0.0.1 without a token, it stays open (only this machine reaches it).

CORS preflight requests (``OPTIONS``, which browsers send without credentials) pass to MONAI
Label's CORS middleware, which sits outside this one. The token is compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import stat
from pathlib import Path
from typing import Optional

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

__all__ = ["TokenAuth", "auth_settings", "is_loopback", "TOKEN_FILE_ENV", "HOST_ENV", "MIN_TOKEN_LENGTH"]

#: set by the start script: the token file and the address the server binds
TOKEN_FILE_ENV = "MUNET_SERVER_TOKEN_FILE"
HOST_ENV = "MUNET_SERVER_HOST"
MIN_TOKEN_LENGTH = 16
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > server.token; chmod 600 server.token"


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a network address


def read_token(path: str) -> str:
    """The token in ``path`` (first line); ValueError naming the file when it cannot serve as one."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"token file {path}: not found; make one with: {_MAKE_ONE}")
    token = file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0].strip() if file.stat().st_size else ""
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ValueError(f"token file {path}: the token must be one line of at least {MIN_TOKEN_LENGTH} characters without "
                         f"spaces; make one with: {_MAKE_ONE}")
    if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(f"token file {path} is readable by other users of this machine: chmod 600 {path}")
    return token


def auth_settings(host: Optional[str] = None, token_file: Optional[str] = None) -> Optional[str]:
    """The token requests must carry (None: no check), from the arguments or the start script's
    environment; ValueError for a server bound beyond this machine without one."""
    host = host if host is not None else os.environ.get(HOST_ENV, "127.0.0.1")
    token_file = token_file if token_file is not None else os.environ.get(TOKEN_FILE_ENV, "")
    if token_file:
        return read_token(token_file)
    if not is_loopback(host):
        raise ValueError(f"the server binds {host}, which other machines reach, and has no token: start it with "
                         f"--token_file FILE (make one with: {_MAKE_ONE}), or bind 127.0.0.1")
    return None


class TokenAuth:
    """ASGI middleware: with a token, a request without ``Authorization: Bearer <token>`` gets 401.

    ``public_prefix``: static files anyone may GET (the annotation page's HTML, CSS and script,
    which hold no data; the page then sends the token with each API request). Its ``api/`` stays
    behind the token."""

    def __init__(self, app: ASGIApp, token: Optional[str], public_prefix: Optional[str] = None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.public_prefix = public_prefix

    def _public(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        return (self.public_prefix is not None and scope.get("method") in ("GET", "HEAD") and path.startswith(self.public_prefix)
                and not path.startswith(f"{self.public_prefix}api/") and ".." not in path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.expected is None or scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS"
                or self._public(scope)):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?",))[0]
        logger.warning(f"{scope.get('method', 'WS')} {scope.get('path', '')[:120]} from {client} refused: "
                       f"{'wrong' if given else 'no'} token")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        detail = ("authorization: wrong token" if given else
                  "authorization: this server needs a token: send the header 'Authorization: Bearer <token>'")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="munet"')]})
        await send({"type": "http.response.body", "body": body})
