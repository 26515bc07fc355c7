"""Where bytes come from: anything that streams byte ranges of the pinned file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.ratelimit import TokenBucket
from swarmget.net.origin import OriginClient, OriginInfo


class RangeSource(Protocol):
    """Something that can stream byte ranges of a pinned file (the origin, a helper)."""

    @property
    def source_id(self) -> str: ...

    @property
    def slots(self) -> int: ...

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]: ...


@dataclass(frozen=True)
class OriginSource:
    """The origin server itself, fetched directly over ``client`` (trusted: not sampled)."""

    client: OriginClient
    slots: int
    source_id: str = "origin"

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        return self.client.open_range(info, rng)


#: the source id of this node's own copy of the content (``OwnCopySource``)
OWN_COPY = "own-copy"


class OwnCopySource:
    """This node's own copy of the content (a file its share cache kept, verified whole
    when kept and unchanged since: fetch once per LAN, #15), read directly from disk by
    ``inner``. Trusted like our own origin connections (its streams are not sampled: the
    distrust of docs/fetch-once.md §6 is for other nodes' disks), but its bytes are neither
    origin nor LAN bytes (not told to ``on_bytes``)."""

    def __init__(self, inner: RangeSource) -> None:
        self._inner = inner

    @property
    def source_id(self) -> str:
        return OWN_COPY

    @property
    def slots(self) -> int:
        return self._inner.slots

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        return self._inner.open_range(info, rng)


def trusted(source: RangeSource) -> bool:
    """Whether ``source``'s bytes are taken unchecked (our own origin connections, this
    node's own copy); every other source's streams are sampled against the origin."""
    return isinstance(source, OriginSource | OwnCopySource)


class ThrottledSource:
    """``inner``, its bytes spread over time by ``bucket`` (``get --limit-rate``): every
    chunk waits for its tokens before it is handed on. ``clock`` and ``sleep`` are the
    loop's (a test passes its own)."""

    def __init__(
        self,
        inner: RangeSource,
        bucket: TokenBucket,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self._inner, self._bucket, self._clock, self._sleep = inner, bucket, clock, sleep

    @property
    def source_id(self) -> str:
        return self._inner.source_id

    @property
    def slots(self) -> int:
        return self._inner.slots

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        async with self._inner.open_range(info, rng) as chunks:
            yield self._paced(chunks)

    async def _paced(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        async for chunk in chunks:
            delay = self._bucket.reserve(len(chunk), self._clock())
            if delay > 0:
                await self._sleep(delay)
            yield chunk
