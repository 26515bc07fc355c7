"""The helper side of the swarm: fetch a byte range from the origin and stream it through.

``POST /v1/range`` (signed) asks this node to fetch exactly ``[start, end)`` of a pinned file
(URL, size and validator) from the origin. The helper checks the origin's answer like the
requester's own origin client does (206, exact Content-Range, same validator) and streams
the bytes on as they arrive: no disk, no waiting for the whole range, and backpressure end to
end (``await resp.write`` waits while the requester's socket is full, and the origin is not
read meanwhile). The server runs with handler cancellation, so when the requester disconnects
the handler is cancelled and the origin request is closed at once.

Limits the helper enforces for itself, answering 429 with Retry-After when over them:
``slots`` concurrent streams (shared fairly between requesters), a bandwidth cap over all
streams, and a daily data quota persisted across restarts.

Status codes a requester sees before the body starts: 400 bad request, 401 bad signature,
403 forbidden target (SSRF guard), 409 the file changed on the origin, 429 over a limit,
502 the origin misbehaved or is unusable, 503 the origin is busy or this node is draining,
504 the origin cannot be reached. Once streaming, a failure aborts the connection, so the
requester sees a short body, never a wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from swarmget import __version__
from swarmget.core.errors import (
    ForbiddenTarget,
    InvalidURL,
    OriginChanged,
    OriginUnusable,
    RangesIgnored,
    SourceBroken,
    SourceRateLimited,
    SwarmgetError,
)
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.ratelimit import TokenBucket
from swarmget.core.urls import validate_url
from swarmget.net.auth import auth_middleware, authenticated_node, json_error
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.node.quota import DailyQuota


class RangeRequest(BaseModel):
    """The body of ``POST /v1/range``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=8192)
    start: int = Field(ge=0)
    end: int = Field(gt=0)
    size: int = Field(gt=0)
    etag: str | None = Field(default=None, max_length=1024)
    last_modified: str | None = Field(default=None, max_length=128)
    download_id: str = Field(default="", max_length=128)

    @model_validator(mode="after")
    def _range_inside_file(self) -> RangeRequest:
        if not self.start < self.end <= self.size:
            raise ValueError("need 0 <= start < end <= size")
        return self


@dataclass(frozen=True, kw_only=True)
class HelperLimits:
    slots: int = 3
    rate_limit: float | None = None  # bytes/s over all streams
    retry_after_busy: float = 1.0


@dataclass
class HelperStats:
    streams_served: int = 0
    bytes_served: int = 0
    refused: int = 0
    active_by_requester: dict[str, int] = field(default_factory=dict)


class Refusal(Exception):
    def __init__(self, status: int, message: str, code: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


FORWARD_BATCH = 256 * 1024  # bytes collected from the origin before one write on
FORWARD_DELAY = 0.05  # ... or seconds after the first of them arrived

#: A test seam: when set (by ``swarmget.testing.evil_node`` only), every chunk a helper
#: streams passes through it. Production code never sets it.
CHUNK_FILTER: Callable[[Chunk], Chunk] | None = None


class HelperService:
    """Admission (slots, fairness, quota), throttling and accounting for helper streams."""

    def __init__(
        self,
        origin: OriginClient,
        limits: HelperLimits,
        *,
        quota: DailyQuota | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.origin = origin
        self.limits = limits
        self.quota = quota
        self._clock = clock
        self._bucket = TokenBucket(limits.rate_limit) if limits.rate_limit else None
        self.stats = HelperStats()
        self.draining = False
        self.chunk_filter = CHUNK_FILTER

    def active(self) -> int:
        return sum(self.stats.active_by_requester.values())

    def statistics(self) -> dict[str, Any]:
        return {
            "slots": self.limits.slots,
            "active_streams": self.active(),
            "streams_served": self.stats.streams_served,
            "bytes_served": self.stats.bytes_served,
            "refused": self.stats.refused,
            "quota_left": self.quota.left() if self.quota is not None else None,
            "rate_limit": self.limits.rate_limit,
            "version": __version__,
        }

    def admit(self, requester: str, length: int) -> None:
        """Take a slot for ``requester`` or raise ``Refusal`` (429/503)."""
        active = self.stats.active_by_requester
        if self.draining:
            raise Refusal(503, "this node is shutting down", "draining", 5.0)
        others = {r for r, n in active.items() if n and r != requester}
        fair = math.ceil(self.limits.slots / (len(others) + 1))
        busy = self.active() >= self.limits.slots or active.get(requester, 0) >= fair
        if busy:
            self.stats.refused += 1
            raise Refusal(429, "all slots busy", "busy", self.limits.retry_after_busy)
        if self.quota is not None and not self.quota.try_reserve(length):
            self.stats.refused += 1
            raise Refusal(429, "daily quota used up", "quota", self.quota.retry_after())
        active[requester] = active.get(requester, 0) + 1

    def release(self, requester: str, reserved: int, used: int) -> None:
        active = self.stats.active_by_requester
        active[requester] -= 1
        if not active[requester]:
            del active[requester]
        if self.quota is not None:
            self.quota.settle(reserved, used)

    async def throttle(self, n: int) -> None:
        if self._bucket is not None:
            delay = self._bucket.reserve(n, self._clock())
            if delay > 0:
                await asyncio.sleep(delay)


def _origin_error(exc: SwarmgetError) -> web.Response:
    for kind, status, code in (
        (InvalidURL, 400, "bad_request"),
        (ForbiddenTarget, 403, "forbidden_target"),
        (OriginChanged, 409, "origin_changed"),
        (SourceRateLimited, 503, "origin_busy"),
        (RangesIgnored, 502, "ranges_ignored"),
        (SourceBroken, 502, "origin_broken"),
        (OriginUnusable, 502, "origin_unusable"),
    ):
        if isinstance(exc, kind):
            headers = {}
            if isinstance(exc, SourceRateLimited) and exc.retry_after is not None:
                headers["Retry-After"] = str(math.ceil(exc.retry_after))
            return json_error(status, str(exc), code, headers=headers)
    return json_error(504, str(exc), "origin_unreachable")


def _info_for(req: RangeRequest) -> OriginInfo:
    validator = None
    if req.etag is not None or req.last_modified is not None:
        validator = Validator(etag=req.etag, last_modified=req.last_modified)
    return OriginInfo(
        url=req.url,
        final_url=req.url,
        size=req.size,
        validator=validator,
        accepts_ranges=True,
        filename="range",
    )


async def _parse(request: web.Request) -> RangeRequest:
    try:
        req = RangeRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        message = f"bad range request: {exc.errors()[0]['msg']}"
        raise Refusal(400, message, "bad_request", None) from exc
    try:
        validate_url(req.url)
    except InvalidURL as exc:
        raise Refusal(400, str(exc), "bad_request", None) from exc
    return req


@contextlib.asynccontextmanager
async def _slot(service: HelperService, requester: str, length: int) -> AsyncIterator[list[int]]:
    service.admit(requester, length)
    used = [0]
    try:
        yield used
    finally:
        service.release(requester, length, used[0])


async def handle_range(request: web.Request) -> web.StreamResponse:
    service: HelperService = request.app[HELPER]
    requester = authenticated_node(request)
    try:
        req = await _parse(request)
        rng = ByteRange(req.start, req.end)
        async with _slot(service, requester, rng.length) as used:
            return await _stream_range(request, service, req, rng, used)
    except Refusal as exc:
        headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
        return json_error(exc.status, str(exc), exc.code, headers=headers)


async def _stream_range(
    request: web.Request, service: HelperService, req: RangeRequest, rng: ByteRange, used: list[int]
) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(rng.length),
            "X-Swarm-Range": f"{rng.start}-{rng.end}",
        },
    )
    try:
        async with service.origin.open_range(_info_for(req), rng) as body:
            await resp.prepare(request)
            await _forward(body, resp, service, used)
    except SwarmgetError as exc:
        if not resp.prepared:
            return _origin_error(exc)
        _abort(request)  # mid-body: the requester must see a short body, not a clean end
        return resp
    await resp.write_eof()
    service.stats.streams_served += 1
    return resp


async def _forward(
    body: AsyncIterator[Chunk], resp: web.StreamResponse, service: HelperService, used: list[int]
) -> None:
    """Copy the origin's chunks to the requester, a few at a time.

    Through a capped link the origin's chunks are small (a few KiB); writing each on its own
    costs the requester a wake-up and a parse per chunk. So they are collected into writes
    of up to ``FORWARD_BATCH`` bytes, and none waits longer than ``FORWARD_DELAY``.
    """
    loop = asyncio.get_running_loop()
    chunks = aiter(body)
    pending: list[Chunk] = []
    size = 0
    deadline = 0.0

    async def flush() -> None:
        nonlocal size
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        size = 0
        await resp.write(data)
        service.stats.bytes_served += len(data)

    while True:
        try:
            if pending:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            else:
                chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except TimeoutError:
            await flush()  # the origin went quiet: send what we have
            continue
        await service.throttle(len(chunk))
        if service.chunk_filter is not None:
            chunk = service.chunk_filter(chunk)
        used[0] += len(chunk)
        if not pending:
            deadline = loop.time() + FORWARD_DELAY
        pending.append(chunk)
        size += len(chunk)
        if size >= FORWARD_BATCH or loop.time() >= deadline:
            await flush()
    if pending:
        await flush()


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def handle_health(request: web.Request) -> web.Response:
    service: HelperService = request.app[HELPER]
    return web.json_response({"ok": True, "node_id": request.app[NODE_ID], **service.statistics()})


HELPER: web.AppKey[HelperService] = web.AppKey("helper", HelperService)
NODE_ID: web.AppKey[str] = web.AppKey("node_id", str)


def make_peer_app(service: HelperService, secret: bytes, node_id: str) -> web.Application:
    """The peer API: every route signed with the swarm secret and the requester's node key;
    requests signed before the peer API was made (the node's start) are refused, since its
    replay cache starts empty (``swarmget.net.auth``)."""
    app = web.Application(middlewares=[auth_middleware(secret)], client_max_size=64 * 1024)
    app[HELPER] = service
    app[NODE_ID] = node_id
    app.router.add_post("/v1/range", handle_range)
    app.router.add_get("/v1/health", handle_health)
    return app
