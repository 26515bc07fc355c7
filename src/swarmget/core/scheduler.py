"""The piece scheduler: who fetches which bytes of the file, and when.

Theory of operation
-------------------
The file ``[0, size)`` is always split three ways, with no overlap and no gap::

    done      bytes some lease has *claimed* (the driver was told to write them)
    leased    the unclaimed tail ``[frontier, end)`` of every active piece
    missing   everything else: nobody is fetching it

A *source* (the origin itself, or a helper node) has a number of connection *slots*. Each busy
slot holds a *lease*: a stream of bytes from one source covering one *piece* ``[start, end)``.
When a stream delivers ``n`` bytes the driver calls ``on_data``; the scheduler answers which
file offsets to write (the *claim*). Claims only ever move a piece's ``frontier`` forward, so a
byte is claimed exactly once, whoever delivers it first.

The work is split along aria2's lines; this class composes the parts and keeps the driver's
interface:

* ``core.pieces`` (aria2's ``SegmentMan``) owns the bytes: pieces, leases, what is missing,
  leased and claimed, and what was given back (``reassigned``).
* ``core.sources`` keeps each source's health (answers, failures, backoff, bans) and its rate
  estimate; it decides when a source is banned.
* ``core.selection`` (aria2's ``PieceSelector``) picks what an idle slot fetches next: missing
  bytes, a steal, an endgame duplicate or a frontier rescue.

**Partial availability** (issue #15, fetch once per LAN). A source added with ``available``
may serve only those ranges, a set that grows (``availability_grew``): a LAN holder of the
same content advertises the pieces it verified, a group member's origin link the ranges the
group granted it. It is only ever leased bytes within that set; bytes no such source can
serve wait for one that may serve any byte (``unserved`` lists them). A holder that goes is
like any source that goes: its leases are cancelled and their bytes given back.

**Pipelining** (issue #14). Each new range costs a round trip before its first byte (for
a helper, its own request to the origin too). So a stream about to end frees its slot
early: when what its lease has left would take no longer than its source's usual wait for a
first byte (``SchedulerConfig.pipeline``), ``on_data`` marks the lease *ending*
(``Claim.ending``) and ``poll`` gives the slot its next range while the last bytes still
come. Such a slot takes missing bytes (or a rescue) only (``Source.ahead_only``): an
endgame copy or a steal would cut or double streams for a slot that is not idle yet. A
source then briefly holds more leases than slots (at most one more per slot); a helper
lends a stream's slot to its successor for that (``node.helper_service``). Only a lease
that still ends where it was asked to (not cut short by a steal) is marked: the stream on
the wire would otherwise go on past it. A restricted source (a LAN holder, a group
member's origin link: "partial availability") does not pipeline: in the benchmark's "8 at
once" it drew 1-2 % more origin bytes for no time gained (bench/README).

**Reservations** (issue #14). A helper may be asked to start a range before it joins (with
its health check, while the probe still runs): ``reserve`` keeps those bytes for it, so
that its first lease is the stream already on its way (whose wait for its first bytes is not
its source's usual one: not counted in ``first_wait``; until it learnt one, it pipelines by
the longest wait another source had). No other source takes missing
bytes there meanwhile (they may still steal or copy what is leased), unless nothing else is
missing: then an idle source takes the bytes kept for an owner that has not joined (its
check may never answer: a stopped or black-holed helper) rather than leave the end of the
download waiting for that check to time out, and the owner's reservation is dropped. The
owner's next pick takes them, or what of them is still missing (once); removing or banning
the owner, or ``release_reservations`` (the helpers' checks are over), gives them to anyone.

**Failures.** A failed, cancelled or stalled lease keeps what it claimed and gives back only
``[frontier, end)`` (unless a duplicate still works on it); its source is judged
(``core.sources``). A lease with no data for ``stall_timeout`` is revoked. When a copy of a
piece reaches its end first, the other copies are cancelled (they lost the race).

The scheduler never does I/O and never reads the clock: every method takes ``now`` (seconds,
any monotonic origin) and returns the actions the driver must carry out (``Assign``, ``Cancel``,
``Ban``). Timers: ``next_deadline()`` says when ``on_timer(now)`` wants to run. Queries
(``statistics``, ``next_deadline`` ...) change nothing.
"""

from __future__ import annotations

from collections.abc import Container

from swarmget.core.pieces import Lease, Piece, PieceMap
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduling import (
    Action,
    Assign,
    Ban,
    Cancel,
    CancelCause,
    Claim,
    FailureKind,
    KiB,
    LeaseInfo,
    MiB,
    SchedulerConfig,
    SchedulerStats,
    SourceInfo,
    SourceState,
)
from swarmget.core.selection import Duplicate, Pick, Selector, Split, TakeMissing
from swarmget.core.sources import Source, SourceBook

__all__ = [
    "Action",
    "Assign",
    "Ban",
    "Cancel",
    "CancelCause",
    "Claim",
    "FailureKind",
    "KiB",
    "LeaseInfo",
    "MiB",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "SourceInfo",
    "SourceState",
]


class Scheduler:
    """Decides which source fetches which byte range. See the module docstring."""

    def __init__(
        self, size: int, config: SchedulerConfig | None = None, *, done: RangeSet | None = None
    ) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.config = config or SchedulerConfig()
        self._pieces = PieceMap(size, claimed=done)
        self._sources = SourceBook(self.config)
        self._selector = Selector(self.config, self._pieces, self._sources)
        self._next_id = 1  # pieces and leases draw from one counter
        self._steals = 0
        #: lease id -> the end of the range its Assign asked for (see ``_release``)
        self._asked: dict[int, int] = {}
        self._duplicates = 0
        self._missing_seen = self._pieces.missing_version
        #: the longest ``first_wait`` any source has had: what a source that has not learnt
        #: its own yet (its first lease was a reservation) pipelines by
        self._known_wait: float | None = None

    # --- queries -------------------------------------------------------------------------------

    def is_complete(self) -> bool:
        return self._pieces.is_complete()

    def done(self) -> RangeSet:
        """The claimed bytes (written, or about to be, by the driver)."""
        return self._pieces.claimed()

    def has_usable_source(self) -> bool:
        """False when every source is banned or gone (the download cannot finish)."""
        return self._sources.any_alive()

    def in_endgame(self) -> bool:
        return not self._pieces.missing_total() and self._pieces.is_duplicated()

    def next_deadline(self, now: float) -> float | None:
        """When ``on_timer``/``poll`` next have work: a stall timeout, a backoff that ends,
        or the next ``config.refresh`` while a source with a free slot found nothing."""
        oldest = self._pieces.oldest_data()
        times = [] if oldest is None else [oldest + self.config.stall_timeout]
        backoff = self._sources.next_backoff_end(now)
        times += [] if backoff is None else [backoff]
        retry = self._selector.next_refresh()
        if retry is not None and self._sources.any_waiting() and not self.is_complete():
            times.append(retry)  # a source that found nothing asks again then
        return min(times) if times else None

    def any_stalled(self, now: float) -> bool:
        """Has a lease had no data for ``config.stall_timeout`` at ``now``? Unless it has,
        ``on_timer(now)`` revokes nothing (``next_deadline`` also wakes for backoffs and
        refreshes, which ``poll`` handles). O(1)."""
        oldest = self._pieces.oldest_data()
        return oldest is not None and now - oldest >= self.config.stall_timeout

    def contributors(self, rng: ByteRange) -> dict[str, int]:
        """Which sources delivered bytes of ``rng``, and how many each."""
        return self._sources.contributors(rng)

    # --- sources -------------------------------------------------------------------------------

    def add_source(
        self,
        source_id: str,
        slots: int,
        now: float,
        *,
        available: RangeSet | None = None,
        whole_runs: bool = False,
    ) -> None:
        """Make a source available (again). Re-adding a gone source revives it.

        ``available``: the only bytes it may serve (a LAN holder of the same content, or an
        origin link the group granted those ranges); None, the default: any byte. Re-adding a
        live source adds ``available`` to what it may serve. ``whole_runs``: a restricted
        source whose piece may take a whole run of it (a LAN holder), not the run's share
        per free slot (``core.selection``, "restricted sources")."""
        if available is not None:
            self._check_within_file(available)
        self._sources.add(source_id, slots, now, available, whole_runs=whole_runs)

    def expect_slots(self, slots: int) -> None:
        """The swarm is expected to have about ``slots`` connection slots in all (the sources
        alive and those on their way, e.g. the peers the hub listed): new pieces of missing
        bytes are sized for that many slots while fewer are alive. 0 clears it."""
        if slots < 0:
            raise ValueError("slots must be >= 0")
        self._selector.expected_slots = slots

    def reserve(self, owner: str, rng: ByteRange) -> None:
        """Keep ``rng`` for ``owner``'s next lease (see "reservations" in the module
        docstring): no other source takes those missing bytes until ``owner`` took them, was
        removed or banned, or ``release_reservations``. ``owner`` need not be a source yet.
        A new reservation of ``owner`` replaces its old one. ``ValueError`` for an empty
        range, one beyond the file or one overlapping another source's reservation."""
        if rng.is_empty():
            raise ValueError("cannot reserve an empty range")
        self._check_within_file(RangeSet([rng]))
        self._selector.reserve(owner, rng)

    def release_reservations(self, keep: Container[str] = ()) -> None:
        """Every reservation not taken yet is dropped (but those of ``keep``'s owners):
        those bytes are anyone's again."""
        dropped = [owner for owner in self._selector.reserved if owner not in keep]
        for owner in dropped:
            self._selector.unreserve(owner)
        if dropped:
            self._sources.retry_all()  # a source that found nothing may find them now

    def reserved(self) -> dict[str, ByteRange]:
        """The reservations not taken yet, by owner (a copy)."""
        return dict(self._selector.reserved)

    def availability_grew(self, source_id: str, ranges: RangeSet, now: float) -> None:
        """``source_id`` may now serve ``ranges`` too (a holder verified more pieces, or the
        group granted its origin link more). Call ``poll`` to hand out the new work. A source
        that may serve any byte stays so. Raises ``ValueError`` for an unknown source or a
        range outside the file."""
        src = self._sources.get(source_id)
        if src is None:
            raise ValueError(f"unknown source {source_id!r}")
        self._check_within_file(ranges)
        self._sources.grow(src, ranges)
        self._sources.refresh(src)  # it may find work now

    def availability(self, source_id: str) -> RangeSet | None:
        """What ``source_id`` may serve (a copy); None: any byte. ``ValueError`` if unknown."""
        src = self._sources.get(source_id)
        if src is None:
            raise ValueError(f"unknown source {source_id!r}")
        return None if src.available is None else src.available.copy()

    def unserved(self) -> RangeSet:
        """Missing bytes that no source alive may serve: they wait until some source may
        (in a shared fetch, the group must grant them to someone's origin link)."""
        if any(s.available is None for s in self._sources if s.alive()):
            return RangeSet()
        return self._pieces.missing_outside(self._sources.cover())

    def remove_source(self, source_id: str, now: float, reason: str = "gone") -> list[Action]:
        """The source died or left: cancel its leases and give their bytes back."""
        src = self._sources.get(source_id)
        if src is None or src.gone:
            return []
        src.gone = True
        self._sources.refresh(src)
        self._unreserve(src.id)
        return self._drop_leases(src, reason, CancelCause.GONE)

    def ban(self, source_id: str, reason: str) -> list[Action]:
        """Stop using ``source_id`` for this download (it sent bad data, say)."""
        src = self._sources.get(source_id)
        if src is None or src.banned is not None:
            return []
        return self._ban(src, reason)

    def strike(self, source_id: str, now: float, reason: str) -> list[Action]:
        """Count a bad answer against ``source_id`` that no lease reported (a failed check)."""
        src = self._sources.get(source_id)
        if src is None or src.banned is not None:
            return []
        return self._judge(src, now, FailureKind.BROKEN, reason, None)

    def invalidate(self, rng: ByteRange) -> None:
        """Bytes of ``rng`` that were done turned out bad: fetch them again.

        They leave ``done`` and every source's segments and go back to ``missing``.
        """
        self._sources.uncredit(self._pieces.invalidate(rng))

    # --- events from streams -------------------------------------------------------------------

    def on_data(self, lease_id: int, nbytes: int, now: float) -> Claim:
        """The stream of ``lease_id`` delivered the next ``nbytes`` of its range.

        Returns the file range to write (the part not claimed by anyone before) and whether the
        stream is finished. Reports about unknown or cancelled leases are harmless: they get
        ``Claim(None, finished=True)``.
        """
        lease = self._pieces.find_lease(lease_id)
        if lease is None or nbytes < 0:
            return Claim(None, True)
        src = self._sources[lease.source_id]
        write = self._pieces.deliver(lease, nbytes, now)
        self._sources.record(src, now, nbytes, lease.started)
        if not lease.answered and nbytes:
            lease.answered = True
            self._sources.answer(src, lease.id, good=True)
        gap = lease.gap()
        if gap is not None:
            src.gap = gap
        elif lease.deliveries == 1 and nbytes and not lease.early:  # its first data's wait
            wait = now - lease.started
            src.first_wait = wait if src.first_wait is None else (src.first_wait + wait) / 2
            src.waited += wait
            self._known_wait = max(self._known_wait or 0.0, src.first_wait)
        if write is not None:
            src.credit(write)
        piece = self._pieces.piece(lease.piece_id)
        if lease.cursor < piece.end and piece.frontier < piece.end:
            return Claim(write, False, ending=self._ending(lease, piece, src))
        return Claim(write, True, tuple(self._finish(lease, piece, now)))

    def on_failure(
        self,
        lease_id: int,
        now: float,
        kind: FailureKind = FailureKind.RETRYABLE,
        *,
        reason: str = "",
        retry_after: float | None = None,
    ) -> list[Action]:
        """The stream of ``lease_id`` ended before its range was complete."""
        lease = self._pieces.find_lease(lease_id)
        if lease is None:
            return []
        src = self._sources[lease.source_id]
        self._release(lease, failed=True)
        return self._judge(src, now, kind, reason or kind.value, retry_after, lease.id)

    def on_timer(self, now: float) -> list[Action]:
        """Revoke stalled leases. Call at (or after) ``next_deadline()``."""
        actions: list[Action] = []
        for lease in self._pieces.stalled(now, self.config.stall_timeout):
            if self._pieces.find_lease(lease.id) is None:
                continue  # released above (its source was banned)
            src = self._sources[lease.source_id]
            reason = f"no data for {now - lease.last_data:.1f}s"
            actions.append(Cancel(lease.id, src.id, f"stalled: {reason}", CancelCause.STALLED))
            self._release(lease)
            actions += self._judge(src, now, FailureKind.STALLED, reason, None)
        return actions

    def poll(self, now: float) -> list[Action]:
        """Hand work to every idle slot that can take some."""
        actions: list[Action] = []
        while True:
            progressed = False
            if self._selector.refresh(now) or self._pieces.missing_version != self._missing_seen:
                self._missing_seen = self._pieces.missing_version
                self._sources.retry_all()  # what was worked out changed: everyone may ask
            for src in self._sources.usable_by_speed(now):
                usable = src.usable(now)
                pick = self._selector.pick(src, now) if usable else None
                if pick is not None:
                    actions.append(self._carry_out(pick, src, now))
                    progressed = True
                else:
                    self._sources.found_nothing(src, asked=usable)
            if not progressed:
                return actions

    # --- snapshots -----------------------------------------------------------------------------

    def statistics(self, now: float) -> SchedulerStats:
        pieces = self._pieces
        return SchedulerStats(
            size=self.size,
            done=pieces.claimed_total(),
            missing=pieces.missing_total(),
            leased=pieces.leased_total(),
            complete=self.is_complete(),
            in_endgame=self.in_endgame(),
            sources=tuple(s.info(now) for s in self._sources),
            leases=self.leases(),
            reassigned_bytes=pieces.reassigned,
            steals=self._steals,
            duplicates=self._duplicates,
        )

    def leases(self) -> tuple[LeaseInfo, ...]:
        """The leases in flight (``statistics().leases`` without the rest: O(leases))."""
        return tuple(self._lease_info(lease) for lease in self._pieces.leases())

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (used by tests)."""
        self._pieces.check_invariants()
        self._pieces.check_time_order()
        self._sources.check_invariants(self._pieces.claimed())
        for lease in self._pieces.leases():
            src = self._sources[lease.source_id]
            assert lease.id in src.leases
            rng = self._pieces.lease_range(lease)
            if lease.cursor < rng.end:
                tail = ByteRange(max(lease.cursor, rng.start), rng.end)
                assert src.may_serve(tail), f"{src.id} cannot serve {tail}"

    def _lease_info(self, lease: Lease) -> LeaseInfo:
        rng = self._pieces.lease_range(lease)
        return LeaseInfo(
            lease.id, lease.source_id, rng, lease.cursor, lease.duplicate, lease.started
        )

    # --- internals -----------------------------------------------------------------------------

    def _carry_out(self, pick: Pick, src: Source, now: float) -> Assign:
        """Lease what ``pick`` says to ``src``."""
        pieces = self._pieces
        if isinstance(pick, TakeMissing):
            piece_id = self._take_id()
            lease = pieces.lease_missing(
                pick.max_length,
                piece_id=piece_id,
                lease_id=self._take_id(),
                source_id=src.id,
                now=now,
                within=pick.within,
            )
            lease.early = pick.reserved
        elif isinstance(pick, Split):
            self._steals += 1
            piece = pieces.split(pick.piece, pick.at, piece_id=self._take_id())
            lease = pieces.add_lease(piece, lease_id=self._take_id(), source_id=src.id, now=now)
        else:
            assert isinstance(pick, Duplicate)
            self._duplicates += 1
            lease = pieces.add_lease(
                pick.piece, lease_id=self._take_id(), source_id=src.id, now=now, duplicate=True
            )
        self._sources.hold(src, lease.id, now)
        end = pieces.piece(lease.piece_id).end
        self._asked[lease.id] = end
        return Assign(lease.id, src.id, ByteRange(lease.cursor, end), lease.duplicate)

    def _ending(self, lease: Lease, piece: Piece, src: Source) -> bool:
        """Is ``lease`` about to end (see "pipelining")? Marks it so, once. A source that
        has not learnt its wait for a first byte yet (its first lease was a reservation)
        goes by the longest any source had."""
        factor = self.config.pipeline
        wait = src.first_wait if src.first_wait is not None else self._known_wait
        if not factor or wait is None or lease.id in src.ending or src.available is not None:
            return False  # (a restricted source does not pipeline: see "pipelining")
        if self._asked.get(lease.id) != piece.end:
            return False  # cut short: its stream goes on past the piece's end
        lead = factor * min(wait, self.config.pipeline_most) * src.last_rate / src.slots
        if piece.end - lease.cursor > lead:
            return False
        self._sources.ending(src, lease.id)
        return True

    def _check_within_file(self, ranges: RangeSet) -> None:
        bounds = ranges.bounds()
        if bounds is not None and bounds.end > self.size:
            raise ValueError(f"{bounds} reaches beyond the file's {self.size} bytes")

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _finish(self, lease: Lease, piece: Piece, now: float) -> list[Action]:
        """``lease`` reached its end (or its piece is done): free it, cancel losing copies.
        A losing copy that had gone silent leaves its source suspect: it showed no progress
        (the copy was made because of that), so it gets no new work until it delivers."""
        self._release(lease)
        actions: list[Action] = []
        if piece.remaining == 0:
            for other_id in list(piece.leases):
                other = self._pieces.lease(other_id)
                loser = self._sources[other.source_id]
                started = other.deliveries > 0
                if now - other.last_data >= loser.silence(self.config, started=started):
                    loser.suspect = True
                lost = "another copy finished first"
                actions.append(Cancel(other_id, other.source_id, lost, CancelCause.LOST_RACE))
                self._release(other)
        return actions

    def _release(self, lease: Lease, *, failed: bool = False) -> None:
        """Free ``lease``; one that had not reached the end it was asked for and did not
        fail by itself is a stream *we* cut short (a split, a lost race, a cancel): counted
        on its source (``SourceInfo.cut``; an origin stream cut so wastes what was in
        flight, docs/fetch-once.md §9.1)."""
        src = self._sources[lease.source_id]
        asked = self._asked.pop(lease.id, None)
        if not failed and asked is not None and lease.cursor < asked:
            src.cuts += 1
        self._sources.let_go(src, lease.id)
        self._pieces.release(lease)

    def _judge(
        self,
        src: Source,
        now: float,
        kind: FailureKind,
        reason: str,
        retry_after: float | None,
        lease_id: int = 0,
    ) -> list[Action]:
        ban = self._sources.judge(src, now, kind, reason, retry_after, lease_id)
        return [] if ban is None else self._ban(src, ban)

    def _ban(self, src: Source, reason: str) -> list[Action]:
        src.banned = reason
        self._sources.refresh(src)
        self._unreserve(src.id)
        dropped = self._drop_leases(src, f"source banned: {reason}", CancelCause.BANNED)
        return [Ban(src.id, reason), *dropped]

    def _unreserve(self, owner: str) -> None:
        if self._selector.unreserve(owner) is not None:
            self._sources.retry_all()  # those bytes are anyone's again

    def _drop_leases(self, src: Source, reason: str, cause: CancelCause) -> list[Action]:
        actions: list[Action] = []
        for lease_id in sorted(src.leases):
            actions.append(Cancel(lease_id, src.id, reason, cause))
            self._release(self._pieces.lease(lease_id))
        return actions
