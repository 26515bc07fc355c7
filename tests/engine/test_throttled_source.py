"""``get --limit-rate``: a source's chunks wait for their tokens (issue #16). The clock and
the sleeps are the test's: the waits asked for are checked, not the time taken."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.ratelimit import TokenBucket
from swarmget.engine.sources import ThrottledSource
from swarmget.net.origin import OriginInfo

KiB = 1024


class TenChunks:
    source_id = "origin"
    slots = 2

    @contextlib.asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        async def chunks() -> AsyncIterator[Chunk]:
            for _ in range(10):
                yield b"x" * (64 * KiB)

        yield chunks()


async def test_chunks_wait_for_their_share_of_the_rate() -> None:
    now = [0.0]
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)
        now[0] += delay

    bucket = TokenBucket(64 * KiB, burst=64 * KiB)  # one chunk a second, one at once
    source = ThrottledSource(TenChunks(), bucket, clock=lambda: now[0], sleep=sleep)
    assert (source.source_id, source.slots) == ("origin", 2)
    info = OriginInfo(
        url="http://o/f", final_url="http://o/f", size=640 * KiB, validator=None,
        accepts_ranges=True, filename="f",
    )  # fmt: skip
    got = 0
    async with source.open_range(info, ByteRange(0, 640 * KiB)) as chunks:
        async for chunk in chunks:
            got += len(chunk)
    assert got == 640 * KiB
    assert len(waits) == 9  # the first chunk is the burst
    assert sum(waits) == 9.0  # then one second for each 64 KiB
