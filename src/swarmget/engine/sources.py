"""Where bytes come from: anything that streams byte ranges of the pinned file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from swarmget.core.ranges import ByteRange, Chunk
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
