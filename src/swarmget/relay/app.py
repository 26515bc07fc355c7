"""The relay's HTTP API.

::

    POST /v1/fetch               {url}  (signed) → the fetch: {id, state, ...}; 202 while
                                  fetching, 200 when ready. Concurrent requests share it.
    GET  /v1/fetches/{id}?wait=S  (signed) the fetch's state, waiting up to S seconds (≤ 30)
                                  for it to finish
    GET  /v1/blobs/{sha256}      the bytes (HEAD too): Range, If-Range, If-None-Match, ETag
    GET  /v1/blobs/{sha256}/manifest   {size, piece_size, sha256, pieces: [...]}

Blobs are not signed: they are named by their content's sha256 (knowing the name is the
capability) and must be fetchable by plain HTTP clients (curl -r, aria2c). Range semantics
are implemented here rather than by aiohttp's FileResponse, whose ETag is not the content
hash and which (3.14) answers a stale ``If-Range`` ETag with 206: a stale ``If-Range`` must
get the whole file with 200 (RFC 9110 §13.1.5).

Errors are ``{"error", "code"}`` with the status of the code's row in
``swarmget.protocol.errors.RELAY_ERRORS`` (``refusal``); ``swarmget.net.relay_client`` reads
the code back into an exception. Since anyone may read blobs, a blob response is bounded
(``ServeLimits``): a client address with too many in progress gets 429 (``busy``), a relay
with too many in total 503 (``overloaded``), both with Retry-After; and a client that takes
more than ``write_timeout`` seconds to accept a block of ``SEND_BLOCK`` bytes is cut off, so
that no reader pins a blob (or a descriptor) for ever. (A blob or manifest that is not there
is a plain 404, as any HTTP server answers.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from swarmget.core.errors import InvalidURL
from swarmget.core.lifecycle import FetchPhase
from swarmget.core.ranges import ByteRange
from swarmget.core.replay import ReplayCache
from swarmget.core.urls import validate_url
from swarmget.net.auth import auth_middleware, json_error
from swarmget.net.metrics import metrics_handler
from swarmget.protocol.errors import RELAY_ERRORS
from swarmget.protocol.relay import (
    FETCH_PATH,
    FETCHES_PATH,
    FetchAnswer,
    FetchError,
    FetchProgress,
    FetchRequest,
    blob_path,
)
from swarmget.relay.blobs import ReaderLimit
from swarmget.relay.metrics import RelayCollector
from swarmget.relay.service import FetchReport, Relay

log = logging.getLogger(__name__)
RELAY: web.AppKey[Relay] = web.AppKey("relay", Relay)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FETCH_ID = re.compile(r"[0-9a-f]{16}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)
SEND_BLOCK = 1024 * 1024
MAX_WAIT = 30.0
RETRY_AFTER = "1"


def describe(report: FetchReport, base: str) -> dict[str, Any]:
    """The ``FetchAnswer`` for ``report`` (blob URLs under ``base``), as JSON."""
    out: dict[str, Any] = {"id": report.id, "url": report.url, "state": report.state.value}
    if report.entry is not None:
        sha = report.entry.sha256
        out |= {
            "sha256": sha,
            "size": report.entry.size,
            "hit": report.hit,
            "blob_url": f"{base}{blob_path(sha)}",
            "manifest_url": f"{base}{blob_path(sha)}/manifest",
            "manifest": report.entry.manifest.to_json(),
        }
    if report.error_code is not None:
        out["error"] = FetchError(code=report.error_code, message=report.error_message or "")
    if report.progress is not None:
        out["progress"] = FetchProgress(done=report.progress[0], size=report.progress[1])
    return FetchAnswer(**out).as_json()


def refusal(code: str, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """The relay's error answer: ``code``'s row of ``RELAY_ERRORS`` gives the status."""
    return json_error(RELAY_ERRORS.row(code).status, message, code, headers=headers)


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def post_fetch(request: web.Request) -> web.Response:
    try:
        body = FetchRequest.model_validate_json(await request.read())
        url = validate_url(body.url)
    except ValidationError as exc:
        return refusal("bad_request", f"bad fetch request: {exc.errors()[0]['msg']}")
    except InvalidURL as exc:
        return refusal(RELAY_ERRORS.for_exception(exc).code, str(exc))
    report = request.app[RELAY].request(url).report()
    return web.json_response(describe(report, _base(request)), status=_status(report))


def _status(report: FetchReport) -> int:
    return 202 if report.state is FetchPhase.FETCHING else 200


async def get_fetch(request: web.Request) -> web.Response:
    relay, fetch_id = request.app[RELAY], request.match_info["id"]
    try:
        wait = min(MAX_WAIT, max(0.0, float(request.query.get("wait", "0"))))
    except ValueError:
        return refusal("bad_request", "wait must be a number of seconds")
    state = relay.fetches.get(fetch_id)
    if state is not None:
        if wait:
            try:
                async with asyncio.timeout(wait):
                    await state.done.wait()
            except TimeoutError:
                pass
        report: FetchReport | None = state.report()
    elif _FETCH_ID.fullmatch(fetch_id):
        report = await relay.finished(fetch_id)
    else:
        report = None
    if report is None:
        return refusal("not_found", "no such fetch (or its result is no longer cached)")
    return web.json_response(describe(report, _base(request)), status=_status(report))


def _blob(request: web.Request) -> tuple[Relay, str]:
    sha = request.match_info["sha256"]
    if not _SHA256.fullmatch(sha):  # never build a path from anything else
        raise web.HTTPNotFound()
    return request.app[RELAY], sha


async def get_manifest(request: web.Request) -> web.Response:
    relay, sha = _blob(request)
    if not relay.blob_path(sha).is_file():
        raise web.HTTPNotFound()
    entries = await relay.index.by_sha256(sha)
    if not entries:
        raise web.HTTPNotFound()
    return web.json_response(entries[0].manifest.to_json())


def parse_range(header: str, size: int) -> ByteRange | None | str:
    """One ``bytes=`` range → ByteRange; None: ignore the header (serve 200);
    "unsatisfiable" → 416 (RFC 9110 §14.1.2, §15.5.17). Positions of any length are read
    (a position past the end is only compared with the size)."""
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None  # several ranges or another unit: a server may ignore Range
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:
        n = _position(last, size)
        return ByteRange(max(0, size - n), size) if n else "unsatisfiable"
    start = _position(first, size)
    end = size if not last else min(size, _position(last, size) + 1)
    if start >= size or (last and _position(last, size) < start):
        return "unsatisfiable"
    return ByteRange(start, end)


def _position(digits: str, size: int) -> int:
    """A decimal position, saturated at ``size + 1``: int() refuses more than 4300 digits
    (CVE-2020-10735) and no bigger value means anything else."""
    digits = digits.lstrip("0") or "0"
    return size + 1 if len(digits) > len(str(size)) else min(int(digits), size + 1)


async def get_blob(request: web.Request) -> web.StreamResponse:
    relay, sha = _blob(request)
    client = request.remote or ""
    limit = relay.reader_refusal(client)
    if limit is not None:
        code = "busy" if limit is ReaderLimit.PER_CLIENT else "overloaded"
        message = f"too many blob responses in progress ({limit.value})"
        return refusal(code, message, headers={"Retry-After": RETRY_AFTER})
    with relay.serving(sha, client):
        opened = relay.open_blob(sha)  # not in a thread: a cancelled wait would leak the fd
        if opened is None:
            raise web.HTTPNotFound()
        fd, st = opened
        try:
            return await _respond(request, relay, sha, fd, st)
        finally:
            os.close(fd)


async def _respond(
    request: web.Request, relay: Relay, sha: str, fd: int, st: os.stat_result
) -> web.StreamResponse:
    size = st.st_size
    etag = f'"{sha}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
    headers["Cache-Control"] = "public, max-age=31536000, immutable"
    if etag in _etags(request.headers.get("If-None-Match", "")) or "*" in _etags(
        request.headers.get("If-None-Match", "")
    ):
        return web.Response(status=304, headers={"ETag": etag})
    rng: ByteRange | None = None
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header and (if_range is None or if_range.strip() == etag):
        parsed = parse_range(range_header, size)
        if parsed == "unsatisfiable":
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        rng = parsed if isinstance(parsed, ByteRange) else None
    return await _send(request, relay, fd, size, rng, headers)


def _etags(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


async def _send(
    request: web.Request,
    relay: Relay,
    fd: int,
    size: int,
    rng: ByteRange | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    part = rng or ByteRange(0, size)
    resp = web.StreamResponse(status=206 if rng else 200, headers=headers)
    if rng is not None:
        resp.headers["Content-Range"] = f"bytes {rng.start}-{rng.end - 1}/{size}"
    resp.content_length = part.length
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    pos = part.start
    try:
        while pos < part.end:
            data = await asyncio.to_thread(os.pread, fd, min(SEND_BLOCK, part.end - pos), pos)
            if not data:
                break
            async with asyncio.timeout(relay.limits.write_timeout):
                await resp.write(data)
            pos += len(data)
        async with asyncio.timeout(relay.limits.write_timeout):
            await resp.write_eof()
    except TimeoutError:
        log.info("relay: cut off %s: it stopped reading a blob", request.remote)
        _cut(request)
    except ConnectionResetError:  # the client went away (aiohttp's reset error too)
        _cut(request)
    return resp


def _cut(request: web.Request) -> None:
    """End a response in the middle: the client sees a short body, never a complete one."""
    if request.transport is not None:
        request.transport.abort()


#: Node ids one source address may have in the relay's replay cache at once (see below).
RELAY_SENDERS_PER_ADDRESS = 256


def make_relay_app(relay: Relay, secret: bytes) -> web.Application:
    exempt_prefix = "/v1/blobs/"

    # the relay sits outside the LANs: a whole LAN may reach it from one NAT address, so one
    # address may have many senders in the replay cache (each still has its own share)
    replay = ReplayCache(senders_per_origin=RELAY_SENDERS_PER_ADDRESS)
    auth = auth_middleware(secret, replay=replay)
    app = web.Application(middlewares=[_blob_exempt(auth, exempt_prefix)])
    app[RELAY] = relay
    app.router.add_post(FETCH_PATH, post_fetch)
    app.router.add_get(FETCHES_PATH + "/{id}", get_fetch)
    app.router.add_get("/v1/blobs/{sha256}", get_blob)  # also answers HEAD
    app.router.add_get("/v1/blobs/{sha256}/manifest", get_manifest)
    app.router.add_get("/metrics", metrics_handler(RelayCollector(relay)))
    return app


def _blob_exempt(inner: Any, prefix: str) -> Any:
    """The auth middleware, except for content-addressed blob reads."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method in ("GET", "HEAD") and (
            request.path.startswith(prefix) or request.path == "/metrics"
        ):
            result: web.StreamResponse = await handler(request)
            return result
        result = await inner(request, handler)
        return result

    return middleware
