"""Swarm request signatures over aiohttp: a server middleware and a client helper.

The rules live in ``swarmget.core.auth``; this module feeds them the request's bytes and the
clock. The server side:

* ``auth_middleware(secret)`` reads the body (at most ``max_body`` bytes: a Content-Length
  above it is refused up front, and ``request.read()`` is itself bounded by the app's
  ``client_max_size``, 1 MiB by default), verifies the signature over the request target
  exactly as received (``request.raw_path``: path and query, still %-encoded), and stores
  the signer's node id under ``SWARM_NODE`` (read it with ``authenticated_node``). The body
  stays cached on the request, so handlers can still ``await request.json()``.
* A missing, bad, replayed or clock-skewed signature gets 401 with
  ``{"error": "...", "code": "auth"}``; a body over the limit gets 413.
* Paths in ``exempt`` (exact ``request.path`` matches, e.g. a health check) pass unsigned.

The client side (``signed_headers``, ``json_body``, ``load_secret``) is in
``swarmget.net.signing`` and re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from swarmget.core.auth import DEFAULT_WINDOW, ReplayCache, verify
from swarmget.core.errors import AuthError
from swarmget.net.signing import json_body, load_secret, new_nonce, signed_headers

__all__ = [
    "MAX_SIGNED_BODY",
    "SWARM_NODE",
    "auth_middleware",
    "authenticated_node",
    "json_body",
    "json_error",
    "load_secret",
    "new_nonce",
    "signed_headers",
]

#: Largest request body the middleware reads (the JSON APIs need far less).
MAX_SIGNED_BODY = 1024 * 1024
#: Where the middleware puts the authenticated node id.
SWARM_NODE: web.RequestKey[str] = web.RequestKey("swarm_node", str)
_CHALLENGE = {"WWW-Authenticate": 'Swarm-HMAC-SHA256 realm="swarmget"'}


def json_error(
    status: int, message: str, code: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The JSON error body every swarmget API answers with: ``{"error", "code"}``."""
    return web.json_response(
        {"error": message, "code": code}, status=status, headers=dict(headers or {})
    )


def authenticated_node(request: web.Request) -> str:
    """The node id the auth middleware verified for this request."""
    return request[SWARM_NODE]


def auth_middleware(
    secret: bytes,
    *,
    exempt: frozenset[str] = frozenset(),
    clock: Callable[[], float] = time.time,
    window: float = DEFAULT_WINDOW,
    max_body: int = MAX_SIGNED_BODY,
    replay: ReplayCache | None = None,
) -> Middleware:
    """A middleware that lets only correctly signed requests through (see module doc).

    Each middleware has its own ``ReplayCache`` unless one is given.
    """
    cache = replay if replay is not None else ReplayCache(window=window)

    @web.middleware
    async def check_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        body = await _read_bounded(request, max_body)
        if body is None:
            return json_error(413, f"request body over {max_body} bytes", "too_large")
        try:
            node_id = verify(
                secret,
                method=request.method,
                path=request.raw_path,
                headers=request.headers,
                body=body,
                now=clock(),
                window=window,
                replay=cache,
            )
        except AuthError as exc:
            return json_error(401, str(exc), exc.code, headers=_CHALLENGE)
        request[SWARM_NODE] = node_id
        return await handler(request)

    return check_signature


async def _read_bounded(request: web.Request, max_body: int) -> bytes | None:
    """The whole body, or None when it is larger than ``max_body``."""
    if request.content_length is not None and request.content_length > max_body:
        return None
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None
    return body if len(body) <= max_body else None
