"""The download engine: one URL to one verified file.

A ``Download`` probes the origin (retrying a few times), picks the destination, then runs
the file either as one stream from the origin (``single_stream.py``: the origin cannot do
ranges or will not say the size) or segmented (``segmented.py``: the core scheduler's
pieces streamed from every source at once into a part file, resuming an earlier run of the
same download). When the file changes on the server it starts over, if allowed.

Helpers are not trusted with the bytes they deliver: see ``checks.py`` (manifest pieces,
helper streams sampled against the origin) and ``core.blame`` (who is blamed for bad
bytes). The result says how the bytes were checked (``VerificationReport``).

Sources are anything with ``open_range`` (``RangeSource``): the origin itself here, helper
nodes in the swarm. Errors from a stream are blamed on its source (retry, back off, ban);
errors that concern the whole download (``OriginChanged``, ``StorageError``) stop it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from swarmget.core import events as ev
from swarmget.core.byte_sources import SourceKind
from swarmget.core.content import ContentKey
from swarmget.core.errors import (
    DownloadError,
    OriginChanged,
    OriginUnusable,
    SourceError,
    SourceRateLimited,
    SwarmgetError,
)
from swarmget.core.filenames import choose_filename
from swarmget.core.ranges import ByteRange
from swarmget.core.resume import ChangedSincePartial
from swarmget.core.scheduler import Ban, Scheduler, SchedulerStats
from swarmget.core.urls import redact_url
from swarmget.destination import destination_for, resolve_output
from swarmget.engine.checks import IntegrityChecks
from swarmget.engine.context import DownloadContext
from swarmget.engine.segmented import SegmentedRun
from swarmget.engine.sharing import GroupOptions, SharingNote, SharingReport
from swarmget.engine.single_stream import SingleStream
from swarmget.engine.sources import RangeSource
from swarmget.engine.spec import DownloadProgress, DownloadResult, DownloadSpec, Stage, Timeline
from swarmget.engine.streams import RangesIgnoredMidway
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.storage import ResumeKey, control_path_for, open_part_file, part_path_for

if TYPE_CHECKING:
    from swarmget.engine.group import GroupFetch
    from swarmget.net.relay_client import RelayClient

_PROBE_ATTEMPTS = 4
_RESTARTS = 3
#: the probe asks for the file's first bytes (``OriginClient.probe_first``), which the first
#: range of our own connections then reads: the smallest piece the scheduler makes (its
#: default ``min_piece``), so that the first range asks for at least as many
FIRST_RANGE = 256 * 1024
#: the first range each listed helper is asked for when the probe is the first range
#: (``Download.plan_leads``): told with its health check, so that it may ask the origin at
#: once, before our probe has pinned the file. It is the helper's only stream until its
#: other slots' first ranges flow (asked when our probe answered: a round trip or two
#: later), so it should carry its link about that long: 512 KiB is ~0.1 s of a 40 Mbit/s
#: link. 1 MiB was measured too (bench/README, "Leads"): no better on the testbed.
LEAD = 512 * 1024


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
        on_bytes: Callable[[SourceKind, int], None] | None = None,
        group: GroupOptions | None = None,
        first_range: int | None = None,
    ) -> None:
        """``admit`` is awaited with what each probe pinned, before a byte is written; it
        raises (from the error tree) to refuse the file, e.g. one too large to hold.
        ``on_event`` is called with every event as it happens (counters count there), and
        ``on_bytes(kind, n)`` with every chunk that comes in. ``group``: fetch once
        per LAN (``group.py``) when the content is shareable; None: never.
        ``first_range``: the probe asks for the file's first bytes (``FIRST_RANGE``), read
        as the start of the first range (``probe_uses_first_range`` says when)."""
        self.spec = spec
        self._group_options = group
        self._group: GroupFetch | None = None  # the segmented run's, while it runs
        self._on_event = on_event
        self._ctx = DownloadContext(spec, origin, sources, clock, self._told, on_bytes)
        self._checks = IntegrityChecks(spec)
        self._admit = admit
        self._relay = relay
        self._first_range = first_range
        self._dest: Path | None = None
        self._sched: Scheduler | None = None
        self._single: SingleStream | None = None
        self._reassigned_before = 0  # by the schedulers of earlier attempts (restarts)
        self._mode = "segmented"
        self._resumed = 0
        self._ended_at: float | None = None  # the clock when run() ended: snapshots stop there
        self._run_in_progress: SegmentedRun | None = None
        self._sharing_note: SharingNote | None = None
        self._own_slots = sum(s.slots for s in sources)  # the sources it starts with
        self._helper_slots = 0  # of the helpers the hub listed (``expect_helpers``)
        #: helper id -> its first range, planned before the probe (``plan_leads``); kept for
        #: it by the first scheduler, then forgotten
        self._leads: dict[str, ByteRange] = {}

    # --- public --------------------------------------------------------------------------------

    @property
    def events(self) -> deque[ev.Event]:
        """The latest events, for displays."""
        return self._ctx.events

    @property
    def corrupt_reports(self) -> list[tuple[str, dict[str, int]]]:
        """Every integrity failure: (what, {source: bytes it contributed})."""
        return self._checks.corrupt_reports

    @property
    def pinned(self) -> OriginInfo | None:
        """What the probe pinned (URL, size, validator), once probed."""
        return self._ctx.info

    def scheduler_statistics(self) -> tuple[float, SchedulerStats] | None:
        """The scheduler's snapshot (leases in flight, endgame ...) and the engine clock's
        ``now`` it was taken at; None before the segmented phase."""
        sched = self._sched
        if sched is None:
            return None
        now = self._ctx.clock()
        return now, sched.statistics(now)

    def reassigned_bytes(self) -> int:
        """Bytes given back to be fetched again (failures, stalls, bad data), over every
        attempt of this download (it never goes down: a Prometheus counter reads it)."""
        return self._reassigned_before + self._current_reassigned()

    def statistics(self) -> DownloadProgress:
        """A snapshot; once the run ended, as of its end (elapsed and rates stay put)."""
        ctx = self._ctx
        now = ctx.clock() if self._ended_at is None else self._ended_at
        sched, info, single = self._sched, ctx.info, self._single
        stats = sched.statistics(now) if sched is not None else None
        streamed = single.streamed if single is not None else 0
        done = stats.done if stats is not None else streamed
        sources = stats.sources if stats is not None else ()
        single_rate = single.rate(now) if single is not None else 0.0
        return DownloadProgress(
            stage=ctx.stage,
            url=self.spec.url,
            dest=self._dest,
            size=info.size if info is not None else None,
            done=done,
            rate=sum(s.rate for s in sources) if sources else single_rate,
            elapsed=now - ctx.t0,
            mode=self._mode,
            resumed_bytes=self._resumed,
            sources=sources,
            by_source=ctx.by_source(),
            kinds={s.source_id: k for s in sources if (k := ctx.kind_of(s.source_id)) is not None},
        )

    def add_source(self, source: RangeSource) -> None:
        """A source that joins while the download runs (a helper that answered its health
        check late): the segmented run in progress gives it work at once; a later one
        (after a restart) starts with it. Its id must be new to this download."""
        ctx = self._ctx
        if source.source_id in ctx.sources:
            raise ValueError(f"source {source.source_id} is already part of the download")
        ctx.sources[source.source_id] = source
        ctx.marks.joined.setdefault(source.source_id, ctx.at())
        if self._run_in_progress is not None:
            group = self._group
            available = None if group is None else group.adopt_link(source.source_id)
            self._run_in_progress.add_source(source, available=available)

    def expect_helpers(self, slots: int) -> None:
        """Helpers with ``slots`` connection slots in all may join soon (the peers the hub
        listed, before their health checks): new pieces are sized for the swarm they make
        with the starting sources, not for those alone (issue #14). 0: none expected."""
        if slots < 0:
            raise ValueError("slots must be >= 0")
        self._helper_slots = slots
        sched = self._sched
        if sched is not None:
            self._expect(sched)
        if not slots:  # the checks are over: who did not join takes no lead
            joined = self._ctx.sources
            self._leads = {h: rng for h, rng in self._leads.items() if h in joined}
            if sched is not None:
                sched.release_reservations(keep=joined)

    def plan_leads(self, helper_ids: Sequence[str]) -> dict[str, ByteRange]:
        """The first range each of ``helper_ids`` (the listed helpers that may be used, best
        first) will be asked for, planned before the probe answered (issue #14): ``LEAD``
        bytes each, one after another from where the probe's first range ends. Each is told
        with its health check, so that the helper may ask the origin for it at once; the
        scheduler keeps those bytes for it (``Scheduler.reserve``, clipped to the file) until
        it joins or its check fails. None planned (empty) unless the probe is the first
        range (not with a relay, sharing, a resume or ``--max-size``) and has not answered."""
        if self._relay is not None or self._sched is not None or self._ctx.info is not None:
            return {}
        if not self._probe_first_range():
            return {}
        assert self._first_range is not None
        start = self._first_range
        self._leads = {
            helper: ByteRange(start + i * LEAD, start + (i + 1) * LEAD)
            for i, helper in enumerate(helper_ids)
        }
        return dict(self._leads)

    def _reserve_leads(self, sched: Scheduler) -> None:
        """The first scheduler keeps each planned lead (what of it lies in the file) for its
        helper; later ones (a restart) plan none: the helpers' early answers are stale."""
        whole = ByteRange(0, sched.size)
        for helper, lead in sorted(self._leads.items(), key=lambda item: item[1].start):
            kept = lead.intersect(whole)
            if kept is not None and not kept.is_empty():
                sched.reserve(helper, kept)
        self._leads = {}

    def _expect(self, sched: Scheduler) -> None:
        slots = self._helper_slots
        sched.expect_slots(self._own_slots + slots if slots else 0)

    def hub_answered(self, peers: int) -> None:
        """The hub listed ``peers`` peers (marked on the timeline; the first answer counts)."""
        marks = self._ctx.marks
        if marks.hub is None:
            marks.hub, marks.hub_peers = self._ctx.at(), peers

    def timeline(self) -> Timeline:
        """When each phase happened so far (the result carries the whole of it)."""
        return self._ctx.timeline()

    async def run(self) -> DownloadResult:
        """Download, verify and move the file into place. Raises from the error tree."""
        ctx = self._ctx
        try:
            result = await self._run()
        except BaseException as exc:
            await ctx.drop_first()
            self._ended_at = ctx.clock()
            ctx.stage = Stage.FAILED
            code = exc.code if isinstance(exc, SwarmgetError) else type(exc).__name__
            ctx.emit(ev.Failed(at=ctx.at(), code=code, message=str(exc) or type(exc).__name__))
            raise
        await ctx.drop_first()
        self._ended_at = ctx.clock()
        ctx.marks.verified = result.elapsed  # verified and in place: the result's end
        ctx.stage = Stage.DONE
        return dataclasses.replace(result, timeline=ctx.timeline(), content=self._content())

    def _content(self) -> ContentKey | None:
        return None if self._ctx.info is None else self._ctx.content_key()

    # --- phases --------------------------------------------------------------------------------

    async def _run(self) -> DownloadResult:
        info = await self._probe()
        for _attempt in range(_RESTARTS):
            dest = self._resolve_dest(info)
            if not (info.accepts_ranges and info.size is not None):
                return await self._single_stream(dest)
            try:
                return await self._segmented(info, dest)
            except RangesIgnoredMidway:
                return await self._single_stream(dest)
            except OriginChanged as exc:
                if isinstance(exc, ChangedSincePartial):
                    raise  # found when resuming: its message says it all
                if not self.spec.restart_if_changed:
                    raise OriginChanged(
                        f"{exc} during the download; the partial data is kept in "
                        f"{dest}.part: re-run with --restart-if-changed to start over"
                    ) from exc
                reason = f"the file changed on the server: {exc}"
                self._ctx.emit(ev.Restarted(at=self._ctx.at(), reason=reason))
                info = await self._probe()
        shown = redact_url(self.spec.url)
        raise OriginChanged(f"{shown} kept changing while downloading; giving up")

    async def _probe(self) -> OriginInfo:
        self._ctx.stage = Stage.PROBING
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
                self._ctx.info = info
                if self._ctx.marks.probe is None:  # (a restart probes again)
                    self._ctx.marks.probe = self._ctx.at()
                return info
            delay *= 2
        raise AssertionError("unreachable")

    async def _probe_once(self) -> OriginInfo:
        origin = self._ctx.origin
        await self._ctx.drop_first()  # (a restart's probe: the last one's answer is stale)
        if self._relay is None and self._probe_first_range():
            assert self._first_range is not None
            # our other connections are opened meanwhile (not for a restart's probe)
            warm = self._own_slots - 1 if self._sched is None else 0
            info, self._ctx.first = await origin.probe_first(
                self.spec.url, self._first_range, warm=warm
            )
            return info
        if self._relay is None:
            return await origin.probe(self.spec.url)
        blob = await self._relay.fetch(self.spec.url)
        self._ctx.manifest = blob.manifest
        self._ctx.emit(ev.RelayUsed(at=self._ctx.at(), hit=blob.hit))
        info = await origin.probe(blob.url)
        if info.size != blob.manifest.size:
            raise OriginUnusable(
                f"the relay's blob is {info.size} bytes, its manifest says {blob.manifest.size}"
            )
        name = choose_filename(None, self.spec.url, self.spec.url)
        return dataclasses.replace(info, filename=name, digests=())

    def _probe_first_range(self) -> bool:
        """Whether the probe asks for the first range (see ``probe_uses_first_range``)."""
        if self._first_range is None or self._group_options is not None:
            return False  # (sharing: this node's own copy or a LAN holder may serve it all)
        return probe_uses_first_range(self.spec)

    def _resolve_dest(self, info: OriginInfo) -> Path:
        self._dest = destination_for(
            self.spec.output,
            info.filename,
            force=self.spec.force,
            size=info.size,
            max_size=self.spec.max_size,
        )
        return self._dest

    async def _single_stream(self, dest: Path) -> DownloadResult:
        await self._ctx.drop_first()  # (its one stream asks for the whole file)
        self._mode = "single-stream"
        self._use_scheduler(None)
        self._single = SingleStream(self._ctx, self._checks)
        return await self._single.download(dest)

    async def _segmented(self, info: OriginInfo, dest: Path) -> DownloadResult:
        assert info.size is not None
        ctx = self._ctx
        self._mode = "segmented"
        key = _resume_key(info)
        part = await open_part_file(
            dest,
            key,
            force=self.spec.force,
            max_size=self.spec.max_size,
            restart_if_changed=self.spec.restart_if_changed,
        )
        async with part:
            if part.restart_reason is not None:
                ctx.emit(ev.Restarted(at=ctx.at(), reason=part.restart_reason))
            self._resumed = part.written.total()
            if self._resumed:
                ctx.emit(ev.Resumed(at=ctx.at(), bytes_on_disk=self._resumed))
            config = self.spec.scheduler
            self._checks.use_manifest(ctx.manifest)
            if ctx.manifest is not None:
                config = dataclasses.replace(config, align=ctx.manifest.piece_size)
            sched = Scheduler(info.size, config, done=part.written)
            self._expect(sched)
            self._reserve_leads(sched)
            self._use_scheduler(sched)
            group = self._plan_group()
            now = ctx.clock()
            for src in ctx.sources.values():
                links = None if group is None else group.link_availability(src.source_id)
                sched.add_source(src.source_id, src.slots, now, available=links)
            for source_id in sorted(self._checks.distrusted):  # caught in an earlier attempt
                for action in sched.ban(source_id, "sent bad data earlier in this download"):
                    if isinstance(action, Ban):  # (it holds no lease yet: nothing to revoke)
                        ctx.banned(action)
            run = SegmentedRun(ctx, self._checks, sched, part, resumed=self._resumed)
            self._run_in_progress, self._group = run, group
            try:
                if group is not None:
                    return await group.drive(run)
                return self._unshared(await run.download())
            finally:
                self._run_in_progress, self._group = None, None

    # --- fetch once per LAN ----------------------------------------------------------------------

    def _plan_group(self) -> GroupFetch | None:
        options = self._group_options
        if options is None:
            return None
        from swarmget.engine import group  # only with sharing (it imports the wire models)

        planned = group.plan(self._ctx, options)
        if isinstance(planned, SharingNote):
            self._sharing_note = planned
            return None
        return planned

    def _unshared(self, result: DownloadResult) -> DownloadResult:
        """Sharing was asked for and did not apply: the result says why."""
        note = self._sharing_note
        if self._group_options is None or note is None:
            return result
        report = SharingReport(origin_bytes=sum(s.received for s in result.sources), notes=(note,))
        return dataclasses.replace(result, sharing=report)

    def _told(self, event: ev.Event) -> None:
        if self._group is not None:
            self._group.on_event(event)
        if self._on_event is not None:
            self._on_event(event)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _current_reassigned(self) -> int:
        sched = self._sched
        return 0 if sched is None else sched.statistics(self._ctx.clock()).reassigned_bytes

    def _use_scheduler(self, sched: Scheduler | None) -> None:
        """Run with ``sched`` from now on, keeping what the previous one gave back."""
        self._reassigned_before += self._current_reassigned()
        self._sched = sched


def probe_uses_first_range(spec: DownloadSpec) -> bool:
    """Whether a download of ``spec`` may probe with its first range (issue #14: one
    round trip saved) rather than HEAD: not when the origin must send nothing before the
    size is known (``max_size``: refused up front), nor when a part file of an earlier run
    is found where the name the URL suggests would put it (a resume needs none of it)."""
    if spec.max_size is not None:
        return False
    try:
        guess = resolve_output(spec.output, choose_filename(None, spec.url, spec.url))
    except (SwarmgetError, OSError):
        return False  # (the probe's name decides; the HEAD probe, as before)
    dest = guess.path
    return not (part_path_for(dest).exists() or control_path_for(dest).exists())


def _resume_key(info: OriginInfo) -> ResumeKey:
    validator = info.validator
    return ResumeKey(
        url=info.url,
        final_url=info.final_url,
        size=info.size,
        validator_etag=validator.etag if validator is not None else None,
        validator_last_modified=validator.last_modified if validator is not None else None,
    )
