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
import logging
import math
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from pydantic import ValidationError

from swarmget import __version__
from swarmget.core.errors import (
    ForbiddenTarget,
    InvalidURL,
    SourceBroken,
    SourceRateLimited,
    SwarmgetError,
)
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.urls import validate_url
from swarmget.net.auth import auth_middleware, authenticated_node, json_error
from swarmget.net.origin import OriginInfo
from swarmget.node.helper_service import (
    QUOTA_STEP,
    ChunkFilter,
    HelperLimits,
    HelperService,
    HelperStats,
    StreamBudget,
)
from swarmget.node.helper_warm import Lead, OriginWarmer
from swarmget.node.range_stream import (
    Refusal,
    StreamCut,
    abort,
    range_response,
    refused,
    send,
)
from swarmget.protocol.errors import PEER_ERRORS
from swarmget.protocol.peer import (
    HEALTH_PATH,
    RANGE_PATH,
    SUMMARY_PATH,
    HealthAnswer,
    HealthQuery,
    NodeSummary,
    RangeRequest,
)

__all__ = [
    "ADDRESS_POLICY_REFUSAL",
    "FORWARD_BATCH",
    "FORWARD_DELAY",
    "HELPER",
    "NODE_ID",
    "QUOTA_STEP",
    "SUMMARY",
    "WARMER",
    "ChunkFilter",
    "HelperLimits",
    "HelperService",
    "HelperStats",
    "Refusal",
    "StreamBudget",
    "helper_summary",
    "make_peer_app",
]

log = logging.getLogger(__name__)

#: All a requester learns when the SSRF guard refuses the URL it asked us to fetch.
ADDRESS_POLICY_REFUSAL = "refused by the address policy"

FORWARD_BATCH = 256 * 1024  # bytes collected from the origin before one write on
FORWARD_DELAY = 0.05  # ... or seconds after the first of them arrived


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


class _QuotaRanOut(StreamCut):
    """The daily quota cannot cover the stream's next bytes."""


async def handle_range(request: web.Request) -> web.StreamResponse:
    service: HelperService = request.app[HELPER]
    requester = authenticated_node(request)
    try:
        req = await _parse(request)
        rng = ByteRange(req.start, req.end)
        with service.slot(requester, rng.length) as budget:
            return await _stream_range(request, service, req, rng, budget)
    except Refusal as exc:
        service.stats.refuse(exc.code)  # counted when it happens, by reason
        return refused(exc)


async def _stream_range(
    request: web.Request,
    service: HelperService,
    req: RangeRequest,
    rng: ByteRange,
    budget: StreamBudget,
) -> web.StreamResponse:
    warmer = request.app[WARMER]
    lead = await warmer.claim(authenticated_node(request), req.url, rng)
    try:
        return await _stream_claimed(request, service, req, rng, budget, lead)
    finally:
        if lead is not None:
            await warmer.finish(lead)


async def _stream_claimed(
    request: web.Request,
    service: HelperService,
    req: RangeRequest,
    rng: ByteRange,
    budget: StreamBudget,
    lead: Lead | None,
) -> web.StreamResponse:
    resp = range_response(rng)
    info = _info_for(req)
    if lead is None:
        await request.app[WARMER].ready(req.url)  # the connection a health check opened
    try:
        if lead is None or lead.taken is None:
            opened = service.origin.open_range(info, rng)
        else:  # the origin was asked for these bytes when the health check named them
            opened = service.origin.open_lead_range(lead.taken, info, rng)
        async with opened as body:
            await resp.prepare(request)
            await _forward(body, resp, service, budget, request.transport, expected=rng.length)
        await resp.write_eof()  # with a Content-Length this only marks the end: no wait
    except SwarmgetError as exc:
        if not resp.prepared:
            return _origin_error(exc)
        abort(request)  # mid-body: the requester must see a short body, not a clean end
        return resp
    except StreamCut as exc:
        if isinstance(exc, _QuotaRanOut):
            service.stats.quota_cut += 1
        else:
            service.stats.stalled += 1
        log.warning("stream %s to %s closed: %s", rng, authenticated_node(request), exc)
        abort(request)
        return resp
    service.stats.streams_served += 1
    return resp


async def _forward(
    body: AsyncIterator[Chunk],
    resp: web.StreamResponse,
    service: HelperService,
    budget: StreamBudget,
    transport: asyncio.BaseTransport | None = None,
    *,
    expected: int | None = None,
) -> None:
    """Copy the origin's chunks to the requester, a few at a time.

    Through a capped link the origin's chunks are small (a few KiB); writing each on its own
    costs the requester a wake-up and a parse per chunk. So they are collected into writes
    of up to ``FORWARD_BATCH`` bytes, and none waits longer than ``FORWARD_DELAY``. The
    first chunk goes out at once: the requester's first byte from us is not held back by
    the batching (issue #14: up to ``FORWARD_DELAY`` of each stream's start otherwise).
    Under a rate limit a write waits for the bucket as a whole, and is up to
    ``HelperService.paced_step`` bytes: the origin's bytes pile up in the socket while we
    wait, so they are read and sent in a few large pieces, not one small one per wait
    (each costs about the same CPU: bench/send_cpu.py).

    A batch is sent when the origin pauses by cancelling the wait for its next chunk: the
    body must lose nothing to that (``CheckedBody``, ``RawBody``, ``FirstThenRest``). One
    that ends before ``expected`` bytes is ``SourceBroken``: the answer promised them (its
    Content-Length), so the caller must cut it, never end it as if whole.
    """
    loop = asyncio.get_running_loop()
    chunks = aiter(body)
    pending: list[Chunk] = []
    size = 0
    total = 0
    deadline = 0.0
    started = False  # the first write is not batched

    async def flush() -> None:
        nonlocal size
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        size = 0
        await service.throttle(len(data))
        await send(resp, data, service.limits.write_stall_timeout, transport)
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
        if service.chunk_filter is not None:
            chunk = service.chunk_filter(chunk)
        covered = service.charge(budget, len(chunk))
        if not pending:
            deadline = loop.time() + FORWARD_DELAY
        pending.append(chunk)
        size += len(chunk)
        total += len(chunk)
        if not covered:
            await flush()
            raise _QuotaRanOut("the daily quota ran out mid-stream")
        if not started or size >= service.paced_step(FORWARD_BATCH) or loop.time() >= deadline:
            started = True
            await flush()
    if pending:
        await flush()
    if expected is not None and total < expected:
        raise SourceBroken(f"the origin's body ended after {total} of {expected} bytes")


async def handle_health(request: web.Request) -> web.Response:
    """``GET /v1/health`` (signed, like every peer route): this node's statistics. With
    ``?warm=URL`` (``HealthQuery``), the download the requester is about to ask ranges of:
    its origin connection is opened meanwhile (``node.helper_warm``), and with ``&lead=``
    the requester's first range of us asked for at once; the answer never waits."""
    service: HelperService = request.app[HELPER]
    try:
        query = HealthQuery.model_validate(dict(request.rel_url.query))
    except ValidationError as exc:
        message = f"bad health query: {exc.errors()[0]['msg']}"
        return refused(Refusal("bad_request", message))
    if service.paused:  # requesters checking health pass a paused helper by
        return refused(Refusal("helping_paused", "helping is paused on this node", 60.0))
    if query.warm is not None:
        try:
            validate_url(query.warm)
        except InvalidURL as exc:
            return refused(Refusal("bad_request", f"bad health query: {exc}"))
        lead = query.lead_range()
        request.app[WARMER].warm(
            query.warm,
            requester=authenticated_node(request),
            lead=None if lead is None else ByteRange(*lead),
        )
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
WARMER: web.AppKey[OriginWarmer] = web.AppKey("warmer", OriginWarmer)
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
    app[WARMER] = warmer = OriginWarmer(service)
    app.cleanup_ctx.append(warmer.running)
    app[SUMMARY] = summary or (lambda: helper_summary(service, node_id))
    app.router.add_post(RANGE_PATH, handle_range)
    app.router.add_get(HEALTH_PATH, handle_health)
    app.router.add_get(SUMMARY_PATH, handle_summary)
    return app
