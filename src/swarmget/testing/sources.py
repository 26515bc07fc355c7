"""A range source that follows a script, for tests of the engine (no network).

Each ``open_range`` call does the next step of ``script`` (then ``then`` for every call
after it): serve the true bytes, serve them corrupted, serve half and hang, serve half and
end, hang, or raise an error from the tree. Every range asked is recorded in ``asked``;
``hanging`` is set when a call starts to hang, so that a test waits for it, not sleeps.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from swarmget.core.errors import SwarmgetError
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.net.origin import OriginInfo

KiB = 1024


class Play(enum.Enum):
    SERVE = "serve"  # the true bytes of the range
    CORRUPT = "corrupt"  # the range's length, every byte flipped
    HALF = "half"  # the first half of the range, then nothing until cancelled
    SHORT = "short"  # the first half of the range, then the end of the body
    HANG = "hang"  # nothing until cancelled


Step = Play | SwarmgetError


@dataclass
class ScriptedSource:
    """A ``RangeSource`` over ``content`` (the file's true bytes), following ``script``."""

    source_id: str
    content: bytes
    slots: int = 1
    script: Sequence[Step] = ()
    then: Step = Play.SERVE
    chunk: int = 64 * KiB
    asked: list[ByteRange] = field(default_factory=list)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    def _next_step(self) -> Step:
        calls = len(self.asked)
        return self.script[calls - 1] if calls <= len(self.script) else self.then

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        self.asked.append(rng)
        step = self._next_step()
        if isinstance(step, SwarmgetError):
            raise step
        yield self._body(step, rng)

    async def _body(self, play: Play, rng: ByteRange) -> AsyncIterator[Chunk]:
        end = rng.start + rng.length // 2 if play in (Play.HALF, Play.SHORT) else rng.end
        if play is Play.HANG:
            end = rng.start
        for start in range(rng.start, end, self.chunk):
            data = self.content[start : min(end, start + self.chunk)]
            yield bytes(b ^ 0xFF for b in data) if play is Play.CORRUPT else data
        if play in (Play.HALF, Play.HANG):
            self.hanging.set()
            await asyncio.Event().wait()  # until cancelled
