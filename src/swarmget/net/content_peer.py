"""The requester's side of a LAN holder (fetch once per LAN, #15; docs/fetch-once.md §5, §10).

A ``HolderSource`` streams ``[start, end)`` of one content (its full ``ContentKey``) from a
node that holds it (``POST /v1/content-range``, signed). It has the shape of
``net.peer_client.PeerSource`` (``source_id``, ``slots``, ``open_range(info, rng)`` as an
async context manager yielding the checked body), so the engine can treat a holder like a
helper stream; ``info`` is only checked against the key's size: the key, not the origin's
answer, names what is asked for.

Errors (``protocol.errors.PEER_ERRORS``, the same table the holder answers from):

* ``ContentNotHeld`` (409): the holder has not verified all of the range (ask again when its
  availability grew, or elsewhere);
* ``ContentKeyMismatch`` (409): it holds another content under that name;
* ``ContentNotShareable`` (409): it shares nothing (a cache budget of 0);
* ``SourceRateLimited`` (429/503, with Retry-After): busy, paused or draining;
* ``SourceRetryable``: the connection failed or timed out; ``SourceBroken``: anything else
  (401 our signature refused, an answer for another range, a short body).

``fetch_piece_hashes`` reads ``GET /v1/content/{name}/pieces`` (bounded, validated).
Timeouts as for a helper: 5 s to connect, ``read_timeout`` between bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pydantic

from swarmget.core.content import ContentKey
from swarmget.core.errors import SourceBroken, SourceRetryable
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.net.bounded import read_bounded
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import (
    CONNECT_TIMEOUT,
    MAX_ERROR_BYTES,
    PeerAddress,
    refusal,
    stream_range,
)
from swarmget.net.plain import plain_words
from swarmget.net.signing import NodeIdentity, json_body, signed_headers
from swarmget.protocol.content import (
    CONTENT_RANGE_PATH,
    MAX_PIECE_HASHES,
    ContentKeyModel,
    ContentRangeRequest,
    PieceHashes,
    content_path,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_ERROR_BYTES",
    "MAX_PIECES_ANSWER_BYTES",
    "HolderSource",
    "content_range_body",
    "fetch_piece_hashes",
]

#: Bytes of a ``PieceHashes`` answer read at most: ``MAX_PIECE_HASHES`` entries of
#: ``[index, "64 hex"]`` (at most ~92 bytes each) and the frame.
MAX_PIECES_ANSWER_BYTES = MAX_PIECE_HASHES * 96 + 1024


def content_range_body(key: ContentKey, rng: ByteRange) -> bytes:
    """The signed body of ``POST /v1/content-range`` for ``rng`` of ``key``. ``SourceBroken``
    when the request is one the protocol refuses (no size, a range beyond it)."""
    try:
        request = ContentRangeRequest(key=ContentKeyModel.of(key), start=rng.start, end=rng.end)
    except (pydantic.ValidationError, ValueError) as exc:
        raise SourceBroken(f"bad content range request: {exc}") from exc
    return json_body(request.model_dump(mode="json"))


@dataclass(frozen=True)
class HolderSource:
    """A LAN holder of ``key``, seen by the requester as a range source with ``slots`` slots."""

    session: aiohttp.ClientSession
    holder: PeerAddress
    key: ContentKey
    secret: bytes
    identity: NodeIdentity  # ours, the requester's
    read_timeout: float = 30.0

    @property
    def source_id(self) -> str:
        return self.holder.node_id

    @property
    def slots(self) -> int:
        return self.holder.slots

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo | None, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Stream ``rng`` of the key from the holder (``info``, if given, must agree on the
        size: the holder serves the key's bytes, not whatever the origin says now)."""
        who = f"holder {self.source_id}"
        if info is not None and info.size is not None and info.size != self.key.size:
            raise SourceBroken(f"{who}: the download's size is not the content key's")
        body = content_range_body(self.key, rng)
        url = f"{self.holder.url}{CONTENT_RANGE_PATH}"
        async with stream_range(self, url, body, rng, who=who) as chunks:
            yield chunks


async def fetch_piece_hashes(
    session: aiohttp.ClientSession,
    holder: PeerAddress,
    name: str,
    secret: bytes,
    identity: NodeIdentity,
    *,
    limit_seconds: float = 10.0,
) -> PieceHashes:
    """The holder's ``PieceHashes`` of content ``name`` (its ``index_name``): hashes of the
    pieces it fetched from the origin itself. Raises as ``HolderSource.open_range`` does;
    ``ValueError`` for a name that is not an index name."""
    who = f"holder {holder.node_id}"
    url = f"{holder.url}{content_path(name, 'pieces')}"
    headers = signed_headers(secret, identity, "GET", url)
    limit = aiohttp.ClientTimeout(total=limit_seconds, sock_connect=CONNECT_TIMEOUT)
    try:
        async with session.get(url, headers=headers, timeout=limit, allow_redirects=False) as resp:
            if resp.status != 200:
                raise await refusal(resp, who)
            raw = await read_bounded(resp.content, MAX_PIECES_ANSWER_BYTES)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SourceRetryable(f"{who}: {plain_words(exc)}") from exc
    if raw is None:
        raise SourceBroken(f"{who}: piece hashes answer over {MAX_PIECES_ANSWER_BYTES} bytes")
    try:
        return PieceHashes.model_validate_json(raw)
    except (pydantic.ValidationError, ValueError, RecursionError) as exc:
        raise SourceBroken(f"{who}: bad piece hashes answer") from exc
