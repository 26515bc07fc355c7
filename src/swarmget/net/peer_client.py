"""The requester's side of the peer API: helper nodes as range sources.

A ``PeerSource`` asks a helper to fetch a range of the pinned file from the origin and
reads the bytes as the helper streams them on. Its answers are translated to the error tree
so the scheduler can blame the helper: 429/503 → ``SourceRateLimited`` (honouring
Retry-After), connection failures and 504 → ``SourceRetryable``, anything that says the
helper cannot or will not do the job (401, 403, 409, 502 ...) → ``SourceBroken``.
``check_health`` is the pre-download check, run on the candidates in parallel with a short
timeout, at most ``MAX_HEALTH_CHECKS_IN_FLIGHT`` at once, stopping once it has enough: however
many peers the hub lists, a requester never opens more than that many sockets to check them.
A helper's health answer is read up to ``MAX_HEALTH_ANSWER_BYTES``, and the slots it claims
are capped at ``MAX_HELPER_SLOTS`` (the scheduler opens that many streams to it at most).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import pydantic
from yarl import URL

from swarmget.core.errors import SourceBroken, SourceRateLimited, SourceRetryable, SwarmgetError
from swarmget.core.http import parse_retry_after
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.net.aio_transport import BULK_READ_BUFSIZE, CheckedBody, translate_client_error
from swarmget.net.bounded import read_bounded
from swarmget.net.origin import OriginInfo
from swarmget.net.plain import plain_words
from swarmget.net.signing import NodeIdentity, json_body, signed_headers
from swarmget.protocol.errors import PEER_ERRORS, error_body
from swarmget.protocol.peer import (
    HEALTH_PATH,
    LEAD_PARAM,
    MAX_WARM_URL,
    RANGE_HEADER,
    RANGE_PATH,
    WARM_PARAM,
    HealthAnswer,
    RangeRequest,
    lead_value,
    range_header,
)

#: Seconds to connect to a peer.
CONNECT_TIMEOUT = 5.0
#: Bytes of a peer's JSON error answer read at most.
MAX_ERROR_BYTES = 4096
#: Health checks a requester runs at once (each holds one socket for up to its timeout).
MAX_HEALTH_CHECKS_IN_FLIGHT = 32
#: Bytes of a helper's ``/v1/health`` answer read at most (it is a few dozen).
MAX_HEALTH_ANSWER_BYTES = 4096
#: The most slots (parallel streams) a requester uses of one helper, whatever it claims.
MAX_HELPER_SLOTS = 64


@dataclass(frozen=True, kw_only=True)
class PeerAddress:
    node_id: str
    url: str  # the peer API base URL, e.g. http://127.0.0.3:7401
    slots: int = 3


@dataclass(frozen=True)
class PeerSource:
    """A helper node, seen by the requester as a range source with ``slots`` slots."""

    session: aiohttp.ClientSession
    peer: PeerAddress
    secret: bytes
    identity: NodeIdentity  # ours, the requester's
    download_id: str = ""
    read_timeout: float = 30.0

    @property
    def source_id(self) -> str:
        return self.peer.node_id

    @property
    def slots(self) -> int:
        return self.peer.slots

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        body = json_body(_range_request(info, rng, self.download_id, self.source_id))
        url = f"{self.peer.url}{RANGE_PATH}"
        async with stream_range(self, url, body, rng, who=f"helper {self.source_id}") as chunks:
            yield chunks


class RangeSender(Protocol):
    """A requester's view of a peer it streams ranges from (``PeerSource``, and
    ``net.content_peer.HolderSource``): how it signs and how long it waits between bytes."""

    @property
    def session(self) -> aiohttp.ClientSession: ...
    @property
    def secret(self) -> bytes: ...
    @property
    def identity(self) -> NodeIdentity: ...  # ours, the requester's
    @property
    def read_timeout(self) -> float: ...


@asynccontextmanager
async def stream_range(
    sender: RangeSender, url: str, body: bytes, rng: ByteRange, *, who: str
) -> AsyncIterator[AsyncIterator[Chunk]]:
    """POST ``body``, a JSON range request signed with ``sender``'s identity (a helper's
    ``/v1/range``, a holder's ``/v1/content-range``), and yield the checked body of ``rng``:
    exactly its bytes, or the error tree (``refusal`` for an error answer,
    ``SourceRetryable`` when the connection fails, ``SourceBroken`` for an answer about
    another range)."""
    signed = signed_headers(sender.secret, sender.identity, "POST", url, body)
    headers = {**signed, "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=sender.read_timeout
    )
    try:
        resp = await sender.session.post(
            url,
            data=body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            read_bufsize=BULK_READ_BUFSIZE,
        )
    except (aiohttp.ClientError, OSError) as exc:
        raise SourceRetryable(f"{who}: {plain_words(exc)}") from exc
    try:
        if resp.status != 200:
            raise await refusal(resp, who)
        if resp.headers.get(RANGE_HEADER) != range_header(rng.start, rng.end):
            raise SourceBroken(f"{who} answered for another range")
        yield CheckedBody(resp, rng.length, f"{who} {rng}", bulk=True)
    except (aiohttp.ClientError, OSError) as exc:
        raise translate_client_error(exc, who) from exc
    finally:
        if resp.content.at_eof():
            resp.release()
        else:
            resp.close()


async def refusal(resp: aiohttp.ClientResponse, who: str) -> SwarmgetError:
    """The error-tree exception for a peer's (helper's or holder's) error answer, by its code
    (``PEER_ERRORS``), honouring Retry-After; the body is read up to ``MAX_ERROR_BYTES``."""
    try:
        raw = await read_bounded(resp.content, MAX_ERROR_BYTES)
    except (aiohttp.ClientError, OSError, TimeoutError):
        raw = None
    said = error_body(raw, otherwise=resp.reason or "")
    text = f"{said.code}: {said.message}" if said.code is not None else said.message
    what = f"{who}: {resp.status} {text}"
    kind = PEER_ERRORS.for_code(said.code, resp.status)
    if issubclass(kind, SourceRateLimited):
        retry = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        return SourceRateLimited(what, retry_after=retry)
    return kind(what)


def _range_request(
    info: OriginInfo, rng: ByteRange, download_id: str, who: str
) -> dict[str, object]:
    """The ``RangeRequest`` for ``rng`` as JSON. One the helper would refuse (a URL or
    validator over the protocol's bounds) fails here, as the helper's refusal would."""
    validator = info.validator
    if info.size is None:
        raise SourceBroken(f"helper {who}: a helper fetches ranges of a file of known size")
    try:
        request = RangeRequest(
            url=info.final_url,
            start=rng.start,
            end=rng.end,
            size=info.size,
            etag=validator.etag if validator is not None else None,
            last_modified=validator.last_modified if validator is not None else None,
            download_id=download_id,
        )
    except pydantic.ValidationError as exc:
        raise SourceBroken(f"helper {who}: bad range request: {exc.errors()[0]['msg']}") from exc
    return request.model_dump(mode="json")


async def check_health(
    session: aiohttp.ClientSession,
    peers: Sequence[PeerAddress],
    secret: bytes,
    identity: NodeIdentity,
    *,
    health_timeout: float = 2.0,
    max_in_flight: int = MAX_HEALTH_CHECKS_IN_FLIGHT,
    enough: int | None = None,
    on_healthy: Callable[[PeerAddress], None] | None = None,
    warm_url: str | None = None,
    leads: Mapping[str, ByteRange] | None = None,
) -> list[PeerAddress]:
    """The peers answering ``/v1/health`` within ``health_timeout``, in the order given.

    At most ``max_in_flight`` checks run at once; once ``enough`` peers answered, the
    candidates not yet checked are skipped (and at most ``enough`` are returned). A peer's
    reported slot count replaces what the hub said (the peer knows best), up to
    ``MAX_HELPER_SLOTS``. ``on_healthy`` is called with each peer as soon as it answered
    (at most ``enough`` times): a download can use it before the slowest has answered.
    ``warm_url``, the download's URL, rides along (``?warm=``, left out when longer than
    ``MAX_WARM_URL``): a helper may open its connection to that origin meanwhile (issue #14);
    one that does not know the parameter ignores it. ``leads`` (by node id, with ``warm_url``
    only): the range each peer will be asked first (``?lead=``): it may ask the origin for it
    at once (``node.helper_warm``)."""
    if warm_url is not None and len(warm_url) > MAX_WARM_URL:
        warm_url = None
    leads = leads if warm_url is not None and leads else {}
    gate = asyncio.Semaphore(max_in_flight)
    healthy: dict[int, PeerAddress] = {}

    async def one(index: int, peer: PeerAddress) -> None:
        async with gate:
            if enough is not None and len(healthy) >= enough:
                return
            lead = leads.get(peer.node_id)
            answer = await _health(session, peer, secret, identity, health_timeout, warm_url, lead)
        if answer is None:
            return
        if on_healthy is not None and (enough is None or len(healthy) < enough):
            on_healthy(answer)
        healthy[index] = answer

    async with asyncio.TaskGroup() as tg:
        for index, peer in enumerate(peers):
            tg.create_task(one(index, peer))
    found = [healthy[index] for index in sorted(healthy)]
    return found if enough is None else found[:enough]


async def _health(
    session: aiohttp.ClientSession,
    peer: PeerAddress,
    secret: bytes,
    identity: NodeIdentity,
    limit: float,
    warm_url: str | None = None,
    lead: ByteRange | None = None,
) -> PeerAddress | None:
    """The peer as it describes itself, or None when it does not answer well in time."""
    url = f"{peer.url}{HEALTH_PATH}"
    if warm_url is not None:
        query = {WARM_PARAM: warm_url}
        if lead is not None:
            query[LEAD_PARAM] = lead_value(lead.start, lead.end)
        url = str(URL(url).with_query(query))
    try:
        status, body = await signed_get(
            session, url, secret, identity, limit=limit, max_bytes=MAX_HEALTH_ANSWER_BYTES
        )
        if status != 200 or body is None:
            return None
        answer = HealthAnswer.model_validate_json(body)
    except (aiohttp.ClientError, OSError, ValueError, RecursionError):
        return None  # pydantic.ValidationError is a ValueError
    if answer.node_id != peer.node_id:
        return None
    slots = min(answer.slots, MAX_HELPER_SLOTS)
    return PeerAddress(node_id=peer.node_id, url=peer.url, slots=slots)


async def signed_get(
    session: aiohttp.ClientSession,
    url: str,
    secret: bytes,
    identity: NodeIdentity,
    *,
    limit: float,
    max_bytes: int,
) -> tuple[int, bytes | None]:
    """``GET url`` signed as ``identity``, all within ``limit`` seconds: the answer's status
    and, for a 200, its body (None when over ``max_bytes``; never read for another status).
    Raises ``TimeoutError``, or ``aiohttp.ClientError`` / ``OSError`` when the connection
    fails."""
    headers = signed_headers(secret, identity, "GET", url)
    async with asyncio.timeout(limit):
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                return resp.status, None
            return 200, await read_bounded(resp.content, max_bytes)
