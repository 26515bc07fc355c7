"""How a test origin answers ``GET``/``HEAD /files/{name}``: the plan (status and range),
the headers, and the body sent chunk by chunk, throttled, possibly cut short.

``OriginState`` is what every response reads and updates: the behaviour in force, what is
left of its counted misbehaviours (drops, unavailable answers, lying ``Content-Range``s),
the counters, and one token bucket per client IP for ``rate_per_ip``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import web

from swarmget.core.ranges import ByteRange
from swarmget.core.ratelimit import TokenBucket
from swarmget.testing.origin.behaviour import (
    BEHAVIOUR_FIELDS,
    DRAIN_TIMEOUT,
    MAX_THROTTLED_CHUNK,
    UNTHROTTLED_CHUNK,
    Behaviour,
    Counters,
    KiB,
    ServedRange,
)
from swarmget.testing.origin.files import ServedFile
from swarmget.testing.origin.rules import (
    UNSATISFIABLE,
    Plan,
    content_range,
    if_match_holds,
    if_range_holds,
    parse_range,
)


class OriginState:
    """The behaviour in force and what is left of its counted misbehaviours; the counters."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.counters = Counters()
        self.set_behaviour(behaviour, BEHAVIOUR_FIELDS)

    def set_behaviour(self, behaviour: Behaviour, changed: Iterable[str]) -> None:
        """``behaviour`` in force; the counts of the ``changed`` fields start over."""
        self.behaviour = behaviour
        self._ip_buckets: dict[str, TokenBucket] = {}
        changed = set(changed)
        if "unavailable_count" in changed:
            self._unavailable_left = behaviour.unavailable_count
        if {"drop_after", "drop_count"} & changed:
            self._drops_left = behaviour.drop_count
        if "lie_content_range_every" in changed:
            self._partial_answers = 0

    def take_unavailable(self) -> bool:
        """Whether this response is one of the ``unavailable_count`` refused ones."""
        if self._unavailable_left <= 0:
            return False
        self._unavailable_left -= 1
        return True

    def take_drop(self, body_length: int) -> int | None:
        """Where to cut this response, if it is one the behaviour says to drop."""
        drop_after = self.behaviour.drop_after
        if drop_after is None or body_length <= drop_after or self._drops_left == 0:
            return None
        if self._drops_left is not None:
            self._drops_left -= 1
        return drop_after

    def lie_now(self) -> bool:
        """Whether this 206 answer gets a shifted Content-Range."""
        every = self.behaviour.lie_content_range_every
        if every is None:
            return self.behaviour.lie_content_range
        self._partial_answers += 1
        return self._partial_answers % every == 0

    async def throttle(self, ip: str, conn_bucket: TokenBucket | None, n: int) -> None:
        """Wait until ``n`` more bytes may go to ``ip`` on this response."""
        if conn_bucket is not None:
            await _take(conn_bucket, n)
        rate = self.behaviour.rate_per_ip
        if rate is None:
            return
        bucket = self._ip_buckets.get(ip)
        if bucket is None or bucket.rate != rate:
            bucket = self._ip_buckets[ip] = TokenBucket(rate)
        await _take(bucket, n)

    def account(self, ip: str, f: ServedFile, n: int) -> None:
        c = self.counters
        c.bytes_total += n
        c.bytes_by_ip[ip] += n
        c.bytes_by_file[f.name] += n
        threshold = self.behaviour.etag_change_after
        if threshold is not None and f.version == 0 and c.bytes_by_file[f.name] >= threshold:
            f.version = 1  # responses already under way keep sending version 0


async def _take(bucket: TokenBucket, n: int) -> None:
    """``n`` tokens of ``bucket``, waited for; given back if the wait is cancelled (the
    bytes will not be sent)."""
    delay = bucket.reserve(n, asyncio.get_running_loop().time())
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        bucket.give_back(n)
        raise


@dataclass(kw_only=True)
class Transfer:
    """What one GET /files response is doing, for the served log."""

    ip: str
    file: ServedFile
    version: int
    start: int = 0
    end: int = 0
    status: int = 0
    sent: int = 0

    def finish(self, resp: web.Response) -> web.Response:
        self.status = resp.status
        return resp

    def served(self) -> ServedRange:
        return ServedRange(
            ip=self.ip,
            file=self.file.name,
            start=self.start,
            end_exclusive=self.end,
            bytes_sent=self.sent,
            status=self.status,
        )


async def respond(request: web.Request, t: Transfer, state: OriginState) -> web.StreamResponse:
    """The answer to one ``GET`` or ``HEAD`` of ``t.file``, as the behaviour has it."""
    if state.behaviour.first_byte_delay:
        await asyncio.sleep(state.behaviour.first_byte_delay)
    t.version = t.file.version
    if state.take_unavailable():
        return t.finish(_unavailable(state.behaviour))
    etag = t.file.etag(t.version)
    if not if_match_holds(request.headers.get("If-Match"), etag):
        return t.finish(web.Response(status=412, headers={"ETag": etag}))
    plan = _plan(request, t.file, t.version, state)
    t.start, t.end, t.status = plan.start, plan.end, plan.status
    if plan.status == 416:
        return web.Response(status=416, headers={"Content-Range": plan.content_range or ""})
    headers = _headers(t, plan, state.behaviour)
    if t.file.digest:  # RFC 9530 §3: of the whole representation, even on a 206
        headers["Repr-Digest"] = await t.file.repr_digest(t.version)
    resp = web.StreamResponse(status=plan.status, headers=headers)
    if state.behaviour.no_content_length:
        resp.enable_chunked_encoding()
    elif request.method == "HEAD" and state.behaviour.announce_size is not None:
        resp.content_length = state.behaviour.announce_size
    else:
        resp.content_length = plan.end - plan.start
    await resp.prepare(request)
    if request.method == "GET":
        await _send_body(request, resp, t, state)
    return resp


def _unavailable(b: Behaviour) -> web.Response:
    headers = {} if b.retry_after is None else {"Retry-After": str(b.retry_after)}
    return web.Response(status=b.unavailable_status, headers=headers, text="try later\n")


def _plan(request: web.Request, f: ServedFile, version: int, state: OriginState) -> Plan:
    full = Plan(200, 0, f.size)
    header = request.headers.get("Range")
    b = state.behaviour
    if header is None or request.method != "GET" or b.ignore_range or b.no_content_length:
        return full
    if_range = request.headers.get("If-Range")
    if not if_range_holds(if_range, f.etag(version), f.last_modified(version)):
        return full
    r = parse_range(header, f.size)
    if r is None:
        return full
    if r == UNSATISFIABLE:
        return Plan(416, content_range=f"bytes */{f.size}")
    assert isinstance(r, ByteRange)
    total = f.size if b.announce_size is None else b.announce_size  # (a 206 announces it too)
    return Plan(206, r.start, r.end, content_range(r, total, state.lie_now()))


def _headers(t: Transfer, plan: Plan, behaviour: Behaviour) -> dict[str, str]:
    f, version = t.file, t.version
    headers = {
        "Content-Type": "application/octet-stream",
        "ETag": ("W/" if behaviour.weak_etag else "") + f.etag(version),
        "Last-Modified": formatdate(f.last_modified(version), usegmt=True),
    }
    if not behaviour.no_content_length:
        headers["Accept-Ranges"] = "bytes"
    if plan.content_range:
        headers["Content-Range"] = plan.content_range
    if f.content_disposition:
        headers["Content-Disposition"] = f.content_disposition
    return headers


async def _send_body(
    request: web.Request, resp: web.StreamResponse, t: Transfer, state: OriginState
) -> None:
    drop_at = state.take_drop(t.end - t.start)
    stop = t.end if drop_at is None else t.start + drop_at
    rate = state.behaviour.rate_per_conn
    conn_bucket = TokenBucket(rate) if rate else None
    chunk = _chunk_size(rate, state.behaviour.rate_per_ip)
    pos = t.start
    try:
        while pos < stop:
            n = min(chunk, stop - pos)
            await state.throttle(t.ip, conn_bucket, n)
            await resp.write(await t.file.read(pos, n, t.version))
            pos += n
            t.sent += n
            state.account(t.ip, t.file, n)
    except ConnectionResetError:  # includes aiohttp's ClientConnectionResetError
        return  # the client went away; the log shows how far it got
    if drop_at is not None:
        await _abort(request)


def _chunk_size(*rates: float | None) -> int:
    limits = [r for r in rates if r is not None]
    if not limits:
        return UNTHROTTLED_CHUNK
    return int(min(MAX_THROTTLED_CHUNK, max(KiB, min(limits) / 20)))


async def _abort(request: web.Request) -> None:
    """Cut the connection once the client has what was sent (so the cut lands at N bytes)."""
    transport = request.transport
    if transport is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT
    # asyncio has no "write buffer empty" event to wait for, hence the polling
    while transport.get_write_buffer_size() > 0 and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    transport.abort()
