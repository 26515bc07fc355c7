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
streams, and a daily data quota persisted across restarts. The quota is charged as bytes come
from the origin, reserved ``QUOTA_STEP`` at a time (never a whole range up front, so a stream
that goes nowhere holds at most one step); a stream the quota cannot cover any more is cut
(the requester sees a short body and fetches the rest elsewhere). A requester that stops
reading loses its stream: when ``write_stall_timeout`` seconds pass without a byte taken, the
connection is closed and its slot freed (one log line).

Status codes a requester sees before the body starts: 400 bad request, 401 bad signature,
403 forbidden target (SSRF guard; the message says only that, the details are logged here),
409 the file changed on the origin, 429 over a limit, 502 the origin misbehaved or is
unusable, 503 the origin is busy or this node is draining, 504 the origin cannot be reached.
Once streaming, a failure aborts the connection, so the requester sees a short body, never
a wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from swarmget import __version__
from swarmget.core.errors import ForbiddenTarget, InvalidURL, SourceRateLimited, SwarmgetError
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.ratelimit import TokenBucket
from swarmget.core.urls import validate_url
from swarmget.net.auth import auth_middleware, authenticated_node, json_error
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.node.quota import DailyQuota, utc_day
from swarmget.protocol.errors import PEER_ERRORS
from swarmget.protocol.peer import (
    HEALTH_PATH,
    RANGE_HEADER,
    RANGE_PATH,
    SUMMARY_PATH,
    HealthAnswer,
    NodeSummary,
    RangeRequest,
    range_header,
)

log = logging.getLogger(__name__)

#: All a requester learns when the SSRF guard refuses the URL it asked us to fetch.
ADDRESS_POLICY_REFUSAL = "refused by the address policy"


@dataclass(frozen=True, kw_only=True)
class HelperLimits:
    slots: int = 3
    rate_limit: float | None = None  # bytes/s over all streams
    retry_after_busy: float = 1.0
    #: close a stream whose requester took no byte for this many seconds
    write_stall_timeout: float = 20.0

    def __post_init__(self) -> None:
        if self.slots < 1 or self.write_stall_timeout <= 0:
            raise ValueError("need slots >= 1 and write_stall_timeout > 0")


@dataclass
class HelperStats:
    streams_served: int = 0
    bytes_served: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # by reason (the answer's code)
    stalled: int = 0  # streams closed because their requester stopped reading
    quota_cut: int = 0  # streams cut because the daily quota ran out mid-stream
    active_by_requester: dict[str, int] = field(default_factory=dict)
    sent_day: str = ""  # the UTC day ``sent_today`` counts
    sent_today: int = 0  # bytes streamed to requesters on that day

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())

    def refuse(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


@dataclass
class StreamBudget:
    """One stream's share of the daily quota: reserved a step at a time, charged as used."""

    length: int  # the most the stream will fetch
    reserved: int = 0  # set aside and not fetched yet
    used: int = 0  # fetched from the origin so far


class Refusal(Exception):
    """The helper will not take this request: answered with ``code``'s row of ``PEER_ERRORS``."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        row = PEER_ERRORS.row(code)
        self.status, self.code, self.retry_after = row.status, row.code, retry_after


FORWARD_BATCH = 256 * 1024  # bytes collected from the origin before one write on
FORWARD_DELAY = 0.05  # ... or seconds after the first of them arrived
QUOTA_STEP = 1024 * 1024  # quota is reserved this much at a time as a stream goes on
log = logging.getLogger(__name__)

#: A transform every chunk a helper streams passes through (``HelperService(chunk_filter=)``):
#: only the integrity tests' lying helper (``swarmget.testing.evil_node``) gives one.
ChunkFilter = Callable[[Chunk], Chunk]


class HelperService:
    """Admission (slots, fairness, quota), throttling and accounting for helper streams."""

    def __init__(
        self,
        origin: OriginClient,
        limits: HelperLimits,
        *,
        quota: DailyQuota | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        chunk_filter: ChunkFilter | None = None,
    ) -> None:
        self.origin = origin
        self.limits = limits
        self.quota = quota
        self._clock = clock
        self._bucket = TokenBucket(limits.rate_limit) if limits.rate_limit else None
        self.stats = HelperStats()
        self.draining = False
        #: its owner paused helping (``node.settings``): new streams are refused with
        #: ``helping_paused`` (503) and health checks too, so requesters pass it by; the
        #: node stays registered with its hub, and streams in flight go on
        self.paused = False
        self.chunk_filter = chunk_filter
        self._wall = wall_clock

    def set_slots(self, slots: int) -> None:
        """New streams see ``slots`` at once; streams in flight keep their slots."""
        self.limits = dataclasses.replace(self.limits, slots=slots)

    def set_rate_limit(self, rate: float | None) -> None:
        """A new cap (bytes/s over all streams), in force at once for running streams too
        (they take their tokens from the same bucket); None lifts it."""
        self.limits = dataclasses.replace(self.limits, rate_limit=rate)
        if rate is None:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(rate)
        else:
            self._bucket.rate = rate
            self._bucket.burst = TokenBucket(rate).burst

    def count_sent(self, n: int) -> None:
        day = utc_day(self._wall())
        if day != self.stats.sent_day:
            self.stats.sent_day, self.stats.sent_today = day, 0
        self.stats.sent_today += n
        self.stats.bytes_served += n

    def sent_today(self) -> int:
        return self.stats.sent_today if self.stats.sent_day == utc_day(self._wall()) else 0

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
            "daily_quota": self.quota.limit if self.quota is not None else None,
            "helping_paused": self.paused,
            "version": __version__,
        }

    def admit(self, requester: str, length: int, *, origin: bool = True) -> StreamBudget:
        """Take a slot and a first quota step for ``requester`` or raise ``Refusal`` (429/503).
        ``origin=False``: a LAN holder stream (``node.holder``), served from this node's
        disk: it takes a slot but no quota (``--daily-quota`` counts origin bytes only)."""
        active = self.stats.active_by_requester
        if self.draining:
            raise Refusal("draining", "this node is shutting down", 5.0)
        if self.paused:
            raise Refusal("helping_paused", "helping is paused on this node by its owner", 60.0)
        others = {r for r, n in active.items() if n and r != requester}
        fair = math.ceil(self.limits.slots / (len(others) + 1))
        busy = self.active() >= self.limits.slots or active.get(requester, 0) >= fair
        if busy:
            raise Refusal("busy", "all slots busy", self.limits.retry_after_busy)
        budget = StreamBudget(length)
        if origin and not self._quota_covers(budget):
            assert self.quota is not None
            raise Refusal("quota", "daily quota used up", self.quota.retry_after())
        active[requester] = active.get(requester, 0) + 1
        return budget

    def charge(self, budget: StreamBudget, n: int) -> bool:
        """``n`` more bytes came from the origin for ``budget``'s stream: count them against
        the quota. False when the quota cannot cover the stream's next bytes (stop it)."""
        budget.used += n
        if self.quota is None:
            return True
        taken = min(n, budget.reserved)
        budget.reserved -= taken
        self.quota.settle(taken, n)
        return budget.reserved > 0 or budget.used >= budget.length or self._reserve_step(budget)

    def release(self, requester: str, budget: StreamBudget) -> None:
        """The stream ended: free its slot and give back the quota it did not use."""
        active = self.stats.active_by_requester
        active[requester] -= 1
        if not active[requester]:
            del active[requester]
        if self.quota is not None:
            self.quota.settle(budget.reserved, 0)
        budget.reserved = 0

    def _quota_covers(self, budget: StreamBudget) -> bool:
        if self.quota is not None and self.quota.left() < budget.length:
            return False
        return self._reserve_step(budget)

    def _reserve_step(self, budget: StreamBudget) -> bool:
        step = min(QUOTA_STEP, budget.length - budget.used - budget.reserved)
        if self.quota is None or step <= 0:
            return True
        if not self.quota.try_reserve(step):
            return False
        budget.reserved += step
        return True

    async def throttle(self, n: int) -> None:
        if self._bucket is not None:
            delay = self._bucket.reserve(n, self._clock())
            if delay > 0:
                await asyncio.sleep(delay)


def _origin_error(exc: SwarmgetError) -> web.Response:
    """The answer for what went wrong fetching from the origin (``PEER_ERRORS``)."""
    row = PEER_ERRORS.for_exception(exc)
    if isinstance(exc, ForbiddenTarget):
        # what DNS answered and which address was refused stay here: told to a requester,
        # they would map the LAN (internal names, addresses) through us
        log.warning("refused a helper fetch: %s", exc)
        return json_error(row.status, ADDRESS_POLICY_REFUSAL, row.code)
    headers = {}
    if isinstance(exc, SourceRateLimited) and exc.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after))
    return json_error(row.status, str(exc), row.code, headers=headers)


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
        raise Refusal("bad_request", message) from exc
    try:
        validate_url(req.url)
    except InvalidURL as exc:
        raise Refusal("bad_request", str(exc)) from exc
    return req


@contextlib.asynccontextmanager
async def _slot(service: HelperService, requester: str, length: int) -> AsyncIterator[StreamBudget]:
    budget = service.admit(requester, length)
    try:
        yield budget
    finally:
        service.release(requester, budget)


class _StreamCut(Exception):
    """Internal: stop streaming to this requester (it stopped reading, or the quota ran out)."""


class _ReaderStalled(_StreamCut):
    pass


class _QuotaRanOut(_StreamCut):
    pass


async def handle_range(request: web.Request) -> web.StreamResponse:
    service: HelperService = request.app[HELPER]
    requester = authenticated_node(request)
    try:
        req = await _parse(request)
        rng = ByteRange(req.start, req.end)
        async with _slot(service, requester, rng.length) as budget:
            return await _stream_range(request, service, req, rng, budget)
    except Refusal as exc:
        service.stats.refuse(exc.code)  # counted when it happens, by reason
        return _refused(exc)


def _refused(exc: Refusal) -> web.Response:
    headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
    return json_error(exc.status, str(exc), exc.code, headers=headers)


async def _stream_range(
    request: web.Request,
    service: HelperService,
    req: RangeRequest,
    rng: ByteRange,
    budget: StreamBudget,
) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(rng.length),
            RANGE_HEADER: range_header(rng.start, rng.end),
        },
    )
    try:
        async with service.origin.open_range(_info_for(req), rng) as body:
            await resp.prepare(request)
            await _forward(body, resp, service, budget, request.transport)
        await resp.write_eof()  # with a Content-Length this only marks the end: no wait
    except SwarmgetError as exc:
        if not resp.prepared:
            return _origin_error(exc)
        _abort(request)  # mid-body: the requester must see a short body, not a clean end
        return resp
    except _StreamCut as exc:
        if isinstance(exc, _QuotaRanOut):
            service.stats.quota_cut += 1
        else:
            service.stats.stalled += 1
        log.warning("stream %s to %s closed: %s", rng, authenticated_node(request), exc)
        _abort(request)
        return resp
    service.stats.streams_served += 1
    return resp


async def _send(
    resp: web.StreamResponse,
    data: Chunk,
    stall: float,
    transport: asyncio.BaseTransport | None,
) -> None:
    """Write ``data`` on; raise ``_ReaderStalled`` once the requester took no byte for
    ``stall`` seconds. A slow reader that still takes bytes is waited for."""
    try:
        async with asyncio.timeout(stall):
            await resp.write(data)
        return
    except TimeoutError:
        pass  # the bytes are in the transport's buffer: only the wait for room was cut
    if not isinstance(transport, asyncio.WriteTransport):
        raise _ReaderStalled(f"the requester took no byte for {stall:g} s")
    left = transport.get_write_buffer_size()
    while left:
        await asyncio.sleep(stall)
        if transport.get_write_buffer_size() >= left:
            raise _ReaderStalled(f"the requester took no byte for {stall:g} s")
        left = transport.get_write_buffer_size()


async def _forward(
    body: AsyncIterator[Chunk],
    resp: web.StreamResponse,
    service: HelperService,
    budget: StreamBudget,
    transport: asyncio.BaseTransport | None = None,
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
        await _send(resp, data, service.limits.write_stall_timeout, transport)
        service.count_sent(len(data))

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
        covered = service.charge(budget, len(chunk))
        if not pending:
            deadline = loop.time() + FORWARD_DELAY
        pending.append(chunk)
        size += len(chunk)
        if not covered:
            await flush()
            raise _QuotaRanOut("the daily quota ran out mid-stream")
        if size >= FORWARD_BATCH or loop.time() >= deadline:
            await flush()
    if pending:
        await flush()


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def handle_health(request: web.Request) -> web.Response:
    service: HelperService = request.app[HELPER]
    if service.paused:  # requesters checking health pass a paused helper by
        return _refused(Refusal("helping_paused", "helping is paused on this node", 60.0))
    answer = HealthAnswer(node_id=request.app[NODE_ID], **service.statistics())
    return web.json_response(answer.model_dump(mode="json"))


async def handle_summary(request: web.Request) -> web.Response:
    """``GET /v1/summary`` (signed): counts, rates and limits for another node's fleet view."""
    answer = request.app[SUMMARY]()
    return web.json_response(answer.model_dump(mode="json"))


def helper_summary(service: HelperService, node_id: str) -> NodeSummary:
    """What ``service`` alone tells of its node (the daemon adds its downloads and hub)."""
    rate = service.limits.rate_limit
    quota = service.quota
    return NodeSummary(
        node_id=node_id,
        version=__version__,
        active_streams=service.active(),
        streams_served=service.stats.streams_served,
        bytes_sent_today=service.sent_today(),
        refused=service.stats.refused,
        slots=service.limits.slots,
        rate_limit=None if rate is None else int(rate),
        daily_quota=None if quota is None else quota.limit,
        quota_left=None if quota is None else quota.left(),
        helping_paused=service.paused,
    )


HELPER: web.AppKey[HelperService] = web.AppKey("helper", HelperService)
NODE_ID: web.AppKey[str] = web.AppKey("node_id", str)
SummaryFn = Callable[[], NodeSummary]
SUMMARY: web.AppKey[SummaryFn] = web.AppKey("summary")


def make_peer_app(
    service: HelperService, secret: bytes, node_id: str, summary: SummaryFn | None = None
) -> web.Application:
    """The peer API: every route signed with the swarm secret and the requester's node key;
    requests signed before the peer API was made (the node's start) are refused, since its
    replay cache starts empty (``swarmget.net.auth``)."""
    app = web.Application(middlewares=[auth_middleware(secret)], client_max_size=64 * 1024)
    app[HELPER] = service
    app[NODE_ID] = node_id
    app[SUMMARY] = summary or (lambda: helper_summary(service, node_id))
    app.router.add_post(RANGE_PATH, handle_range)
    app.router.add_get(HEALTH_PATH, handle_health)
    app.router.add_get(SUMMARY_PATH, handle_summary)
    return app
