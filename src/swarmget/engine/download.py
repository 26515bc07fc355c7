"""The download engine: the asyncio driver of the core scheduler.

One ``Download`` turns a URL into a verified file. It probes the origin, opens the part file
(resuming an earlier run of the same download), then loops: ask the scheduler for actions,
start one stream task per ``Assign``, cancel streams on ``Cancel``, and sleep until a stream
reports or a timer is due. Stream tasks read chunks, ask the scheduler which bytes they may
write (``on_data``), collect them into >= 1 MiB batches and ``pwrite`` them in place. Claimed
bytes are always flushed, even when the stream is cancelled, so the scheduler's ``done`` and
the file agree. A background task hashes the contiguous prefix of the file while it grows,
so only the tail is left to hash when the last byte lands.

Helpers are not trusted with the bytes they deliver. With a relay, every piece is checked
against its manifest as it lands. Otherwise (by default) every helper stream is *sampled*:
once its bytes are on disk, a window of ``max(SAMPLE_MIN_WINDOW, verify_sample * length)``
bytes (``SAMPLE_FIRST_WINDOW`` for a helper's first stream) at an offset drawn then (by
``random.SystemRandom``) is fetched from the origin and compared. A mismatch bans the helper
and sends everything it delivered back to be fetched again. The download is done only when
every stream has been checked; the result says how (``VerificationReport``).

What that promises: a helper that corrupts at least one byte in every ``SAMPLE_MIN_WINDOW``
bytes of a stream is caught on that stream, and one that does so in every
``SAMPLE_FIRST_WINDOW`` bytes from its first stream on is caught on its first stream; a
corrupted run of R bytes in a stream of L is caught with probability at least (R + W) / L
per stream (W the window). A helper that corrupts a few bytes of a few streams may escape:
only a digest (``--checksum``, ``Repr-Digest``) or a relay's manifest checks every byte.

Sources are anything with ``open_range`` (``RangeSource``): the origin itself here, helper
nodes in the swarm. Errors from a stream are blamed on its source (retry, back off, ban);
errors that concern the whole download (``OriginChanged``, ``StorageError``) stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from swarmget.core import events as ev
from swarmget.core.digests import Digest, DigestSet
from swarmget.core.errors import (
    ChecksumMismatch,
    DownloadError,
    NoSourcesLeft,
    OriginChanged,
    OriginUnusable,
    RangesIgnored,
    SourceBroken,
    SourceError,
    SourceRateLimited,
    SourceRetryable,
    StorageError,
    SwarmgetError,
)
from swarmget.core.filenames import choose_filename
from swarmget.core.manifest import Manifest, PieceVerifier
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.scheduler import (
    Action,
    Assign,
    Ban,
    Cancel,
    FailureKind,
    Scheduler,
    SchedulerConfig,
    SchedulerStats,
    SourceInfo,
)
from swarmget.core.urls import redact_url
from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE as DEFAULT_VERIFY_SAMPLE
from swarmget.core.verification import Verification, VerificationReport
from swarmget.hashing import IncrementalHasher, hash_file
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.storage import (
    PartFile,
    ResumeKey,
    check_destination,
    check_size,
    open_part_file,
    stored_resume_key,
)

if TYPE_CHECKING:
    from swarmget.net.relay_client import RelayClient

MiB = 1024 * 1024
WRITE_BATCH = 1 * MiB
log = logging.getLogger("swarmget.engine")
_PROBE_ATTEMPTS = 4
#: the smallest window of a helper stream compared with the origin (DEFAULT_VERIFY_SAMPLE is
#: the share compared; a stream shorter than this is compared whole)
SAMPLE_MIN_WINDOW = 4 * 1024
#: the window for a helper's first stream in a download (a corruptor of every chunk it
#: passes on, up to the helper's 256 KiB origin reads, is caught there)
SAMPLE_FIRST_WINDOW = 256 * 1024
_CHECKS_AT_ONCE = 2  # sample checks in flight (extra origin requests) at a time
_CHECK_ATTEMPTS = 4  # origin failures tolerated per check before the download fails
_RESTARTS = 3


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
    """The origin server itself, fetched directly over ``client``."""

    client: OriginClient
    slots: int
    source_id: str = "origin"

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        return self.client.open_range(info, rng)


@dataclass(frozen=True, kw_only=True)
class DownloadSpec:
    """What the user asked for, validated at the edge (CLI, HTTP API)."""

    url: str
    output: Path | None = None  # a file path, or a directory to put the file in
    checksums: tuple[Digest, ...] = ()
    force: bool = False
    restart_if_changed: bool = False
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    #: record progress (survives the process being killed) this often
    checkpoint_interval: float = 1.0
    #: fdatasync the data (survives a crash of the machine) this often
    durable_interval: float = 30.0
    #: fsync the finished file before the rename (curl, wget and aria2 do not)
    fsync: bool = False
    #: refuse (before writing anything) a file larger than this many bytes; None: no limit
    max_size: int | None = None
    #: without a manifest: compare this share (at least ``SAMPLE_MIN_WINDOW`` bytes) of
    #: every helper stream with the origin (0: trust helpers; the result then says so)
    verify_sample: float = DEFAULT_VERIFY_SAMPLE

    def __post_init__(self) -> None:
        if not 0.0 <= self.verify_sample <= 1.0:
            raise ValueError("verify_sample must be between 0 and 1")


class Stage(enum.Enum):
    PROBING = "probing"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot for progress displays."""

    stage: Stage
    url: str
    dest: Path | None
    size: int | None
    done: int
    rate: float
    elapsed: float
    mode: str  # "segmented" | "single-stream"
    resumed_bytes: int
    sources: tuple[SourceInfo, ...]

    @property
    def eta(self) -> float | None:
        if self.size is None or self.rate <= 0:
            return None
        return (self.size - self.done) / self.rate


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    elapsed: float
    mode: str
    resumed_bytes: int
    fetched_bytes: int  # bytes received from all sources in this run (incl. duplicates)
    digests: dict[str, str]  # what we computed (and checked, where a digest was known)
    verified: tuple[str, ...]  # which known digests matched
    sources: tuple[SourceInfo, ...]
    last_byte_to_done: float  # seconds from the last byte received to the file in place
    #: how the bytes were checked (digests, manifest, sampled helper streams, or nothing)
    verification: VerificationReport = field(default_factory=VerificationReport)


class _BatchWriter:
    """Collects contiguous claimed chunks into >= 1 MiB ``pwritev``s (no copying)."""

    def __init__(self, part: PartFile) -> None:
        self._part = part
        self._chunks: list[memoryview] = []
        self._start = 0
        self._length = 0

    async def add(self, offset: int, data: memoryview) -> None:
        if self._chunks and offset != self._start + self._length:
            await self.flush()
        if not self._chunks:
            self._start = offset
        self._chunks.append(data)
        self._length += data.nbytes
        if self._length >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        if self._chunks:
            chunks, start = self._chunks, self._start
            self._chunks, self._length = [], 0
            await self._part.write_chunks_at(start, chunks)

    def discard(self) -> None:
        """Drop what was collected and not written (it came from a source found lying)."""
        self._chunks, self._length = [], 0


class Download:
    """One download, from URL to verified file. See the module docstring."""

    def __init__(
        self,
        spec: DownloadSpec,
        origin: OriginClient,
        *,
        sources: Sequence[RangeSource] = (),
        relay: RelayClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        admit: Callable[[OriginInfo], Awaitable[None]] | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
    ) -> None:
        """``admit`` is awaited with what each probe pinned, before a byte is written; it
        raises (from the error tree) to refuse the file, e.g. one too large to hold.
        ``on_event`` is called with every event as it happens (counters count there)."""
        self._on_event = on_event
        self.spec = spec
        self._admit = admit
        self._origin = origin
        self._sources = {s.source_id: s for s in sources}
        self._clock = clock
        self._t0 = clock()
        self.events: deque[ev.Event] = deque(maxlen=2000)  # the latest, for displays
        self._stage = Stage.PROBING
        self._info: OriginInfo | None = None
        self._dest: Path | None = None
        self._sched: Scheduler | None = None
        self._reassigned_before = 0  # by the schedulers of earlier attempts (restarts)
        self._mode = "segmented"
        self._resumed = 0
        self._streamed = 0  # single-stream mode: bytes so far
        self._fatal: SwarmgetError | None = None
        self._wake = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._last_byte_at = 0.0
        self._t_stream: float | None = None
        self._relay = relay
        self._manifest: Manifest | None = None
        self._verifier: PieceVerifier | None = None
        self._rng = random.SystemRandom()  # sample windows a helper cannot predict
        self._checks: deque[_StreamCheck] = deque()  # helper streams to sample
        self._checks_running = 0
        self._distrusted: set[str] = set()  # helpers caught sending bad bytes
        self._rehash = False  # the incremental hash may have taken bytes found bad later
        self._helper_streams = 0
        self._first_checked: set[str] = set()  # helpers whose first stream was queued
        self._sampled_streams = 0
        self._sampled_bytes = 0
        #: every integrity failure: (what, {source: bytes it contributed})
        self.corrupt_reports: list[tuple[str, dict[str, int]]] = []

    # --- public --------------------------------------------------------------------------------

    def scheduler_statistics(self) -> tuple[float, SchedulerStats] | None:
        """The scheduler's snapshot (leases in flight, endgame ...) and the engine clock's
        ``now`` it was taken at; None before the segmented phase."""
        sched = self._sched
        if sched is None:
            return None
        now = self._clock()
        return now, sched.statistics(now)

    def reassigned_bytes(self) -> int:
        """Bytes given back to be fetched again (failures, stalls, bad data), over every
        attempt of this download (it never goes down: a Prometheus counter reads it)."""
        return self._reassigned_before + self._current_reassigned()

    def _current_reassigned(self) -> int:
        sched = self._sched
        return 0 if sched is None else sched.statistics(self._clock()).reassigned_bytes

    def _use_scheduler(self, sched: Scheduler | None) -> None:
        """Run with ``sched`` from now on, keeping what the previous one gave back."""
        self._reassigned_before += self._current_reassigned()
        self._sched = sched

    @property
    def pinned(self) -> OriginInfo | None:
        """What the probe pinned (URL, size, validator), once probed."""
        return self._info

    def statistics(self) -> DownloadProgress:
        now = self._clock()
        sched, info = self._sched, self._info
        stats = sched.statistics(now) if sched is not None else None
        done = stats.done if stats is not None else self._streamed
        sources = stats.sources if stats is not None else ()
        return DownloadProgress(
            stage=self._stage,
            url=self.spec.url,
            dest=self._dest,
            size=info.size if info is not None else None,
            done=done,
            rate=sum(s.rate for s in sources) if sources else self._stream_rate(now),
            elapsed=now - self._t0,
            mode=self._mode,
            resumed_bytes=self._resumed,
            sources=sources,
        )

    async def run(self) -> DownloadResult:
        """Download, verify and move the file into place. Raises from the error tree."""
        try:
            result = await self._run()
        except BaseException as exc:
            self._stage = Stage.FAILED
            code = exc.code if isinstance(exc, SwarmgetError) else type(exc).__name__
            self._event(ev.Failed(at=self._at(), code=code, message=str(exc) or type(exc).__name__))
            raise
        self._stage = Stage.DONE
        return result

    # --- phases --------------------------------------------------------------------------------

    async def _run(self) -> DownloadResult:
        info = await self._probe()
        for _attempt in range(_RESTARTS):
            dest = self._resolve_dest(info)
            if not (info.accepts_ranges and info.size is not None):
                return await self._single_stream(info, dest)
            try:
                return await self._segmented(info, dest)
            except _RangesIgnoredMidway:
                return await self._single_stream(info, dest)
            except OriginChanged as exc:
                if not self.spec.restart_if_changed:
                    raise OriginChanged(
                        f"the file changed on the server during the download ({exc}); the "
                        f"partial data is kept in {dest}.part: re-run with "
                        "--restart-if-changed to start over"
                    ) from exc
                reason = f"the file changed on the server: {exc}"
                self._event(ev.Restarted(at=self._at(), reason=reason))
                info = await self._probe()
        shown = redact_url(self.spec.url)
        raise OriginChanged(f"{shown} kept changing while downloading; giving up")

    async def _probe(self) -> OriginInfo:
        self._stage = Stage.PROBING
        delay = 0.5
        for attempt in range(_PROBE_ATTEMPTS):
            try:
                info = await self._probe_once()
            except SourceRateLimited as exc:
                if attempt == _PROBE_ATTEMPTS - 1:
                    raise DownloadError(f"origin keeps refusing: {exc}") from exc
                await asyncio.sleep(min(exc.retry_after or delay, 60.0))
            except SourceError as exc:
                if attempt == _PROBE_ATTEMPTS - 1:
                    raise DownloadError(f"cannot reach the origin: {exc}") from exc
                await asyncio.sleep(delay)
            else:
                if self._admit is not None:
                    await self._admit(info)
                self._info = info
                return info
            delay *= 2
        raise AssertionError("unreachable")

    async def _probe_once(self) -> OriginInfo:
        if self._relay is None:
            return await self._origin.probe(self.spec.url)
        blob = await self._relay.fetch(self.spec.url)
        self._manifest = blob.manifest
        self._event(ev.RelayUsed(at=self._at(), hit=blob.hit))
        info = await self._origin.probe(blob.url)
        if info.size != blob.manifest.size:
            raise OriginUnusable(
                f"the relay's blob is {info.size} bytes, its manifest says {blob.manifest.size}"
            )
        name = choose_filename(None, self.spec.url, self.spec.url)
        return dataclasses.replace(info, filename=name, digests=())

    def _resolve_dest(self, info: OriginInfo) -> Path:
        out = self.spec.output
        named_by_user = out is not None and not out.is_dir()
        if out is None:
            dest = Path.cwd() / info.filename
        elif out.is_dir():
            dest = out / info.filename
        else:
            dest = out
        check_destination(dest, force=self.spec.force, replace_link=named_by_user)
        check_size(dest, info.size, self.spec.max_size)
        self._dest = dest
        return dest

    async def _check_resume(self, key: ResumeKey, dest: Path) -> None:
        stored = await stored_resume_key(dest)
        if stored is None or key.allows_resume_from(stored) or stored.url != key.url:
            return
        if self.spec.restart_if_changed:
            reason = "the file changed since the partial download"
            self._event(ev.Restarted(at=self._at(), reason=reason))
            return
        raise OriginChanged(
            f"the file changed on the server since the partial download of {dest.name} "
            f"(size/validator differ); re-run with --restart-if-changed to start over "
            f"(the partial data is kept in {dest}.part)"
        )

    async def _segmented(self, info: OriginInfo, dest: Path) -> DownloadResult:
        assert info.size is not None
        self._mode = "segmented"
        self._fatal = None  # a previous attempt's reason to stop is not this one's
        key = _resume_key(info)
        await self._check_resume(key, dest)
        part = await open_part_file(dest, key, force=self.spec.force, max_size=self.spec.max_size)
        async with part:
            self._resumed = part.written.total()
            if self._resumed:
                self._event(ev.Resumed(at=self._at(), bytes_on_disk=self._resumed))
            config = self.spec.scheduler
            if self._manifest is not None:
                self._verifier = PieceVerifier(self._manifest)
                config = dataclasses.replace(config, align=self._manifest.piece_size)
            sched = Scheduler(info.size, config, done=part.written)
            self._use_scheduler(sched)
            now = self._clock()
            for src in self._sources.values():
                sched.add_source(src.source_id, src.slots, now)
            digests = await self._drive_and_hash(sched, part, info)
            return await self._finish(part, info, digests)

    async def _drive_and_hash(
        self, sched: Scheduler, part: PartFile, info: OriginInfo
    ) -> dict[str, str]:
        self._stage = Stage.DOWNLOADING
        algorithms = self._algorithms(info)
        assert info.size is not None
        async with contextlib.AsyncExitStack() as stack:
            hasher = None
            if algorithms:
                hasher = IncrementalHasher(part.part_path, algorithms)
                await stack.enter_async_context(hasher)
            failure = await self._drive(sched, part, hasher)
            if failure is not None:
                raise failure
            self._stage = Stage.VERIFYING
            await part.settle()  # a cancelled stream's last batch may still be on its way
            if hasher is None:
                return {}
            if self._rehash:  # a liar was caught after its bytes were hashed: start over
                return await hash_file(part.part_path, algorithms)
            return await hasher.finish(info.size)

    async def _drive(
        self, sched: Scheduler, part: PartFile, hasher: IncrementalHasher | None
    ) -> BaseException | None:
        """Run streams until the file is complete; return the error that stopped it, if any."""
        failure: BaseException | None = None
        async with asyncio.TaskGroup() as tg:
            try:
                await self._loop(sched, part, hasher, tg)
            except (SwarmgetError, asyncio.CancelledError) as exc:
                failure = exc
            finally:
                for task in self._tasks.values():
                    task.cancel()
        self._tasks.clear()
        if isinstance(failure, asyncio.CancelledError):
            raise failure
        return failure

    async def _loop(
        self,
        sched: Scheduler,
        part: PartFile,
        hasher: IncrementalHasher | None,
        tg: asyncio.TaskGroup,
    ) -> None:
        last_checkpoint = last_durable = self._clock()
        durable: asyncio.Task[None] | None = None
        while not self._all_checked(sched):
            now = self._clock()
            self._apply(sched, part, tg, [*sched.on_timer(now), *sched.poll(now)])
            if self._fatal is not None:
                raise self._fatal
            if not self._tasks and not sched.is_complete() and not sched.has_usable_source():
                raise NoSourcesLeft(f"every source failed: {self._last_failure()}")
            self._start_checks(sched, part, tg)
            await self._sleep_until(sched.next_deadline(now))
            now = self._clock()
            if now - last_durable >= self.spec.durable_interval and (
                durable is None or durable.done()
            ):
                durable = tg.create_task(self._durable_checkpoint(part))  # off the loop's path
                last_durable = last_checkpoint = now
            elif now - last_checkpoint >= self.spec.checkpoint_interval:
                await part.checkpoint(durable=False)
                last_checkpoint = now
            if hasher is not None:
                await hasher.advance(self._hashable_prefix(part))
        # the last streams flush their final batches as they finish
        while self._tasks:
            await self._sleep_until(None)
            if self._fatal is not None:
                raise self._fatal

    # --- integrity: pieces checked against a manifest -------------------------------------------

    def _all_checked(self, sched: Scheduler) -> bool:
        """Complete, and every piece (manifest) or helper stream (sampling) checked."""
        verifier = self._verifier
        if not sched.is_complete() or not (verifier is None or verifier.all_ok()):
            return False
        if self._sampling():  # streams still flushing will queue their checks
            return not (self._tasks or self._checks or self._checks_running)
        return True

    def _hashable_prefix(self, part: PartFile) -> int:
        """Only bytes already checked against the manifest may enter the whole-file hash."""
        prefix = part.written_prefix()
        return prefix if self._verifier is None else min(prefix, self._verifier.verified_prefix())

    def _start_checks(self, sched: Scheduler, part: PartFile, tg: asyncio.TaskGroup) -> None:
        while self._checks and self._checks_running < _CHECKS_AT_ONCE:
            check = self._checks.popleft()
            if check.source_id not in self._distrusted:
                self._checks_running += 1
                tg.create_task(self._sample_stream(sched, part, tg, check))
        verifier = self._verifier
        if verifier is None:
            return
        for index in verifier.ready(part.written):
            verifier.start([index])
            tg.create_task(self._check_piece(sched, part, tg, index))

    async def _check_piece(
        self, sched: Scheduler, part: PartFile, tg: asyncio.TaskGroup, index: int
    ) -> None:
        verifier = self._verifier
        assert verifier is not None
        rng = verifier.manifest.piece_range(index)
        try:
            got = await hash_file(part.part_path, ["sha256"], start=rng.start, end=rng.end)
        except SwarmgetError as exc:
            self._fatal = self._fatal or exc
            self._wake.set()
            return
        if got["sha256"] == verifier.expected(index):
            verifier.passed(index)
        else:
            verifier.failed(index)
            self._reject(sched, part, tg, rng, index)
        self._wake.set()

    def _reject(
        self, sched: Scheduler, part: PartFile, tg: asyncio.TaskGroup, rng: ByteRange, piece: int
    ) -> None:
        """Bad bytes: fetch them again elsewhere; ban who sent them (strike, if several)."""
        culprits = sched.contributors(rng)
        sched.invalidate(rng)
        part.forget(rng)
        event = ev.BadData(
            at=self._at(),
            source_ids=tuple(culprits),
            range=rng,
            check=ev.BadDataCheck.PIECE_HASH,
            piece=piece,
        )
        why = ev.describe(event)
        self.corrupt_reports.append((why, dict(culprits)))
        self._event(event)
        actions: list[Action] = []
        if len(culprits) == 1:
            (source_id,) = culprits
            actions += sched.ban(source_id, f"sent bad data: {why}")
        else:
            for source_id in culprits:
                actions += sched.strike(source_id, self._clock(), f"bad data: {why}")
        self._apply(sched, part, tg, actions)

    # --- integrity: sampling every helper stream against the origin -----------------------------

    def _sampling(self) -> bool:
        return self.spec.verify_sample > 0 and self._manifest is None

    def _stream_ended(self, source_id: str, runs: list[ByteRange]) -> None:
        """A helper stream ended having claimed ``runs`` (on disk now): queue its check."""
        self._helper_streams += 1
        if self._sampling() and source_id not in self._distrusted:
            first = source_id not in self._first_checked
            self._first_checked.add(source_id)
            window = SAMPLE_FIRST_WINDOW if first else SAMPLE_MIN_WINDOW
            self._checks.append(_StreamCheck(source_id, runs, window))
            self._wake.set()

    async def _sample_stream(
        self, sched: Scheduler, part: PartFile, tg: asyncio.TaskGroup, check: _StreamCheck
    ) -> None:
        """Compare a window of a helper stream's bytes with the origin's; ban a liar."""
        info = self._info
        assert info is not None
        window = sample_window(check.runs, self.spec.verify_sample, self._rng, check.window)
        try:
            same = await self._same_bytes(info, part, window)
        except SourceError as exc:
            check.attempts += 1
            if check.attempts < _CHECK_ATTEMPTS:
                self._checks.append(check)  # the origin is having a bad moment: again later
            else:
                reason = f"cannot check {check.source_id}'s bytes against the origin: {exc}"
                self._fatal = self._fatal or DownloadError(reason)
            return
        except SwarmgetError as exc:  # the file changed on the server, a storage error ...
            self._fatal = self._fatal or exc
            return
        finally:
            self._checks_running -= 1
            self._wake.set()
        self._sampled_streams += 1
        self._sampled_bytes += window.length
        if not same and check.source_id not in self._distrusted:
            self._ban_liar(sched, part, tg, check.source_id, window)

    async def _same_bytes(self, info: OriginInfo, part: PartFile, rng: ByteRange) -> bool:
        chunks = []
        async with self._origin.open_range(info, rng) as body:
            async for chunk in body:
                chunks.append(chunk)
        try:
            theirs = await asyncio.to_thread(_pread, part.part_path, rng)
        except OSError as exc:
            raise StorageError(f"cannot read back {rng} of {part.part_path}: {exc}") from exc
        return b"".join(chunks) == theirs

    def _ban_liar(
        self,
        sched: Scheduler,
        part: PartFile,
        tg: asyncio.TaskGroup,
        source_id: str,
        rng: ByteRange,
    ) -> None:
        """``source_id`` sent bytes that differ from the origin's: ban it and fetch everything
        it delivered again (its streams still running write nothing more)."""
        event = ev.BadData(
            at=self._at(), source_ids=(source_id,), range=rng, check=ev.BadDataCheck.SAMPLE
        )
        why = ev.describe(event)
        delivered = sched.statistics(self._clock()).sources
        segments = next(s.segments for s in delivered if s.source_id == source_id)
        self.corrupt_reports.append((why, {source_id: sum(len(r) for r in segments)}))
        self._event(event)
        self._distrusted.add(source_id)
        self._rehash = True
        actions = sched.ban(source_id, f"sent bad data: {why}")
        for segment in segments:  # everything it sent is suspect
            sched.invalidate(segment)
            part.forget(segment)
        self._apply(sched, part, tg, actions)

    async def _durable_checkpoint(self, part: PartFile) -> None:
        try:
            await part.checkpoint(durable=True)
        except SwarmgetError as exc:
            self._fatal = self._fatal or exc
            self._wake.set()

    async def _sleep_until(self, deadline: float | None) -> None:
        timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - self._clock()))
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _finish(
        self, part: PartFile, info: OriginInfo, digests: dict[str, str]
    ) -> DownloadResult:
        verified = self._verify(info, digests, part.part_path)
        path = await part.finalize(sync=self.spec.fsync)
        self._event(ev.Verified(at=self._at(), path=str(path), algorithms=verified))
        sched = self._sched
        sources = sched.statistics(self._clock()).sources if sched is not None else ()
        own = self._own_sources()
        assert info.size is not None
        return DownloadResult(
            path=path,
            size=info.size,
            elapsed=self._clock() - self._t0,
            mode=self._mode,
            resumed_bytes=self._resumed,
            fetched_bytes=sum(s.received for s in sources) or self._streamed,
            digests=digests,
            verified=verified,
            sources=sources,
            last_byte_to_done=self._clock() - (self._last_byte_at or self._clock()),
            verification=self._report(
                info, sum(s.claimed for s in sources if s.source_id not in own)
            ),
        )

    def _own_sources(self) -> set[str]:
        return {i for i, s in self._sources.items() if isinstance(s, OriginSource)}

    def _report(self, info: OriginInfo, helper_bytes: int) -> VerificationReport:
        """How the bytes were checked (called once every known digest matched)."""
        methods = []
        if self.spec.checksums:
            methods.append(Verification.CHECKSUM)
        if self._manifest is not None:
            methods.append(Verification.MANIFEST)
        if info.digests:
            methods.append(Verification.REPR_DIGEST)
        if self._sampled_streams:
            methods.append(Verification.SAMPLED)
        return VerificationReport(
            methods=tuple(methods),
            helper_bytes=helper_bytes,
            helper_streams=self._helper_streams,
            sampled_streams=self._sampled_streams,
            sampled_bytes=self._sampled_bytes,
            sample_fraction=self.spec.verify_sample if self._sampling() else 0.0,
        )

    # --- carrying out the scheduler's actions --------------------------------------------------

    def _apply(
        self, sched: Scheduler, part: PartFile, tg: asyncio.TaskGroup, actions: Sequence[Action]
    ) -> None:
        for action in actions:
            if isinstance(action, Assign):
                given = ev.EndgameCopy if action.duplicate else ev.Assigned
                self._event(given(at=self._at(), source_id=action.source_id, range=action.range))
                coro = self._stream(sched, part, action)
                self._tasks[action.lease_id] = tg.create_task(coro)
            elif isinstance(action, Cancel):
                self._revoked(action)
                task = self._tasks.pop(action.lease_id, None)
                if task is not None:
                    task.cancel()
            elif isinstance(action, Ban):
                self._banned(action)

    async def _stream(self, sched: Scheduler, part: PartFile, lease: Assign) -> None:
        """One lease: stream its range from its source into the file."""
        assert self._info is not None
        source = self._sources[lease.source_id]
        writer = _BatchWriter(part)
        # what a helper's stream claimed, to be sampled (our own connections are not)
        runs: list[ByteRange] | None = None if isinstance(source, OriginSource) else []
        try:
            async with source.open_range(self._info, lease.range) as body:
                await self._pump(sched, part, lease, body, writer, runs)
            await writer.flush()
        except asyncio.CancelledError:
            await self._flush_claimed(writer, lease.source_id)
            raise
        except SourceError as exc:
            await self._flush_claimed(writer, lease.source_id)
            self._on_source_error(sched, lease, exc)
        except DownloadError as exc:
            self._fatal = self._fatal or exc
        finally:
            if self._tasks.get(lease.lease_id) is asyncio.current_task():
                del self._tasks[lease.lease_id]
            if runs:
                self._stream_ended(lease.source_id, runs)
            self._wake.set()

    async def _flush_claimed(self, writer: _BatchWriter, source_id: str) -> None:
        """The scheduler counts claimed bytes as done: write them, unless their source was
        caught lying (then they were given back to be fetched again)."""
        if source_id in self._distrusted:
            writer.discard()
        else:
            await writer.flush()

    async def _pump(
        self,
        sched: Scheduler,
        part: PartFile,
        lease: Assign,
        body: AsyncIterator[Chunk],
        writer: _BatchWriter,
        runs: list[ByteRange] | None,
    ) -> None:
        pos = lease.range.start
        async for chunk in body:
            self._last_byte_at = now = self._clock()
            claim = sched.on_data(lease.lease_id, len(chunk), now)
            if claim.write is not None:
                view = memoryview(chunk)[claim.write.start - pos : claim.write.end - pos]
                await writer.add(claim.write.start, view)
                if runs is not None:
                    _extend_runs(runs, claim.write)
            pos += len(chunk)
            if claim.actions:
                self._apply_cancels(claim.actions)
            if claim.finished:
                return
        # the origin client guarantees the full length, so on_data said finished above
        sched.on_failure(lease.lease_id, self._clock(), FailureKind.BROKEN, reason="short body")

    def _apply_cancels(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Cancel):
                self._revoked(action)
                task = self._tasks.pop(action.lease_id, None)
                if task is not None:
                    task.cancel()

    def _on_source_error(self, sched: Scheduler, lease: Assign, exc: SourceError) -> None:
        if isinstance(exc, RangesIgnored):
            self._fatal = self._fatal or _RangesIgnoredMidway(str(exc))
            return
        kind, retry_after = FailureKind.RETRYABLE, None
        if isinstance(exc, SourceRateLimited):
            kind, retry_after = FailureKind.RATE_LIMITED, exc.retry_after
        elif isinstance(exc, SourceBroken):
            kind = FailureKind.BROKEN
        elif not isinstance(exc, SourceRetryable):
            kind = FailureKind.BROKEN
        self._event(
            ev.StreamFailed(
                at=self._at(),
                source_id=lease.source_id,
                range=lease.range,
                code=exc.code,
                message=str(exc),
            )
        )
        now = self._clock()
        actions = sched.on_failure(
            lease.lease_id, now, kind, reason=str(exc), retry_after=retry_after
        )
        self._apply_cancels(actions)
        for action in actions:
            if isinstance(action, Ban):
                self._banned(action)

    # --- single stream -------------------------------------------------------------------------

    async def _single_stream(self, info: OriginInfo, dest: Path) -> DownloadResult:
        """The origin cannot do ranges (or will not say the size): one GET from offset 0."""
        self._mode = "single-stream"
        self._use_scheduler(None)
        self._stage = Stage.DOWNLOADING
        self._event(ev.FellBack(at=self._at()))
        key = ResumeKey(url=info.url, final_url=info.final_url, size=None)
        part = await open_part_file(
            dest,
            key,
            force=self.spec.force,
            max_size=self.spec.max_size,
            expected_size=info.size,
        )
        async with part:
            await self._stream_whole(info, part)
            self._stage = Stage.VERIFYING
            algorithms = self._algorithms(info)
            digests = await hash_file(part.part_path, algorithms) if algorithms else {}
            verified = self._verify(info, digests, part.part_path)
            path = await part.finalize(sync=self.spec.fsync)
        self._event(ev.Verified(at=self._at(), path=str(path), algorithms=verified))
        return DownloadResult(
            path=path,
            size=self._streamed,
            elapsed=self._clock() - self._t0,
            mode=self._mode,
            resumed_bytes=0,
            fetched_bytes=self._streamed,
            digests=digests,
            verified=verified,
            sources=(),
            last_byte_to_done=self._clock() - (self._last_byte_at or self._clock()),
            verification=self._report(info, 0),
        )

    async def _stream_whole(self, info: OriginInfo, part: PartFile) -> None:
        self._t_stream = self._clock()
        writer = _BatchWriter(part)
        try:
            async with self._origin.open_stream(info) as body:
                async for chunk in body:
                    self._last_byte_at = self._clock()
                    await writer.add(self._streamed, memoryview(chunk))
                    self._streamed += len(chunk)
            await writer.flush()
        except SourceError as exc:
            raise DownloadError(f"the single stream from the origin failed: {exc}") from exc

    def _stream_rate(self, now: float) -> float:
        started = self._t_stream
        if started is None or now <= started:
            return 0.0
        return self._streamed / (now - started)

    # --- verification --------------------------------------------------------------------------

    def _known_digests(self, info: OriginInfo) -> DigestSet:
        manifest = () if self._manifest is None else (Digest("sha256", self._manifest.sha256),)
        return DigestSet.of(self.spec.checksums, info.digests, manifest)

    def _algorithms(self, info: OriginInfo) -> set[str]:
        return set(self._known_digests(info).algorithms())

    def _verify(self, info: OriginInfo, computed: dict[str, str], kept: Path) -> tuple[str, ...]:
        mismatches = self._known_digests(info).mismatches(computed)
        if mismatches:
            lines = "; ".join(
                f"{m.expected.algorithm}: expected {m.expected.value}, got {m.actual}"
                for m in mismatches
            )
            raise ChecksumMismatch(
                f"checksum mismatch ({lines}); nothing was deleted: the data is kept in "
                f"{kept}. Delivered by: {self._who_delivered()}"
            )
        return tuple(sorted(computed))

    def _who_delivered(self) -> str:
        if self._sched is None:
            return "one stream from the origin"
        parts = []
        for s in self._sched.statistics(self._clock()).sources:
            if s.claimed:
                shown = ", ".join(f"{r.start}-{r.end}" for r in s.segments[:4])
                more = f" and {len(s.segments) - 4} more ranges" if len(s.segments) > 4 else ""
                parts.append(f"{s.source_id}: {s.claimed} bytes ({shown}{more})")
        return "; ".join(parts) or "nobody"

    # --- bookkeeping ---------------------------------------------------------------------------

    def _at(self) -> float:
        """Now, in seconds since the download started (an event's time)."""
        return self._clock() - self._t0

    def _event(self, event: ev.Event) -> None:
        self.events.append(event)
        level = logging.DEBUG if isinstance(event, ev.ROUTINE) else logging.INFO
        log.log(level, "%s %s: %s", ev.kind(event), ev.source(event) or "-", ev.describe(event))
        if self._on_event is not None:
            self._on_event(event)

    def _revoked(self, action: Cancel) -> None:
        self._event(
            ev.Revoked(
                at=self._at(), source_id=action.source_id, cause=action.cause, reason=action.reason
            )
        )

    def _banned(self, action: Ban) -> None:
        self._event(ev.Banned(at=self._at(), source_id=action.source_id, reason=action.reason))

    def _last_failure(self) -> str:
        for event in reversed(self.events):
            if isinstance(event, ev.StreamFailed | ev.Banned):
                return f"{event.source_id}: {ev.describe(event)}"
        return "no source could be used"


class _RangesIgnoredMidway(DownloadError):
    """Internal: a range request got the whole file; start over with one stream."""


def _resume_key(info: OriginInfo) -> ResumeKey:
    validator = info.validator
    return ResumeKey(
        url=info.url,
        final_url=info.final_url,
        size=info.size,
        validator_etag=validator.etag if validator is not None else None,
        validator_last_modified=validator.last_modified if validator is not None else None,
    )


__all__ = [
    "Download",
    "DownloadProgress",
    "DownloadResult",
    "DownloadSpec",
    "OriginSource",
    "RangeSource",
    "Stage",
]


@dataclass
class _StreamCheck:
    """A helper stream to sample: what it claimed, and how often the origin failed us."""

    source_id: str
    runs: list[ByteRange]
    window: int  # the smallest window to compare
    attempts: int = 0


def _extend_runs(runs: list[ByteRange], write: ByteRange) -> None:
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


def _pread(path: Path, rng: ByteRange) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, rng.length, rng.start)
    finally:
        os.close(fd)
