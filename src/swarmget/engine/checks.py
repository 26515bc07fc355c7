"""Checking the bytes helpers deliver: pieces against a manifest, streams sampled against
the origin.

With a relay, every piece is checked against its manifest as it lands. Otherwise (by
default) every helper stream is *sampled*: once its bytes are on disk, a window of them at
an offset drawn then (by ``random.SystemRandom``) is fetched from the origin and compared.
A helper's first stream gets ``SAMPLE_FIRST_WINDOW`` (or ``verify_sample`` of it, if more);
each later stream what keeps the source's windows at ``verify_sample`` of all it delivered
(``ceil(verify_sample * delivered) - windows so far``), at least ``SAMPLE_MIN_WINDOW``. So
``--verify-sample 0.01`` costs 1 % of the helpers' bytes at the origin, the first windows
included, wherever the streams are long enough for the floor not to bind (a stream of
L bytes: ``verify_sample * L >= SAMPLE_MIN_WINDOW``). Who is blamed when a check fails is
decided in ``core.blame``; ``carry_out`` does what its verdict says (but for the
scheduler's actions: the run's).

What that promises: a helper that corrupts at least one byte in every ``SAMPLE_MIN_WINDOW``
bytes of a stream is caught on that stream, and one that does so in every
``SAMPLE_FIRST_WINDOW`` bytes from its first stream on is caught on its first stream; a
corrupted run of R bytes in a stream of L is caught with probability at least (R + W) / L
per stream (W the window). A helper that corrupts a few bytes of a few streams may escape:
only a digest (``--checksum``, ``Repr-Digest``) or a relay's manifest checks every byte.

When a whole-file digest is known, a LAN holder's stream (fetch once, #15), and every
helper stream but a helper's first, is *held*: its check waits until every byte is in. The
digest then proves the file (the held checks are dropped: no origin bytes spent) or fails,
and the held checks run (``release_held``) to find who lied, with the promise above; the
liar's bytes are fetched again and the digest compared once more. Sampling is then only for
blame, not for proof. A helper's first stream is still checked at once (its
``SAMPLE_FIRST_WINDOW``): a helper that corrupts what it passes on is banned early, before
it delivers its share, instead of its share being fetched again after the digest failed;
the 1 % of its later streams, over the requester's own origin link, is what a digest
saves (about 1 % of the helpers' bytes, 1-1.5 % before the first windows counted in the
share; bench/README §7 "Per source").
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swarmget.core import blame
from swarmget.core import events as ev
from swarmget.core.errors import StorageError
from swarmget.core.manifest import Manifest, PieceVerifier
from swarmget.core.ranges import ByteRange
from swarmget.core.scheduler import Action, Scheduler
from swarmget.engine import refetch
from swarmget.engine.context import DownloadContext
from swarmget.engine.spec import DownloadSpec
from swarmget.hashing import hash_file
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.storage import PartFile

#: the smallest window of a helper stream compared with the origin (DEFAULT_VERIFY_SAMPLE is
#: the share compared; a stream shorter than this is compared whole)
SAMPLE_MIN_WINDOW = 4 * 1024
#: the window for a helper's first stream in a download (a corruptor of every chunk it
#: passes on, up to the helper's 256 KiB origin reads, is caught there)
SAMPLE_FIRST_WINDOW = 256 * 1024
CHECKS_AT_ONCE = 2  # sample checks in flight (extra origin requests) at a time
#: ... once every byte is in: nothing else uses the origin connections then, and each check
#: left is a round trip between the last byte and the verified file
CHECKS_AT_END = 8
CHECK_ATTEMPTS = 4  # origin failures tolerated per check before the download fails


@dataclass
class StreamCheck:
    """A helper stream to sample: what it claimed, and how often the origin failed us."""

    source_id: str
    runs: list[ByteRange]
    window: int  # bytes to compare (at most the run the window falls in)
    attempts: int = 0


class IntegrityChecks:
    """Every check of one download: helper streams waiting to be sampled, the manifest's
    pieces, helpers found lying, and the counts the verification report gives."""

    def __init__(self, spec: DownloadSpec) -> None:
        self._fraction = spec.verify_sample
        self._spec = spec
        self._rng = random.SystemRandom()  # sample windows a helper cannot predict
        self._queue: deque[StreamCheck] = deque()
        self._held: list[StreamCheck] = []  # run only if the whole-file digest fails
        self._first_checked: set[str] = set()  # helpers whose first stream was queued
        self._delivered: dict[str, int] = {}  # bytes of each source's streams queued or held
        self._windows: dict[str, int] = {}  # window bytes given to each source's checks
        self.verifier: PieceVerifier | None = None
        self.running = 0  # sample checks in flight
        self.distrusted: set[str] = set()  # helpers caught sending bad bytes
        self.rehash = False  # the incremental hash may have taken bytes found bad later
        self.helper_streams = 0
        self.sampled_streams = 0
        self.sampled_bytes = 0
        self.skipped_streams = 0  # not sampled: the whole-file digest proved them first
        #: every integrity failure: (what, {source: bytes it contributed})
        self.corrupt_reports: list[tuple[str, dict[str, int]]] = []

    def use_manifest(self, manifest: Manifest | None) -> None:
        """A segmented run begins: its pieces are checked against ``manifest``, if any."""
        self.verifier = None if manifest is None else PieceVerifier(manifest)

    @property
    def sampling(self) -> bool:
        return self._spec.sampling(manifest=self.verifier is not None)

    def stream_ended(
        self, source_id: str, runs: list[ByteRange], *, hold: bool = False, hold_later: bool = False
    ) -> bool:
        """A helper stream ended having claimed ``runs`` (on disk now): queue its check
        (``hold``: keep it until ``release_held``; ``hold_later``: so, unless it is the
        source's first stream; see the module docstring). True if one was queued or held."""
        self.helper_streams += 1
        if not self.sampling or source_id in self.distrusted:
            return False
        first = source_id not in self._first_checked
        self._first_checked.add(source_id)
        window = self._window_for(source_id, sum(len(r) for r in runs), first=first)
        held = hold or (hold_later and not first)
        (self._held.append if held else self._queue.append)(StreamCheck(source_id, runs, window))
        return True

    def _window_for(self, source_id: str, length: int, *, first: bool) -> int:
        """The window of a stream of ``length`` bytes from ``source_id``: what keeps the
        source's windows at ``verify_sample`` of its bytes, at least the floor (the first
        stream's or ``SAMPLE_MIN_WINDOW``), at most the stream (see the module docstring)."""
        delivered = self._delivered.get(source_id, 0) + length
        given = self._windows.get(source_id, 0)
        floor = SAMPLE_FIRST_WINDOW if first else SAMPLE_MIN_WINDOW
        window = min(length, max(floor, math.ceil(delivered * self._fraction) - given))
        self._delivered[source_id] = delivered
        self._windows[source_id] = given + window
        return window

    def release_held(self) -> int:
        """The whole-file digest did not prove the file: the held checks are queued (how
        many)."""
        held, self._held = self._held, []
        self._queue.extend(held)
        return len(held)

    @property
    def held(self) -> int:
        """Checks held until the whole-file digest is compared."""
        return len(self._held)

    def retry_later(self, check: StreamCheck) -> bool:
        """The origin failed us while checking: queue it again, unless it failed too often."""
        check.attempts += 1
        if check.attempts >= CHECK_ATTEMPTS:
            return False
        self._queue.append(check)
        return True

    def to_start(self, *, at_end: bool = False) -> list[StreamCheck]:
        """The queued checks to start now (counted as running): ``CHECKS_AT_ONCE`` in
        flight while the download runs, ``CHECKS_AT_END`` once every byte is in."""
        started = []
        limit = CHECKS_AT_END if at_end else CHECKS_AT_ONCE
        while self._queue and self.running < limit:
            check = self._queue.popleft()
            if check.source_id not in self.distrusted:
                self.running += 1
                started.append(check)
        return started

    def window(self, check: StreamCheck) -> ByteRange:
        """Where ``check``'s window lies: drawn now, ``check.window`` bytes (at most the run
        it falls in)."""
        return sample_window(check.runs, 0.0, self._rng, check.window)

    def sampled(self, window: ByteRange) -> None:
        self.sampled_streams += 1
        self.sampled_bytes += window.length

    def drop_pending(self) -> None:
        """The file was proven right by its digest: the queued checks are not needed (those
        in flight are cancelled by the run; each counts itself out)."""
        self.skipped_streams += len(self._queue) + len(self._held) + self.running
        self._queue.clear()
        self._held.clear()

    def idle(self) -> bool:
        """No sample check queued, held or in flight."""
        return not (self._queue or self._held or self.running)

    def pieces_ok(self) -> bool:
        return self.verifier is None or self.verifier.all_ok()

    def hashable_prefix(self, part: PartFile) -> int:
        """Only bytes already checked against the manifest may enter the whole-file hash."""
        prefix = part.written_prefix()
        return prefix if self.verifier is None else min(prefix, self.verifier.verified_prefix())


def delivered_by(scheduler: Scheduler, source_id: str, now: float) -> tuple[ByteRange, ...]:
    """Every range ``source_id`` delivered (claimed) in this run."""
    sources = scheduler.statistics(now).sources
    return next(s.segments for s in sources if s.source_id == source_id)


def carry_out(
    verdict: blame.Verdict,
    fact: blame.BadBytes,
    *,
    ctx: DownloadContext,
    checks: IntegrityChecks,
    scheduler: Scheduler,
    part: PartFile,
) -> list[Action]:
    """What ``verdict`` entails, but for the scheduler's actions (returned, for the run to
    carry out): told (``BadData``, ``Refetched``), distrusted, fetched again, banned or
    struck. The part file forgets the bytes it must fetch again."""
    event = _bad_data_event(fact, tuple(verdict.blamed), ctx.at())
    why = ev.describe(event)
    checks.corrupt_reports.append((why, dict(verdict.blamed)))
    ctx.emit(event)
    checks.distrusted.update(verdict.distrust)
    checks.rehash = checks.rehash or verdict.rehash
    for rng in verdict.refetch:
        scheduler.invalidate(rng)
        part.forget(rng)
    if verdict.refetch:
        ctx.emit(refetch.bad_data(verdict.refetch, tuple(verdict.blamed), ctx.at()))
    actions: list[Action] = []
    for source_id in verdict.ban:
        actions += scheduler.ban(source_id, f"sent bad data: {why}")
    for source_id in verdict.strike:
        actions += scheduler.strike(source_id, ctx.clock(), f"bad data: {why}")
    return actions


def _bad_data_event(fact: blame.BadBytes, blamed: tuple[str, ...], at: float) -> ev.BadData:
    if isinstance(fact, blame.PieceFailed):
        check, rng, piece = ev.BadDataCheck.PIECE_HASH, fact.range, fact.piece
    else:
        check, rng, piece = ev.BadDataCheck.SAMPLE, fact.window, None
    return ev.BadData(at=at, source_ids=blamed, range=rng, check=check, piece=piece)


def extend_runs(runs: list[ByteRange], write: ByteRange) -> None:
    if runs and runs[-1].end == write.start:
        runs[-1] = ByteRange(runs[-1].start, write.end)
    else:
        runs.append(write)


def sample_window(
    runs: Sequence[ByteRange],
    fraction: float,
    rng: random.Random,
    minimum: int = SAMPLE_MIN_WINDOW,
) -> ByteRange:
    """A window of ``max(minimum, fraction * total)`` bytes (at most the run it falls in)
    around a byte of ``runs`` drawn uniformly: every byte may be picked."""
    total = sum(len(r) for r in runs)
    if not total:
        raise ValueError("nothing to sample")
    want = max(minimum, math.ceil(total * fraction))
    pick = rng.randrange(total)
    for r in runs:
        if pick < len(r):
            length = min(want, len(r))
            start = min(max(r.start, r.start + pick - length // 2), r.end - length)
            return ByteRange(start, start + length)
        pick -= len(r)
    raise AssertionError("unreachable")


async def same_as_origin(
    origin: OriginClient, info: OriginInfo, part: PartFile, rng: ByteRange
) -> bool:
    """Are the bytes of ``rng`` on disk the origin's? (SourceError: the origin failed us.)"""
    chunks = []
    async with origin.open_range(info, rng) as body:
        async for chunk in body:
            chunks.append(chunk)
    try:
        theirs = await asyncio.to_thread(_pread, part.part_path, rng)
    except OSError as exc:
        raise StorageError(f"cannot read back {rng} of {part.part_path}: {exc}") from exc
    return b"".join(chunks) == theirs


async def piece_matches(part: PartFile, verifier: PieceVerifier, index: int) -> bool:
    """Does piece ``index`` on disk have the manifest's digest?"""
    rng = verifier.manifest.piece_range(index)
    got = await hash_file(part.part_path, ["sha256"], start=rng.start, end=rng.end)
    return got["sha256"] == verifier.expected(index)


def _pread(path: Path, rng: ByteRange) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, rng.length, rng.start)
    finally:
        os.close(fd)
