"""Swarm request signatures over aiohttp: a server middleware and a client helper.

The rules live in ``swarmget.core.auth``; this module feeds them the request's bytes and the
clock. The server side:

* ``auth_middleware(secret)`` reads the body (at most ``max_body`` bytes: a Content-Length
  above it is refused up front, and ``request.read()`` is itself bounded by the app's
  ``client_max_size``, 1 MiB by default), verifies the signature over the request target
  exactly as received (``request.raw_path``: path and query, still %-encoded), and stores
  the signer's node id under ``SWARM_NODE`` (read it with ``authenticated_node``), and how it
  proved it under ``SWARM_PROOF`` (``authenticated_proof``: node key or session). The body
  stays cached on the request, so handlers can still ``await request.json()``.
* A missing, bad, replayed or clock-skewed signature, or a node key that does not match the
  node id, gets 401 with ``{"error": "...", "code": CODE}`` (the ``AuthError``'s code:
  ``auth``, ``bad_identity``, ``clock_skew``, ``replayed``); a sender over its share of the
  replay cache gets 429 (``replay_cache_full``) with Retry-After; a body over the limit 413.
* Replays: by default the middleware keeps nonces in memory (a ``ReplayCache`` shared out
  per sender and per source address) and refuses requests signed before it was made (its
  process's start: a previous run may have seen them). Receivers that share a store of
  nonces with others (hub replicas on one database) pass ``shared``: a nonce is then also
  recorded there, and the start-time rule is not needed (``not_before=None``).
  A receiver may write some kinds of request's nonces there later (``defer_nonce``), at
  the cost of accepting a replay to another receiver until then (see the hub's
  ``swarmget.hub.nonce_log``).
* Paths in ``exempt`` (exact ``request.path`` matches, e.g. a health check) pass unsigned.
* Session keys (``swarmget.core.session_auth``): a receiver that agrees sessions with its
  senders (the hub: ``swarmget.hub.sessions``) passes ``session_key(request, node_id,
  session_id)``; a request carrying ``X-Swarm-Session`` is then checked with that session's
  HMAC instead of the node key's Ed25519 signature (401 ``session_unknown`` when the
  receiver holds no such session), with the same clock and replay rules. Without
  ``session_key`` such a request lacks the node key headers and gets 401 ``auth``.

The client side (``signed_headers``, ``json_body``, ``load_secret``) is in
``swarmget.net.signing`` and re-exported here.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from swarmget.core.auth import DEFAULT_WINDOW, Proof, SignedRequest, verify_signed
from swarmget.core.errors import AuthError, ReplayCacheFull, ReplayedRequest
from swarmget.core.replay import ReplayCache
from swarmget.core.session_auth import has_session_headers, verify_session_signed
from swarmget.net.signing import json_body, load_secret, new_nonce, signed_headers

__all__ = [
    "MAX_SIGNED_BODY",
    "SWARM_NODE",
    "SWARM_PROOF",
    "SharedNonces",
    "auth_middleware",
    "authenticated_node",
    "authenticated_proof",
    "json_body",
    "json_error",
    "load_secret",
    "new_nonce",
    "signed_headers",
    "wait_for_next_second",
]

#: Largest request body the middleware reads (the JSON APIs need far less).
MAX_SIGNED_BODY = 1024 * 1024
#: Where the middleware puts the authenticated node id.
SWARM_NODE: web.RequestKey[str] = web.RequestKey("swarm_node", str)
#: ... and how the request proved it (``authenticated_proof``).
SWARM_PROOF: web.RequestKey[Proof] = web.RequestKey("swarm_proof", Proof)
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


def authenticated_proof(request: web.Request) -> Proof:
    """How the request proved its node id: the node key, or a session agreed with it."""
    return request[SWARM_PROOF]


class SharedNonces(Protocol):
    """Nonces remembered where several receivers see them (a hub's database)."""

    async def remember_nonce(
        self, node_id: str, nonce: str, *, expires_at: float, now: float
    ) -> bool:
        """Record (node id, nonce) until ``expires_at``; False when it is recorded already
        (a replay). May raise ``StorageError``."""
        ...


def auth_middleware(
    secret: bytes,
    *,
    exempt: frozenset[str] = frozenset(),
    clock: Callable[[], float] = time.time,
    window: float = DEFAULT_WINDOW,
    max_body: int = MAX_SIGNED_BODY,
    replay: ReplayCache | None = None,
    shared: SharedNonces | None = None,
    not_before: float | Literal["start"] | None = "start",
    origin_of: Callable[[web.Request], str | None] | None = None,
    defer_nonce: Callable[[web.Request, str, str, float], bool] | None = None,
    session_key: Callable[[web.Request, str, str], bytes | None] | None = None,
) -> Middleware:
    """A middleware that lets only correctly signed requests through (see module doc).

    Each middleware has its own ``ReplayCache`` unless one is given. ``not_before``: refuse
    requests signed earlier; ``"start"`` (the default): the clock's time when the middleware
    is made, unless ``shared`` is given (then no such rule: nonces outlive the process).
    ``origin_of`` tells the sender's address, which the replay cache shares capacity by
    (default: the connection's peer, ``request.remote``; a server behind a proxy it trusts
    says otherwise). ``defer_nonce(request, node_id, nonce, expires_at)``, with ``shared``:
    True when it takes the nonce to record in ``shared`` later (a hub's ``NonceLog``: the
    request is answered without waiting for that write); False: it is written at once.
    ``session_key``: see the module doc (it may raise ``AuthError`` for a request that
    must not be signed with a session).
    """
    cache = replay if replay is not None else ReplayCache(window=window)
    start = (clock() if shared is None else None) if not_before == "start" else not_before
    origin = origin_of if origin_of is not None else _remote

    async def check(request: web.Request, body: bytes) -> SignedRequest:
        now = clock()
        if session_key is not None and has_session_headers(request.headers):
            verify = functools.partial(
                verify_session_signed, secret, functools.partial(session_key, request)
            )
        else:
            verify = functools.partial(verify_signed, secret)
        signed = verify(
            method=request.method,
            path=request.raw_path,
            headers=request.headers,
            body=body,
            now=now,
            window=window,
            not_before=start,
        )
        node_id, nonce = signed.node_id, signed.nonce
        cache.check_and_remember(
            node_id, nonce, timestamp=signed.timestamp, now=now, origin=origin(request)
        )
        if shared is not None:
            expires_at = signed.timestamp + window
            if defer_nonce is not None and defer_nonce(request, node_id, nonce, expires_at):
                return signed
            if not await shared.remember_nonce(node_id, nonce, expires_at=expires_at, now=now):
                raise ReplayedRequest("replayed request: this nonce was already used")
        return signed

    @web.middleware
    async def check_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        body = await _read_bounded(request, max_body)
        if body is None:
            return json_error(413, f"request body over {max_body} bytes", "too_large")
        try:
            signed = await check(request, body)
        except ReplayCacheFull as exc:
            retry = {"Retry-After": str(int(window))}
            return json_error(429, str(exc), exc.code, headers=retry)
        except AuthError as exc:
            return json_error(401, str(exc), exc.code, headers=_CHALLENGE)
        request[SWARM_NODE] = signed.node_id
        request[SWARM_PROOF] = signed.proof
        return await handler(request)

    return check_signature


def _remote(request: web.Request) -> str | None:
    return request.remote


async def wait_for_next_second(clock: Callable[[], float] = time.time) -> None:
    """Sleep until the clock's next whole second. Call it between making an auth middleware
    (whose ``not_before`` is the time then) and serving: signatures carry whole seconds, so
    a request signed in the second the middleware was made is refused (it could have been
    signed before); once that second is over, every request a sender signs after the server
    listens is accepted (unless the sender's clock lags)."""
    now = clock()
    await asyncio.sleep(math.floor(now) + 1 - now)


async def _read_bounded(request: web.Request, max_body: int) -> bytes | None:
    """The whole body, or None when it is larger than ``max_body``."""
    if request.content_length is not None and request.content_length > max_body:
        return None
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None
    return body if len(body) <= max_body else None
