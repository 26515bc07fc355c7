"""One segmented run: many streams from many sources into one part file.

A ``SegmentedRun`` owns the scheduler, the part file and (while it runs) the task group of
its streams and checks. Its loop asks the scheduler for actions, starts one stream task per
``Assign`` (``streams.py``), cancels streams on ``Cancel``, and waits until a stream ends,
a check finishes or a timer is due. The whole-file hash follows the contiguous prefix of
the file while it grows, so only the tail is left to hash when the last byte lands. Bytes
that fail a check are judged by ``core.blame``; the run carries out the verdict.

Errors from a stream are blamed on its source (retry, back off, ban). Errors that concern
the whole download (``OriginChanged``, ``StorageError``) are raised in the task where they
happen: the task group cancels the rest and the run ends with that error (no polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from swarmget.core import events as ev
from swarmget.core.errors import (
    NoSourcesLeft,
)
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Action, Assign, Ban, Cancel, FailureKind, Scheduler
from swarmget.engine import refetch, verify
from swarmget.engine.checks import (
    IntegrityChecks,
)
from swarmget.engine.context import DownloadContext
from swarmget.engine.run_checks import RunChecks
from swarmget.engine.sources import RangeSource
from swarmget.engine.spec import DownloadResult, Stage
from swarmget.engine.streams import stream_lease
from swarmget.hashing import IncrementalHasher, hash_file
from swarmget.storage import PartFile

log = logging.getLogger(__name__)

#: times the run fetches again bytes the scheduler counted as delivered that are not on disk
#: (a bug: ``_refill``); then it fails rather than hand over a file with a hole
MAX_REFILLS = 2

#: seconds between rounds of the loop's housekeeping (a checkpoint when due, the whole-file
#: hash advanced over the prefix now on disk) when nothing else wakes it
HOUSEKEEPING = 0.5


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first error of a task group's ``group`` (nested groups looked into): the one
    that stopped the run; the others are what the cancellation it caused left behind."""
    first = group.exceptions[0]
    return first_error(first) if isinstance(first, BaseExceptionGroup) else first


class SegmentedRun:
    """Drives ``scheduler`` until ``part`` holds the whole file, every check passed."""

    def __init__(
        self,
        ctx: DownloadContext,
        checks: IntegrityChecks,
        scheduler: Scheduler,
        part: PartFile,
        *,
        resumed: int = 0,
    ) -> None:
        self._ctx = ctx
        self._resumed = resumed  # bytes found on disk when the run began
        self._checks = checks
        self.scheduler = scheduler
        self.part = part
        self._info = ctx.pinned()
        self._tg: asyncio.TaskGroup | None = None
        self._streams: dict[int, asyncio.Task[None]] = {}  # by lease id
        #: set when a stream ends or a check finishes: the loop looks at the scheduler again
        #: (failures do not come this way: they are raised in their task, see ``_drive``)
        self._changed = asyncio.Event()
        self._run_checks = RunChecks(ctx, checks, scheduler, part, owner=self)
        #: the whole-file digest was compared before every sample check was back (once)
        self._digest_tried = False
        #: a whole-file digest is known: LAN holders' streams, and helpers' after their first,
        #: are sampled only if it fails
        self._digest_known = bool(verify.known_digests(ctx.spec, self._info, ctx.manifest))

    def add_source(
        self, source: RangeSource, *, available: RangeSet | None = None, whole_runs: bool = False
    ) -> None:
        """A source joins the run: the scheduler counts it from now (``available``: the
        only bytes it may serve, None: any; ``whole_runs``: see ``Scheduler.add_source``);
        the loop looks again."""
        now = self._ctx.clock()
        self.scheduler.add_source(
            source.source_id, source.slots, now, available=available, whole_runs=whole_runs
        )
        self._changed.set()

    def wake(self) -> None:
        """Something outside changed the scheduler (a grant, a holder's news): look again."""
        self._changed.set()

    @property
    def _group(self) -> asyncio.TaskGroup:
        tg = self._tg
        assert tg is not None, "not running"
        return tg

    # --- the run -------------------------------------------------------------------------------

    async def download(self) -> DownloadResult:
        """Fetch, check and hash every byte, verify, and move the file into place."""
        digests = await self._drive_and_hash()
        return await verify.finish_segmented(
            self._ctx, self._checks, self.scheduler, self.part, digests, resumed=self._resumed
        )

    async def _drive_and_hash(self) -> dict[str, str]:
        ctx, info = self._ctx, self._info
        ctx.stage = Stage.DOWNLOADING
        algorithms = verify.algorithms(ctx.spec, info, ctx.manifest)
        assert info.size is not None
        async with contextlib.AsyncExitStack() as stack:
            hasher = None
            if algorithms:
                hasher = IncrementalHasher(self.part.part_path, algorithms)
                await stack.enter_async_context(hasher)
            await self._drive(hasher)
            await self.part.settle()  # a cancelled stream's last batch may still be on its way
            for _ in range(MAX_REFILLS):
                if not self._refill(info.size):
                    break
                await self._drive(hasher)
                await self.part.settle()
            self._check_on_disk(info.size)
            ctx.stage = Stage.VERIFYING
            if hasher is None:
                return {}
            if self._checks.rehash:  # a liar was caught after its bytes were hashed
                return await hash_file(self.part.part_path, algorithms)
            return await hasher.finish(info.size)

    def _holes(self, size: int) -> RangeSet:
        holes = RangeSet([ByteRange(0, size)] if size else [])
        for rng in self.part.written:
            holes.subtract(rng)
        return holes

    def _refill(self, size: int) -> bool:
        """Bytes the scheduler counts as done but the part file never got (a bug, never an
        input: the hash would fail, or with no digest known the file would be handed over
        with a hole) go back to be fetched again. True when there were any."""
        holes = self._holes(size)
        if not holes:
            return False
        log.error(
            "bytes counted as delivered are not on disk, fetching them again: %s",
            ", ".join(str(h) for h in holes),
        )
        for rng in holes:
            self.scheduler.invalidate(rng)
        ctx = self._ctx
        cause = ev.RefetchCause.NOT_ON_DISK
        ctx.emit(ev.Refetched(at=ctx.at(), ranges=tuple(holes), source_ids=(), cause=cause))
        ctx.stage = Stage.DOWNLOADING
        return True

    def _check_on_disk(self, size: int) -> None:
        holes = self._holes(size)
        if holes:
            raise RuntimeError(
                f"bytes counted as delivered are still not on disk after {MAX_REFILLS} tries: "
                + ", ".join(str(h) for h in holes)
                + " (a bug; the partial file is kept: run the command again to resume)"
            )

    async def _drive(self, hasher: IncrementalHasher | None) -> None:
        """Run streams and checks until the file is complete and checked.

        A failure that concerns the whole download is raised where it happens (in a stream,
        a check, a checkpoint or the loop itself): the task group then cancels everything
        else (cancelled streams still write what they claimed) and the first such error is
        raised here, as itself. Leaving the group waits for the last streams to flush.
        """
        failure: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._loop(hasher)
        except BaseExceptionGroup as group:
            failure = first_error(group)
        finally:
            self._tg = None
            self._streams.clear()
        if failure is not None:
            raise failure

    async def _loop(self, hasher: IncrementalHasher | None) -> None:
        sched, part, spec, clock = self.scheduler, self.part, self._ctx.spec, self._ctx.clock
        last_checkpoint = last_durable = clock()
        durable: asyncio.Task[None] | None = None
        while not self._all_checked():
            if await self._proven_by_digest(hasher):
                break
            now = clock()
            self._apply([*self._on_timer(now), *sched.poll(now)])
            if not self._streams and not sched.is_complete() and not sched.has_usable_source():
                raise NoSourcesLeft(f"every source failed: {self._ctx.last_failure()}")
            self._run_checks.start(self._group)
            await self._wait_for_change(sched.next_deadline(now))
            now = clock()
            if now - last_durable >= spec.durable_interval and (durable is None or durable.done()):
                durable = self._group.create_task(part.checkpoint(durable=True))  # off the loop
                last_durable = last_checkpoint = now
            elif now - last_checkpoint >= spec.checkpoint_interval:
                await part.checkpoint(durable=False)
                last_checkpoint = now
            if hasher is not None:
                await hasher.advance(self._checks.hashable_prefix(part))

    def _on_timer(self, now: float) -> list[Action]:
        """The scheduler's timers (stalled leases revoked, their bytes told as given back)."""
        sched = self.scheduler
        if not sched.any_stalled(now):  # nothing to revoke, nothing to tell
            return sched.on_timer(now)
        with self._telling_lost_leases():
            return sched.on_timer(now)

    @contextlib.contextmanager
    def _telling_lost_leases(self) -> Iterator[None]:
        """Tell (``Refetched``) the bytes that the leases lost inside this block gave back."""
        ctx = self._ctx
        before = refetch.holding(self.scheduler)
        yield
        event = refetch.given_back(before, refetch.holding(self.scheduler), ctx.at())
        if event is not None:
            ctx.emit(event)

    async def _proven_by_digest(self, hasher: IncrementalHasher | None) -> bool:
        """Only sample checks are still out (queued or held) and a whole-file digest proves
        every byte right (``verify.proven_early``): drop them and end the run. Tried once;
        not proven (or not tried: a liar's bytes were hashed), the held checks run to find
        who lied (``IntegrityChecks.release_held``)."""
        only_checks_left = (
            not self._streams
            and not self._checks.idle()
            and self.scheduler.is_complete()
            and self._checks.pieces_ok()
        )
        if not only_checks_left:
            return False
        if hasher is not None and not self._digest_tried and not self._checks.rehash:
            self._digest_tried = True
            await self.part.settle()
            if await verify.proven_early(self._ctx, hasher):
                self._run_checks.drop_samples()
                return True
        self._checks.release_held()
        return False

    def _all_checked(self) -> bool:
        """Complete, and every piece (manifest) or helper stream (sampling) checked."""
        if not self.scheduler.is_complete() or not self._checks.pieces_ok():
            return False
        if self._checks.sampling:  # streams still flushing will queue their checks
            return not self._streams and self._checks.idle()
        return True

    async def _wait_for_change(self, deadline: float | None) -> None:
        """Until a stream ends, a check finishes, the scheduler's ``deadline`` (a stall) or
        the next round of checkpoint and hashing (``HOUSEKEEPING``), whichever comes first."""
        wait = HOUSEKEEPING if deadline is None else deadline - self._ctx.clock()
        self._changed.clear()
        try:
            async with asyncio.timeout(max(0.0, min(HOUSEKEEPING, wait))):
                await self._changed.wait()
        except TimeoutError:
            pass

    # --- carrying out the scheduler's actions --------------------------------------------------

    def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Assign):
                given = ev.EndgameCopy if action.duplicate else ev.Assigned
                self._ctx.emit(
                    given(at=self._ctx.at(), source_id=action.source_id, range=action.range)
                )
                self._streams[action.lease_id] = self._start_stream(action)
            elif isinstance(action, Cancel):
                self._cancel(action)
            elif isinstance(action, Ban):
                self._ctx.banned(action)

    def _cancel(self, action: Cancel) -> None:
        self._ctx.revoked(action)
        task = self._streams.pop(action.lease_id, None)
        if task is not None:
            task.cancel()

    # --- what streams tell (``streams.StreamOwner``) --------------------------------------------

    def _start_stream(self, lease: Assign) -> asyncio.Task[None]:
        stream = stream_lease(
            lease,
            ctx=self._ctx,
            scheduler=self.scheduler,
            part=self.part,
            distrusted=self._checks.distrusted,
            owner=self,
        )
        return self._group.create_task(stream)

    # --- what checks tell (``run_checks.CheckOwner``) ------------------------------------------

    def checked(self) -> None:
        self._changed.set()

    def bad_bytes_verdict(self, carry: Callable[[], list[Action]]) -> None:
        with self._telling_lost_leases():  # a ban revokes the liar's leases in flight
            actions = carry()
        self._apply(actions)

    def revoke(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Cancel):
                self._cancel(action)

    def stream_failed(
        self, lease: Assign, kind: FailureKind, reason: str, retry_after: float | None
    ) -> None:
        now = self._ctx.clock()
        with self._telling_lost_leases():
            actions = self.scheduler.on_failure(
                lease.lease_id, now, kind, reason=reason, retry_after=retry_after
            )
        self._apply_failure(actions)

    def stream_ended(self, lease: Assign, runs: list[ByteRange] | None) -> None:
        if self._streams.get(lease.lease_id) is asyncio.current_task():
            del self._streams[lease.lease_id]
        if runs:  # a helper stream ended having claimed ``runs`` (on disk now): check it
            # a digest known: it proves the file; checks are held for blame (a helper's
            # first stream is checked at once: engine.checks)
            digest = self._digest_known
            holder = lease.source_id in self._ctx.holders
            self._checks.stream_ended(
                lease.source_id, runs, hold=digest and holder, hold_later=digest
            )
        self._changed.set()

    def _apply_failure(self, actions: Sequence[Action]) -> None:
        """What blaming a source entails: its leases revoked, then its ban told."""
        self.revoke(actions)
        for action in actions:
            if isinstance(action, Ban):
                self._ctx.banned(action)
