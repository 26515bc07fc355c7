"""One lease's stream: its range read from its source and written into the part file.

For every chunk the scheduler says which bytes the stream may write (``on_data``: the part
nobody claimed before); they are collected into >= 1 MiB batches (``BatchWriter``). Claimed
bytes are always flushed, even when the stream is cancelled, so the scheduler's ``done``
and the file agree, unless their source was caught lying (then they were given back to be
fetched again, and are dropped). A source's error is reported to the run that owns the
stream (``StreamOwner.stream_failed``); an error that concerns the whole download is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Container, Sequence
from typing import Protocol

from swarmget.core import events as ev
from swarmget.core.errors import (
    DownloadError,
    RangesIgnored,
    SourceError,
    SourceRateLimited,
    SourceRetryable,
)
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.scheduler import Action, Assign, FailureKind, Scheduler
from swarmget.engine.checks import extend_runs
from swarmget.engine.context import DownloadContext
from swarmget.engine.sources import trusted
from swarmget.engine.writer import BatchWriter
from swarmget.storage import PartFile


class RangesIgnoredMidway(DownloadError):
    """Internal: a range request got the whole file; start over with one stream."""


class StreamOwner(Protocol):
    """What a stream tells the run that started it."""

    def revoke(self, actions: Sequence[Action]) -> None:
        """Carry out the ``Cancel``s the scheduler answered a chunk with (lost races)."""

    def stream_failed(
        self, lease: Assign, kind: FailureKind, reason: str, retry_after: float | None
    ) -> None:
        """The stream of ``lease`` ended before its range was complete."""

    def stream_ended(self, lease: Assign, runs: list[ByteRange] | None) -> None:
        """The stream is over; a helper's stream claimed ``runs`` (None: our own)."""

    def wake(self) -> None:
        """The scheduler freed a slot (a stream about to end, ``Claim.ending``): poll now."""


def failure_kind(exc: SourceError) -> tuple[FailureKind, float | None]:
    """How the scheduler should count ``exc`` against its source (and how long to wait)."""
    if isinstance(exc, SourceRateLimited):
        return FailureKind.RATE_LIMITED, exc.retry_after
    if isinstance(exc, SourceRetryable):
        return FailureKind.RETRYABLE, None
    return FailureKind.BROKEN, None  # SourceBroken, and anything else it did wrong


async def stream_lease(
    lease: Assign,
    *,
    ctx: DownloadContext,
    scheduler: Scheduler,
    part: PartFile,
    distrusted: Container[str],
    owner: StreamOwner,
) -> None:
    """Stream ``lease``'s range from its source into ``part``."""
    source = ctx.sources[lease.source_id]
    writer = BatchWriter(part)
    # what a helper's stream claimed, to be sampled (our own connections are not)
    runs: list[ByteRange] | None = None if trusted(source) else []
    try:
        async with ctx.open_range(source, lease.range) as body:
            if not await _pump(
                lease, body, writer, runs, ctx=ctx, scheduler=scheduler, owner=owner
            ):
                # the origin client guarantees the full length: on_data said finished before
                owner.stream_failed(lease, FailureKind.BROKEN, "short body", None)
        await writer.flush()
    except asyncio.CancelledError:
        await _flush_claimed(writer, lease.source_id in distrusted)
        raise
    except SourceError as exc:
        await _flush_claimed(writer, lease.source_id in distrusted)
        if isinstance(exc, RangesIgnored):
            raise RangesIgnoredMidway(str(exc)) from exc
        code, message = exc.code, str(exc)
        failed = ev.StreamFailed(
            at=ctx.at(), source_id=lease.source_id, range=lease.range, code=code, message=message
        )
        ctx.emit(failed)
        owner.stream_failed(lease, *_kind_and_wait(exc, message))
    finally:  # a DownloadError goes on up: it ends the run
        owner.stream_ended(lease, runs)


def _kind_and_wait(exc: SourceError, reason: str) -> tuple[FailureKind, str, float | None]:
    kind, retry_after = failure_kind(exc)
    return kind, reason, retry_after


async def _flush_claimed(writer: BatchWriter, distrusted: bool) -> None:
    """The scheduler counts claimed bytes as done: write them, unless their source was
    caught lying (then they were given back to be fetched again)."""
    if distrusted:
        writer.discard()
    else:
        await writer.flush()


async def _pump(
    lease: Assign,
    body: AsyncIterator[Chunk],
    writer: BatchWriter,
    runs: list[ByteRange] | None,
    *,
    ctx: DownloadContext,
    scheduler: Scheduler,
    owner: StreamOwner,
) -> bool:
    """Write what the scheduler lets this stream claim; True once it says finished."""
    pos = lease.range.start
    # our own connection, a helper, a LAN holder; None: this node's own copy (not counted)
    kind = ctx.kind_of(lease.source_id)
    async for chunk in body:
        now = ctx.clock()
        ctx.data_from(lease.source_id, now)
        if pos == lease.range.start:  # this stream's first chunk: the timeline's first byte?
            ctx.first_byte(lease.source_id)
        if kind is not None:
            ctx.received(kind, len(chunk))
        claim = scheduler.on_data(lease.lease_id, len(chunk), now)
        if claim.write is not None:
            view = memoryview(chunk)[claim.write.start - pos : claim.write.end - pos]
            await writer.add(claim.write.start, view)
            if runs is not None:
                extend_runs(runs, claim.write)
        pos += len(chunk)
        if claim.actions:
            owner.revoke(claim.actions)
        if claim.ending:
            owner.wake()
        if claim.finished:
            return True
    return False
