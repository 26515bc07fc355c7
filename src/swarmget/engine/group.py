"""Fetch once per LAN (#15): one download run as a member of its content's group.

Theory of operation (docs/fetch-once.md §4–§6; ``swarmget.testing.simgroup`` is the same
conversation on a simulated clock, with the core alone):

* After the probe, a shareable download (``ContentKey.shareable``) *joins* its content at
  the hub's index (``ContentIndex``, by ``index_name``: never the URL). Our own origin
  links (the origin source and every helper fetching for us) become sources restricted to
  the ranges the group *grants* us (``available=grant``), growing with every new grant
  (``availability_grew``). Every other member becomes a LAN holder source (``lan:<node>``)
  restricted to what it verified (``available=have``), growing with its news.
* Beside the segmented run, a round of *news* goes to the index every ``news_every``
  seconds: the ranges we verified since the last round (on disk, fetched over our own
  links: bytes taken from a holder are not passed on before the whole file is proven),
  ``claim`` while less than ``lookahead`` granted bytes are left to fetch, ``idle`` when
  nothing granted is left (the group endgame may hand us part of a slow member's grant).
  Members missing from an answer are gone: their leases are cancelled.
* Holder bytes are untrusted (§6): holders are used only when a check covers them (a
  whole-file digest, a relay manifest, or sampling against the origin, which the run does
  for every stream that is not our own origin's). A holder caught with bad bytes is banned
  by the run's checks; here it is reported to the index, and what only it could serve is
  granted to our own links (fetched again from the origin). No check at all: no holders,
  our links may fetch anything; we still share what we fetch.
* The index unreachable at the join: today's download (links unrestricted). Silent later
  for ``silent_after`` seconds with our grants exhausted: our links may fetch anything
  (correctness first; the savings are lost for what is left). The same when the index
  answers but grants nothing while bytes are missing that no source may serve (a node
  downloading again what it already holds: the group has nothing left to grant).
* This node's own copy (``Holdings.own_copy``: a file its share cache kept whole, the same
  content as the probe just pinned, so never stale): the download copies it (the source
  ``own-copy``, not sampled: its bytes were verified when kept) without joining the index;
  our links may fetch nothing unless that copy fails (gone or changed: they take the rest).
* Done: leave (``keep_as_holder``: stay in the index as a holder of all of it), after
  offering the file to the node's ``Holdings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from swarmget.core import events as ev
from swarmget.core.content import ContentKey
from swarmget.core.errors import HubError, NotAContentMember
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Scheduler
from swarmget.core.verification import Verification
from swarmget.engine import group_parts as parts
from swarmget.engine.context import DownloadContext
from swarmget.engine.group_parts import HOLDER_PREFIX, HolderSource
from swarmget.engine.segmented import SegmentedRun, first_error
from swarmget.engine.sharing import (
    GroupOptions,
    SharingNote,
    SharingReport,
)
from swarmget.engine.sources import OWN_COPY, OwnCopySource, RangeSource, trusted
from swarmget.engine.spec import DownloadResult
from swarmget.engine.verify import known_digests
from swarmget.protocol.content import (
    ContentGroup,
    ContentMember,
    ContentNews,
    ContentReport,
    JoinContent,
    ranges_of,
    wire_ranges,
)

#: seconds the leave at the end may take (the index forgets us with our registration anyway)
LEAVE_TIMEOUT = 5.0

_CHECK_OF = {ev.BadDataCheck.SAMPLE: Verification.SAMPLED}


def plan(ctx: DownloadContext, options: GroupOptions) -> GroupFetch | SharingNote:
    """The group fetch of this download, or why there is none (today's path then)."""
    if ctx.manifest is not None:
        return SharingNote.RELAY
    key = ctx.content_key()
    if not key.shareable or key.size is None or key.size <= 0:
        return SharingNote.NOT_SHAREABLE
    info, spec = ctx.pinned(), ctx.spec
    checked = bool(known_digests(spec, info, ctx.manifest)) or spec.sampling(manifest=False)
    own = None if options.holdings is None else options.holdings.own_copy(key)
    return GroupFetch(ctx, options, key, use_holders=checked, own_copy=own)


class GroupFetch:
    """One download's membership of its content's group. See the module docstring."""

    def __init__(
        self,
        ctx: DownloadContext,
        options: GroupOptions,
        key: ContentKey,
        *,
        use_holders: bool,
        own_copy: RangeSource | None = None,
    ) -> None:
        assert key.size is not None
        self._ctx, self._options, self._key = ctx, options, key
        self._config = options.config
        self._name = key.index_name()
        self._size = key.size
        self._use_holders = use_holders
        self._links: set[str] = set(ctx.sources)  # our own origin links (and helpers)
        self._granted = RangeSet()
        self._announced = RangeSet()
        self._members: dict[str, ContentMember] = {}  # holder source id -> member
        self._ever_held: set[str] = set()
        self._bad: dict[str, tuple[ByteRange, Verification]] = {}  # holder -> what caught it
        self._banned: list[str] = []  # holders banned, not yet seen to
        self._liars: set[str] = set()  # every holder banned
        self._reported: list[str] = []
        self._joined = False
        self._was_joined = False
        #: this node's own copy of the content: copied, no group conversation (see above)
        self._own = None if own_copy is None else OwnCopySource(own_copy)
        self._restricted = use_holders or self._own is not None
        quiet = use_holders or self._own is not None
        self._notes: list[SharingNote] = [] if quiet else [SharingNote.NO_CHECK]
        self._last_answer = ctx.clock()
        self._starved_since: float | None = None
        self._rate_mark = (ctx.clock(), 0)  # (when, granted bytes done then)
        self._link_rate: float | None = None  # granted bytes done per second, last round
        self._last_grant = 0  # the length of the last grant (whole: the pool is large)
        #: helpers get no grant before our first round is answered (``_helper_waits``)
        self._helpers_wait = use_holders
        self._run: SegmentedRun | None = None

    # --- what the download asks ----------------------------------------------------------------

    def link_availability(self, source_id: str | None = None) -> RangeSet | None:
        """What our link ``source_id`` may fetch: the grants (None: anything); nothing yet
        for a helper before our first round of news (see ``_helper_waits``)."""
        if not self._restricted:
            return None
        return RangeSet() if self._helper_waits(source_id) else self._granted.copy()

    def adopt_link(self, source_id: str) -> RangeSet | None:
        """A helper joins the download: one more of our links (its availability returned)."""
        self._links.add(source_id)
        return self.link_availability(source_id)

    def on_event(self, event: ev.Event) -> None:
        """Note the holders the run's checks caught (reported at the next round)."""
        if isinstance(event, ev.BadData):
            check = _CHECK_OF.get(event.check, Verification.MANIFEST)
            for sid in event.source_ids:
                if sid.startswith(HOLDER_PREFIX):
                    self._bad.setdefault(sid, (event.range, check))
        elif isinstance(event, ev.Banned) and event.source_id in self._members:
            self._banned.append(event.source_id)
            self._liars.add(event.source_id)
        if isinstance(event, ev.StreamFailed | ev.Banned) and event.source_id == OWN_COPY:
            self._own_copy_lost()

    async def drive(self, run: SegmentedRun) -> DownloadResult:
        """Join, run the download beside the rounds of news, offer the file, leave."""
        self._run = run
        holdings = self._options.holdings
        # pinned while it downloads: never evicted from the share cache meanwhile (§7)
        with contextlib.nullcontext() if holdings is None else holdings.pinned(self._key):
            if self._own is not None:
                self._copy_own(run)
            else:
                await self._join()
            try:
                result = await self._beside(run)
            except BaseException:  # failed or cancelled: serve nothing of a part file
                if holdings is not None:
                    holdings.withdraw(self._key)
                await self._leave(keep=False)
                raise
            finally:
                self._ctx.sources.pop(OWN_COPY, None)  # (a restart asks for it again)
            keep = self._options.keep_as_holder
            if holdings is not None:
                if keep:
                    holdings.offer(self._key, result.path, RangeSet([ByteRange(0, self._size)]))
                else:
                    holdings.withdraw(self._key)
            if keep:
                await self._announce_whole()
            await self._leave(keep=keep)
        return dataclasses.replace(result, sharing=self._report(result))

    # --- this node's own copy ------------------------------------------------------------------

    def _copy_own(self, run: SegmentedRun) -> None:
        """Every byte from this node's own copy; our links fetch nothing unless it fails."""
        own = self._own
        assert own is not None
        self._ctx.sources[own.source_id] = own
        run.add_source(own, available=RangeSet([ByteRange(0, self._size)]))

    def _own_copy_lost(self) -> None:
        """Our own copy failed to read (gone, changed): our links may fetch anything."""
        if self._restricted and SharingNote.OWN_COPY_LOST not in self._notes:
            self._notes.append(SharingNote.OWN_COPY_LOST)
            self._lift()

    # --- the conversation with the index -------------------------------------------------------

    async def _join(self) -> None:
        request = JoinContent(
            size=self._size,
            have=wire_ranges(parts.first_runs(self._announced)),
            granted=wire_ranges(parts.first_runs(self._granted)) if self._restricted else [],
        )
        try:
            group = await self._options.index.join(self._name, request)
        except HubError:
            if not self._joined:  # never joined: today's download
                self._notes.append(SharingNote.INDEX_UNREACHABLE)
                self._lift()
            return
        self._joined = self._was_joined = True
        self._answered(group)

    async def _beside(self, run: SegmentedRun) -> DownloadResult:
        stop = asyncio.Event()

        async def download() -> DownloadResult:
            try:
                return await run.download()
            finally:
                stop.set()

        try:
            async with asyncio.TaskGroup() as tg:
                if self._joined:
                    tg.create_task(self._rounds(stop))
                task = tg.create_task(download())
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        return task.result()

    async def _rounds(self, stop: asyncio.Event) -> None:
        """A round of news every ``news_every`` seconds until the download ends, and an
        early one (looked for every ``short_check`` seconds) when our links run short of
        granted bytes: claims once a round would cap them at a grant or two per round, far
        below what a node with helpers fetches."""
        step = min(self._config.short_check, self._config.news_every)
        last = self._ctx.clock() - self._config.news_every  # the first round at the first step
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await stop.wait()
            if stop.is_set():
                return
            due = self._ctx.clock() - last >= self._config.news_every - step / 2
            if due or self._short():
                last = self._ctx.clock()
                await self._round()

    def _short(self) -> bool:
        """Our links have less than half the lookahead left (and want more)."""
        return self._wants_grant(half=True)

    def _wants_grant(self, *, half: bool = False) -> bool:
        """Should the next news claim a grant? While the grants come whole (the pool is
        large, ``GroupConfig.full_grant``) we keep ``lookahead`` granted bytes *unleased*,
        and a whole grant per link fetching (before our links' rate is known, a lone
        node's helpers would find one grant and split each other's pieces):
        a connection that frees its slot then finds granted bytes to take; with none it
        splits the piece of a busy one (a steal), whose origin stream is cut, and what the
        origin had sent into it (socket buffers, the shaper's queue: ~0.8 MiB on the
        testbed) is lost (docs/fetch-once.md §9.1). Once grants shrink (the pool runs
        low), only while less than ``lookahead`` is left to fetch: a member topping up
        unleased bytes then would take what others need (a small file's pool goes in a
        few claims)."""
        if not self._restricted or self._scheduler().is_complete():
            return False
        div = 2 if half else 1
        if self._last_grant >= self._config.full_grant:
            working = sum(1 for link in self._links if not self._helper_waits(link))
            ahead = max(self._lookahead(rounds=1), working * self._config.full_grant)
            return self._link_unleased() < ahead // div
        return self._link_left() < self._lookahead(rounds=2) // div

    def _lookahead(self, *, rounds: int) -> int:
        """``lookahead``, or what our links fetched in the last ``rounds`` rounds when that
        is more (a node with helpers fetches many grants a second)."""
        now, done = self._ctx.clock(), self._link_done()
        at, before = self._rate_mark
        if now - at >= self._config.news_every:
            rate = (done - before) / (now - at)
            self._link_rate = rate if self._link_rate is None else max(rate, self._link_rate / 2)
            self._rate_mark = (now, done)
        fetched = int((self._link_rate or 0.0) * rounds * self._config.news_every)
        return max(self._config.lookahead, fetched)

    async def _round(self) -> None:
        """Report liars, then tell the news (claiming grants while short of lookahead)."""
        self._check_starved()
        await self._report_liars()
        for _ in range(self._config.claims_per_round):
            fresh = parts.first_runs(self._fresh())
            left = self._link_left()
            claim = self._wants_grant()
            news = ContentNews(have=wire_ranges(fresh), claim=claim, idle=claim and left == 0)
            try:
                group = await self._options.index.news(self._name, news, size=self._size)
            except NotAContentMember:  # the index forgot us (restarted): join again
                await self._join()
                return
            except HubError:
                self._index_silent()
                return
            for r in fresh:
                self._announced.add(r)
            self._offer()
            self._answered(group)
            self._open_helpers()
            if not claim or group.grant is None:
                return

    async def _report_liars(self) -> None:
        while self._banned:
            sid = self._banned.pop()
            self._give_links(self._only_at(sid))
            caught = self._bad.get(sid)
            if caught is None or sid in self._reported:
                continue  # banned for failing, not for bad bytes
            self._reported.append(sid)
            rng, check = caught
            node = sid.removeprefix(HOLDER_PREFIX)
            request = ContentReport(node_id=node, start=rng.start, end=rng.end, verification=check)
            try:
                group = await self._options.index.report(self._name, request, size=self._size)
            except HubError:
                continue
            self._answered(group)

    async def _announce_whole(self) -> None:
        """The whole file is verified: tell the index before staying on as its holder. The
        rounds announced only what our own links fetched, up to the last round: without
        this the index would keep us as a holder of that part only, and hand the rest
        (the last round's bytes, those we took from holders) to the next requester's
        origin link."""
        if not self._joined:
            return
        left = RangeSet([ByteRange(0, self._size)])
        for r in self._announced:
            left.subtract(r)
        if not left:
            return
        news = ContentNews(have=wire_ranges(parts.first_runs(left)))
        with contextlib.suppress(HubError, TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self._options.index.news(self._name, news, size=self._size)
                for r in left:
                    self._announced.add(r)

    async def _leave(self, *, keep: bool) -> None:
        if not self._joined:
            return
        self._joined = False
        with contextlib.suppress(HubError, TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self._options.index.leave(self._name, keep_as_holder=keep)

    # --- what an answer means ------------------------------------------------------------------

    def _answered(self, group: ContentGroup) -> None:
        self._last_answer = self._ctx.clock()
        if group.grant is not None and self._restricted:
            grant = ByteRange(*group.grant)
            self._last_grant = grant.length
            self._granted.add(grant)
            self._give_links(RangeSet([grant]))
        if self._restricted:
            self._drop_member_links(group.members)
        if self._use_holders:
            self._holders_now(group.members)
        self._woken()

    def _drop_member_links(self, members: list[ContentMember]) -> None:
        """A helper that is itself fetching this content works for the group through its
        own grants: as our link it would only take the slots its LAN holder streams need
        (and fetch our grants at its origin link's rate beside its own)."""
        run, sched, now = self._active_run(), self._scheduler(), self._ctx.clock()
        for member in members:
            sid = member.node_id
            if member.fetching and sid != self._options.node_id and sid in self._links:
                self._links.discard(sid)
                run.revoke(sched.remove_source(sid, now, "fetching this content itself"))

    def _holders_now(self, members: list[ContentMember]) -> None:
        run, sched, now = self._active_run(), self._scheduler(), self._ctx.clock()
        seen = set()
        for member in members:
            if member.node_id == self._options.node_id:
                continue
            sid = HOLDER_PREFIX + member.node_id
            seen.add(sid)
            have = ranges_of(member.have)
            if sid not in self._members:
                self._members[sid] = member
                self._ever_held.add(sid)
                inner = self._options.holders.source(member, self._key)
                source = HolderSource(member, inner, self._slots())
                self._ctx.sources[sid] = source
                self._ctx.holders.add(sid)
                run.add_source(source, available=have, whole_runs=True)  # a LAN holder
            elif have:
                sched.availability_grew(sid, have, now)
        for sid in set(self._members) - seen:  # gone from the group: died or left
            del self._members[sid]
            run.revoke(sched.remove_source(sid, now, "left the content's group"))

    def _index_silent(self) -> None:
        """The index did not answer: after ``silent_after`` with nothing granted left to
        fetch, our links may fetch anything (correctness first)."""
        silent = self._ctx.clock() - self._last_answer
        if self._restricted and silent >= self._config.silent_after and not self._link_left():
            self._notes.append(SharingNote.INDEX_SILENT)
            self._lift()
            self._woken()

    def _check_starved(self) -> None:
        """Nothing granted left to fetch and missing bytes that no source may serve, for
        ``silent_after`` seconds although the index answers (the group has nothing to grant:
        this node already holds the content, say): our links may fetch anything."""
        sched, now = self._scheduler(), self._ctx.clock()
        if not self._restricted or sched.is_complete() or self._link_left():
            self._starved_since = None
            return
        if not sched.unserved():
            self._starved_since = None
            return
        if self._starved_since is None:
            self._starved_since = now
        elif now - self._starved_since >= self._config.silent_after:
            self._notes.append(SharingNote.STARVED)
            self._lift()
            self._woken()

    def _lift(self) -> None:
        self._helpers_wait = False
        if self._restricted:
            self._restricted = False
            self._give_links(RangeSet([ByteRange(0, self._size)]))

    def _give_links(self, ranges: RangeSet) -> None:
        if not ranges:
            return
        sched, now = self._scheduler(), self._ctx.clock()
        for r in ranges:
            self._granted.add(r)
        for link in self._links:
            if not self._helper_waits(link):
                sched.availability_grew(link, ranges, now)
        self._woken()

    def _helper_waits(self, source_id: str | None) -> bool:
        """Is ``source_id`` a helper (another node's origin link) that gets no grant yet?
        Until our first round of news after the join, a helper may be a member fetching
        this content itself that joined after us (the join listed the members before us):
        as our link it would be dropped at that round, and every origin stream it had
        started for us cut, with what the origin had sent into it (~0.8 MiB each on the
        testbed: two dozen such streams were 0.1 x the file there, docs/fetch-once.md
        §9.1). Our own connections start at once."""
        if not self._helpers_wait or source_id is None:
            return False
        source = self._ctx.sources.get(source_id)
        return source is not None and not trusted(source)

    def _open_helpers(self) -> None:
        """Our first round is answered (or the restriction lifted): helpers take grants."""
        if not self._helpers_wait:
            return
        self._helpers_wait = False
        if self._restricted and self._granted:
            sched, now = self._scheduler(), self._ctx.clock()
            for link in self._links:
                source = self._ctx.sources.get(link)
                if source is not None and not trusted(source):
                    sched.availability_grew(link, self._granted.copy(), now)
            self._woken()

    # --- bookkeeping ---------------------------------------------------------------------------

    def _fresh(self) -> RangeSet:
        """Verified bytes on disk, fetched over our own links, not announced yet."""
        run = self._active_run()
        stats = self._scheduler().statistics(self._ctx.clock())
        from_holders = RangeSet()
        for s in stats.sources:
            if s.source_id.startswith(HOLDER_PREFIX):
                from_holders.update(RangeSet.of_sorted(s.segments))
        return run.part.written.difference(from_holders).difference(self._announced)

    def _offer(self) -> None:
        holdings = self._options.holdings
        if holdings is not None and self._announced:
            holdings.offer(self._key, self._active_run().part.part_path, self._announced.copy())

    def _link_done(self) -> int:
        """Granted bytes done (by our links, or by holders that had them first)."""
        return self._granted.total() - self._link_left()

    def _link_left(self) -> int:
        """Granted bytes our links have not fetched yet."""
        return parts.link_left(self._scheduler(), self._granted)

    def _link_unleased(self) -> int:
        """Granted bytes neither fetched nor leased (to any source) yet."""
        return parts.link_unleased(self._scheduler(), self._granted)

    def _only_at(self, sid: str) -> RangeSet:
        """Bytes we lack that only holder ``sid`` (banned) could serve us."""
        others = [m for m in self._members if m != sid and m not in self._liars]
        return parts.only_at(self._scheduler(), sid, others)

    def _report(self, result: DownloadResult) -> SharingReport:
        return parts.sharing_report(
            result,
            joined=self._was_joined,
            holders_used=self._use_holders,
            holders=self._ever_held,
            banned=self._reported,
            notes=self._notes,
        )

    def _slots(self) -> int:
        return self._config.holder_slots

    def _woken(self) -> None:
        if self._run is not None:
            self._run.wake()

    def _active_run(self) -> SegmentedRun:
        run = self._run
        assert run is not None, "not driving a run"
        return run

    def _scheduler(self) -> Scheduler:
        return self._active_run().scheduler
