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
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from swarmget.core.errors import SourceBroken, SourceRateLimited, SourceRetryable
from swarmget.core.http import parse_retry_after
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.net.bounded import read_bounded
from swarmget.net.origin import CheckedBody, OriginInfo, translate_client_error
from swarmget.net.signing import NodeIdentity, json_body, signed_headers

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
        body = json_body(_range_payload(info, rng, self.download_id))
        url = f"{self.peer.url}/v1/range"
        headers = signed_headers(self.secret, self.identity, "POST", url, body)
        headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=self.read_timeout)
        try:
            resp = await self.session.post(url, data=body, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, OSError) as exc:
            raise SourceRetryable(f"helper {self.source_id}: {exc}") from exc
        try:
            await _check(resp, self.source_id, rng)
            yield CheckedBody(resp, rng.length, f"helper {self.source_id} {rng}")
        except (aiohttp.ClientError, OSError) as exc:
            raise translate_client_error(exc, f"helper {self.source_id}") from exc
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()


def _range_payload(info: OriginInfo, rng: ByteRange, download_id: str) -> dict[str, object]:
    validator = info.validator
    return {
        "url": info.final_url,
        "start": rng.start,
        "end": rng.end,
        "size": info.size,
        "etag": validator.etag if validator is not None else None,
        "last_modified": validator.last_modified if validator is not None else None,
        "download_id": download_id,
    }


async def _check(resp: aiohttp.ClientResponse, who: str, rng: ByteRange) -> None:
    if resp.status == 200:
        if resp.headers.get("X-Swarm-Range") != f"{rng.start}-{rng.end}":
            raise SourceBroken(f"helper {who} answered for another range")
        return
    message = await _error_message(resp)
    what = f"helper {who}: {resp.status} {message}"
    if resp.status in (429, 503):
        retry = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        raise SourceRateLimited(what, retry_after=retry)
    if resp.status == 504 or resp.status >= 500 and "origin_unreachable" in message:
        raise SourceRetryable(what)
    raise SourceBroken(what)


async def _error_message(resp: aiohttp.ClientResponse) -> str:
    try:
        data = await resp.json(content_type=None)
        return f"{data.get('code', '')}: {data.get('error', '')}"
    except (aiohttp.ClientError, ValueError, AttributeError, TimeoutError):
        return resp.reason or ""


async def check_health(
    session: aiohttp.ClientSession,
    peers: Sequence[PeerAddress],
    secret: bytes,
    identity: NodeIdentity,
    *,
    health_timeout: float = 2.0,
    max_in_flight: int = MAX_HEALTH_CHECKS_IN_FLIGHT,
    enough: int | None = None,
) -> list[PeerAddress]:
    """The peers answering ``/v1/health`` within ``health_timeout``, in the order given.

    At most ``max_in_flight`` checks run at once; once ``enough`` peers answered, the
    candidates not yet checked are skipped (and at most ``enough`` are returned). A peer's
    reported slot count replaces what the hub said (the peer knows best), up to
    ``MAX_HELPER_SLOTS``."""
    gate = asyncio.Semaphore(max_in_flight)
    healthy: dict[int, PeerAddress] = {}

    async def one(index: int, peer: PeerAddress) -> None:
        async with gate:
            if enough is not None and len(healthy) >= enough:
                return
            answer = await _health(session, peer, secret, identity, health_timeout)
        if answer is not None:
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
) -> PeerAddress | None:
    """The peer as it describes itself, or None when it does not answer well in time."""
    url = f"{peer.url}/v1/health"
    headers = signed_headers(secret, identity, "GET", url)
    try:
        async with asyncio.timeout(limit):
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None
                body = await read_bounded(resp.content, MAX_HEALTH_ANSWER_BYTES)
        data = json.loads(body) if body is not None else None
    except (aiohttp.ClientError, OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("node_id") != peer.node_id:
        return None
    slots = data.get("slots")
    if type(slots) is not int or slots < 1:
        return None
    return PeerAddress(node_id=peer.node_id, url=peer.url, slots=min(slots, MAX_HELPER_SLOTS))
