"""The checks of one segmented run, as tasks in its group: helper streams sampled against
the origin, and pieces against a relay's manifest (``checks.py`` has the rules and the
bookkeeping; what a failed check means is decided by ``core.blame``).

A check that fails for the whole download (the origin cannot be asked any more, the file
changed, storage) raises in its task: the run's task group ends the run with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from swarmget.core import blame
from swarmget.core.byte_sources import SourceKind
from swarmget.core.errors import DownloadError, SourceError
from swarmget.core.scheduler import Action, Scheduler
from swarmget.engine.checks import (
    IntegrityChecks,
    StreamCheck,
    carry_out,
    delivered_by,
    piece_matches,
    same_as_origin,
)
from swarmget.engine.context import DownloadContext
from swarmget.storage import PartFile


class CheckOwner(Protocol):
    """What checks tell the run that started them."""

    def checked(self) -> None:
        """A check finished (the run looks at its state again)."""

    def bad_bytes_verdict(self, carry: Callable[[], list[Action]]) -> None:
        """Bytes failed a check: ``carry()`` carries out the verdict and returns the
        scheduler's actions, which the run applies (telling the leases lost)."""


class RunChecks:
    """Starts, and on a digest's proof drops, the checks of one run."""

    def __init__(
        self,
        ctx: DownloadContext,
        checks: IntegrityChecks,
        scheduler: Scheduler,
        part: PartFile,
        *,
        owner: CheckOwner,
    ) -> None:
        self._ctx = ctx
        self._checks = checks
        self._scheduler = scheduler
        self._part = part
        self._owner = owner
        self._info = ctx.pinned()
        self._samples: set[asyncio.Task[None]] = set()  # sample checks in flight

    def start(self, group: asyncio.TaskGroup) -> None:
        """The checks due now, each a task of ``group`` (more at once when every byte is
        in: then they are all that stands between the last byte and the verified file)."""
        for check in self._checks.to_start(at_end=self._scheduler.is_complete()):
            task = group.create_task(self._sample_stream(check))
            self._samples.add(task)
            task.add_done_callback(self._samples.discard)
        verifier = self._checks.verifier
        if verifier is None:
            return
        for index in verifier.ready(self._part.written):
            verifier.start([index])
            group.create_task(self._check_piece(index))

    def drop_samples(self) -> None:
        """The whole-file digest proved every byte: the sample checks are not needed."""
        for task in self._samples:
            task.cancel()
        self._checks.drop_pending()

    async def _check_piece(self, index: int) -> None:
        verifier = self._checks.verifier
        assert verifier is not None
        try:
            good = await piece_matches(self._part, verifier, index)
        finally:  # an error (storage) goes on up: it ends the run
            self._owner.checked()
        if good:
            verifier.passed(index)
        else:
            verifier.failed(index)
            rng = verifier.manifest.piece_range(index)
            contributors = self._scheduler.contributors(rng)
            self._bad_bytes(blame.PieceFailed(piece=index, range=rng, contributors=contributors))

    async def _sample_stream(self, check: StreamCheck) -> None:
        """Compare a window of a helper stream's bytes with the origin's; ban a liar."""
        window = self._checks.window(check)
        try:
            same = await same_as_origin(self._ctx.origin, self._info, self._part, window)
        except SourceError as exc:
            if self._checks.retry_later(check):  # the origin had a bad moment: again later
                return
            reason = f"cannot check {check.source_id}'s bytes against the origin: {exc}"
            raise DownloadError(reason) from exc
        finally:  # other errors (the file changed, storage) go on up: they end the run
            self._checks.running -= 1
            self._owner.checked()
        self._checks.sampled(window)
        self._ctx.received(SourceKind.CHECK, window.length)
        if not same:
            self._bad_bytes(
                blame.SampleDiffered(
                    source_id=check.source_id,
                    window=window,
                    delivered=delivered_by(self._scheduler, check.source_id, self._ctx.clock()),
                    distrusted=check.source_id in self._checks.distrusted,
                )
            )

    def _bad_bytes(self, fact: blame.BadBytes) -> None:
        """Carry out the verdict on bytes that failed a check (``core.blame`` decides)."""
        verdict = blame.judge(fact)
        if verdict.nothing:
            return
        self._owner.bad_bytes_verdict(
            lambda: carry_out(
                verdict,
                fact,
                ctx=self._ctx,
                checks=self._checks,
                scheduler=self._scheduler,
                part=self._part,
            )
        )
