"""The piece scheduler: who fetches which bytes of the file, and when.

Theory of operation
-------------------
The file ``[0, size)`` is always split three ways, with no overlap and no gap::

    done      bytes some lease has *claimed* (they are, or are about to be, on disk)
    leased    the unclaimed tail ``[frontier, end)`` of every active piece
    missing   everything else: nobody is fetching it

A *source* (the origin itself, or a helper node) has a number of connection *slots*. Each busy
slot holds a *lease*: a stream of bytes from one source covering one *piece* ``[start, end)``.
When a stream delivers ``n`` bytes the driver calls ``on_data``; the scheduler answers which
file offsets to write (the *claim*). Claims only ever move a piece's ``frontier`` forward, so a
byte is claimed exactly once, whoever delivers it first:

* **Stealing.** When nothing is missing and a slot is idle, the largest remaining in-flight piece
  is split (aria2's halving, weighted by the two sources' rates): the holder's piece ``end``
  shrinks and the thief gets ``[split, old_end)``. The holder is told ``finished`` when it
  reaches its new end.
* **Endgame.** When nothing can be split any more, an idle source that is faster than a piece's
  holder gets a *duplicate* lease on ``[frontier, end)``. Both stream; whichever is ahead claims
  the bytes; the first to reach ``end`` wins and the other lease is cancelled.
* **Frontier rescue.** The whole-file hash can only follow the contiguous prefix of done bytes,
  so a slow stream on a low piece makes everything beyond it wait to be hashed after the last
  byte lands. When ``rescue_backlog`` bytes (at most an eighth of the file) are done beyond
  such a piece and its holder needs more than ``1.5 * rescue_keep`` seconds to finish it, an
  idle slot about as fast as the holder takes all of the piece but the holder's next
  ``rescue_keep`` seconds (a split); a faster slot, if too little is left to split, gets a
  duplicate of it (as in the endgame). Either way before it takes new work.
* **Failures.** A failed, cancelled or stalled lease keeps what it claimed and gives back only
  ``[frontier, end)`` (unless a duplicate still works on it). A source that fails repeatedly
  without progress is backed off exponentially, then banned. A lease is one *answer* of its
  source: good once bytes flow, bad when it ends ``BROKEN`` (a wrong Content-Range, a short
  body, bad data). A source is judged by its last ``judge_window`` answers: it is banned when
  at least ``max_broken`` of them are bad and the bad outnumber the good; otherwise every bad
  answer only backs it off. The last usable source is never banned while any of its recent
  answers was good: it is the only way left to finish, and it still delivers. A lease with no
  data for ``stall_timeout`` is revoked.

The scheduler never does I/O and never reads the clock: every method takes ``now`` (seconds,
any monotonic origin) and returns the actions the driver must carry out (``Assign``, ``Cancel``,
``Ban``). Timers: ``next_deadline()`` says when ``on_timer(now)`` wants to run.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from swarmget.core.backoff import exponential_backoff
from swarmget.core.ranges import ByteRange, RangeSet

KiB = 1024
MiB = 1024 * KiB

_RATE_WINDOW = 5.0  # seconds of history behind a rate estimate


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """Tuning knobs; the defaults suit files from a few MiB to tens of GiB."""

    min_piece: int = 256 * KiB
    max_piece: int = 16 * MiB
    #: aim for this many pieces per connection slot, so a slow source cannot hold up the end
    pieces_per_slot: int = 4
    #: never split a remainder into parts smaller than this
    min_steal: int = 128 * KiB
    stall_timeout: float = 15.0
    #: consecutive failures without progress before a source is banned
    max_failures: int = 5
    #: BROKEN answers (lies, short bodies) in the last ``judge_window`` answers before a source
    #: is banned, progress or not (if they also outnumber its good answers there)
    max_broken: int = 3
    #: how many of a source's most recent answers (leases) it is judged by
    judge_window: int = 12
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    steal: bool = True
    endgame: bool = True
    #: an endgame duplicate is only worth it if the holder needs longer than this to finish
    endgame_min_eta: float = 0.5
    #: help a slow piece that holds up the contiguous done prefix once this many bytes (or
    #: an eighth of a smaller file) are done beyond it (0: never; the endgame still copies
    #: it at the very end)
    rescue_backlog: int = 32 * MiB
    #: ... by leaving its holder this many seconds of its stream and giving the rest to an
    #: idle slot about as fast
    rescue_keep: float = 1.0
    #: piece boundaries fall on multiples of this (a manifest's piece size: then most
    #: verifiable pieces come from one source, which is who to blame when one is bad)
    align: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.min_piece <= self.max_piece:
            raise ValueError("need 0 < min_piece <= max_piece")
        if self.min_steal <= 0 or self.stall_timeout <= 0 or self.max_failures < 1:
            raise ValueError("min_steal, stall_timeout and max_failures must be positive")
        if self.align < 1:
            raise ValueError("align must be >= 1")
        if self.max_broken < 1 or self.judge_window < self.max_broken:
            raise ValueError("need 1 <= max_broken <= judge_window")


class FailureKind(enum.Enum):
    RETRYABLE = "retryable"  # connection reset, timeout, 5xx
    RATE_LIMITED = "rate_limited"  # 429/503: wait retry_after, no blame
    BROKEN = "broken"  # the source answered wrongly
    STALLED = "stalled"  # no data for stall_timeout (decided by on_timer)
    CANCELLED = "cancelled"  # the driver gave up on it (no blame)


class SourceState(enum.Enum):
    ACTIVE = "active"  # holds at least one lease
    IDLE = "idle"  # usable, holds nothing
    BACKOFF = "backoff"  # failed recently; usable again after a delay
    BANNED = "banned"  # will not be used again for this download
    GONE = "gone"  # removed by the driver (crashed, left)


# --- actions: what the driver must do ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign:
    """Start streaming ``range`` from ``source_id``; report with ``lease_id``."""

    lease_id: int
    source_id: str
    range: ByteRange
    duplicate: bool = False


class CancelCause(enum.Enum):
    """Why a lease was revoked (the ``reason`` text is for people; this is for code)."""

    STALLED = "stalled"  # no data for too long
    LOST_RACE = "lost_race"  # endgame: another copy of the piece finished first
    BANNED = "banned"  # its source was banned
    GONE = "gone"  # its source died or left


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the stream of ``lease_id`` now; do not report on it any more."""

    lease_id: int
    source_id: str
    reason: str  # for people
    cause: CancelCause  # for code


@dataclass(frozen=True, slots=True)
class Ban:
    """Do not use ``source_id`` again for this download."""

    source_id: str
    reason: str


Action = Assign | Cancel | Ban


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``on_data``: write ``write`` (None: nothing); stop if ``finished``."""

    write: ByteRange | None
    finished: bool
    actions: tuple[Action, ...] = ()


# --- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    lease_id: int
    source_id: str
    range: ByteRange  # the piece's current [frontier, end)
    cursor: int
    duplicate: bool
    started: float


@dataclass(frozen=True, slots=True)
class SourceInfo:
    source_id: str
    state: SourceState
    slots: int
    active_leases: int
    received: int  # bytes streamed (including duplicates that lost)
    claimed: int  # bytes that ended up in the file
    rate: float  # bytes/s over the last few seconds
    failures: int
    segments: tuple[ByteRange, ...]  # which parts of the file this source delivered
    ban_reason: str | None


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    size: int
    done: int
    missing: int
    leased: int
    complete: bool
    in_endgame: bool
    sources: tuple[SourceInfo, ...]
    leases: tuple[LeaseInfo, ...]
    reassigned_bytes: int  # bytes given back to `missing` after a failure
    steals: int
    duplicates: int


# --- internal state ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Piece:
    id: int
    start: int
    end: int
    frontier: int
    leases: list[int] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.end - self.frontier


@dataclass(slots=True)
class _Lease:
    id: int
    source_id: str
    piece_id: int
    cursor: int
    started: float
    last_data: float
    duplicate: bool
    received: int = 0
    samples: _RateWindow = field(default_factory=lambda: _RateWindow())
    #: its answer was recorded as good (bytes flowed) in its source's window
    answered: bool = False

    def rate(self, now: float) -> float | None:
        return _windowed_rate(self.samples, now, self.started)


@dataclass(slots=True)
class _Source:
    id: str
    slots: int
    added: float
    leases: set[int] = field(default_factory=set)
    consecutive_failures: int = 0
    broken: int = 0  # BROKEN answers ever (for statistics)
    #: the most recent answers: (lease id or 0, good?), oldest first
    answers: deque[tuple[int, bool]] = field(default_factory=deque)
    failures: int = 0
    not_before: float = 0.0
    banned: str | None = None
    gone: bool = False
    received: int = 0
    claimed: int = 0
    segments: RangeSet = field(default_factory=RangeSet)
    samples: _RateWindow = field(default_factory=lambda: _RateWindow())
    first_data: float | None = None
    last_rate: float = 0.0

    def usable(self, now: float) -> bool:
        return (
            self.banned is None
            and not self.gone
            and now >= self.not_before
            and len(self.leases) < self.slots
        )

    def rate(self, now: float) -> float | None:
        if self.first_data is None:
            return None
        if not self.leases and not self.samples:
            return self.last_rate  # idle: remember how fast it was when it worked
        rate = _windowed_rate(self.samples, now, self.first_data)
        if rate is not None and self.samples:
            self.last_rate = rate
        return rate

    def slot_rate(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate is None else rate / self.slots


class _RateWindow:
    """Bytes seen in the last ``_RATE_WINDOW`` seconds, with a running total."""

    __slots__ = ("_samples", "total")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self.total = 0

    def __bool__(self) -> bool:
        return bool(self._samples)

    def append(self, sample: tuple[float, int]) -> None:
        self._samples.append(sample)
        self.total += sample[1]

    def prune(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - _RATE_WINDOW:
            self.total -= self._samples.popleft()[1]


def _align_up(offset: int, align: int) -> int:
    return -(-offset // align) * align


def _windowed_rate(samples: _RateWindow, now: float, since: float) -> float | None:
    samples.prune(now)
    if not samples:
        return 0.0 if now - since >= _RATE_WINDOW else None
    span = max(now - max(since, now - _RATE_WINDOW), 0.05)
    return samples.total / span


# --- the scheduler -----------------------------------------------------------------------------


class Scheduler:
    """Decides which source fetches which byte range. See the module docstring."""

    def __init__(
        self, size: int, config: SchedulerConfig | None = None, *, done: RangeSet | None = None
    ) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.config = config or SchedulerConfig()
        whole = ByteRange(0, size)
        self._done = RangeSet(x for r in (done or ()) if (x := r.intersect(whole)) is not None)
        self._missing = self._done.missing(whole)
        self._pieces: dict[int, _Piece] = {}
        self._leases: dict[int, _Lease] = {}
        self._sources: dict[str, _Source] = {}
        self._next_id = 1
        self._reassigned = 0
        self._steals = 0
        self._duplicates = 0

    # --- queries -------------------------------------------------------------------------------

    def is_complete(self) -> bool:
        return self._done.total() == self.size

    def done(self) -> RangeSet:
        return self._done.copy()

    def has_usable_source(self) -> bool:
        """False when every source is banned or gone (the download cannot finish)."""
        return any(s.banned is None and not s.gone for s in self._sources.values())

    def in_endgame(self) -> bool:
        return not self._missing and any(len(p.leases) > 1 for p in self._pieces.values())

    def next_deadline(self, now: float) -> float | None:
        """When ``on_timer``/``poll`` next have work: a stall timeout, or a backoff that ends."""
        times = [lease.last_data + self.config.stall_timeout for lease in self._leases.values()]
        times += [
            s.not_before
            for s in self._sources.values()
            if s.not_before > now and s.banned is None and not s.gone
        ]
        return min(times) if times else None

    # --- sources -------------------------------------------------------------------------------

    def add_source(self, source_id: str, slots: int, now: float) -> None:
        """Make a source available (again). Re-adding a gone source revives it."""
        if slots < 1:
            raise ValueError("a source needs at least one slot")
        src = self._sources.get(source_id)
        if src is None:
            self._sources[source_id] = _Source(source_id, slots, now)
        elif src.banned is None:
            src.slots, src.gone = slots, False

    def remove_source(self, source_id: str, now: float, reason: str = "gone") -> list[Action]:
        """The source died or left: cancel its leases and give their bytes back."""
        src = self._sources.get(source_id)
        if src is None or src.gone:
            return []
        src.gone = True
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
        return self._blame(src, now, FailureKind.BROKEN, reason, None)

    def contributors(self, rng: ByteRange) -> dict[str, int]:
        """Which sources delivered bytes of ``rng``, and how many each."""
        out: dict[str, int] = {}
        for src in self._sources.values():
            n = sum(len(x) for r in src.segments if (x := r.intersect(rng)) is not None)
            if n:
                out[src.id] = n
        return out

    def invalidate(self, rng: ByteRange) -> None:
        """Bytes of ``rng`` that were done turned out bad: fetch them again.

        They leave ``done`` and every source's segments and go back to ``missing``.
        """
        bad = RangeSet(x for r in self._done if (x := r.intersect(rng)) is not None)
        for r in bad:
            self._done.subtract(r)
            self._missing.add(r)
            for src in self._sources.values():
                if src.segments.overlaps(r):
                    src.claimed -= sum(
                        len(x) for s in src.segments if (x := s.intersect(r)) is not None
                    )
                    src.segments.subtract(r)
        self._reassigned += bad.total()

    # --- events from streams -------------------------------------------------------------------

    def on_data(self, lease_id: int, nbytes: int, now: float) -> Claim:
        """The stream of ``lease_id`` delivered the next ``nbytes`` of its range.

        Returns the file range to write (the part not claimed by anyone before) and whether the
        stream is finished. Reports about unknown or cancelled leases are harmless: they get
        ``Claim(None, finished=True)``.
        """
        lease = self._leases.get(lease_id)
        if lease is None or nbytes < 0:
            return Claim(None, True)
        piece = self._pieces[lease.piece_id]
        src = self._sources[lease.source_id]
        got = ByteRange(lease.cursor, lease.cursor + nbytes)
        lease.cursor = got.end
        lease.last_data = now
        self._count_received(lease, src, nbytes, now)
        if not lease.answered and nbytes:
            lease.answered = True
            self._answer(src, lease.id, good=True)
        write = self._claim(piece, src, got)
        if write is not None:
            src.consecutive_failures = 0
        if lease.cursor < piece.end and piece.frontier < piece.end:
            return Claim(write, False)
        return Claim(write, True, tuple(self._finish_piece_lease(lease, piece)))

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
        lease = self._leases.get(lease_id)
        if lease is None:
            return []
        src = self._sources[lease.source_id]
        self._release(lease)
        return self._blame(src, now, kind, reason or kind.value, retry_after, lease.id)

    def on_timer(self, now: float) -> list[Action]:
        """Revoke stalled leases. Call at (or after) ``next_deadline()``."""
        actions: list[Action] = []
        for lease in list(self._leases.values()):
            if lease.id in self._leases and now - lease.last_data >= self.config.stall_timeout:
                src = self._sources[lease.source_id]
                reason = f"no data for {now - lease.last_data:.1f}s"
                actions.append(Cancel(lease.id, src.id, f"stalled: {reason}", CancelCause.STALLED))
                self._release(lease)
                actions += self._blame(src, now, FailureKind.STALLED, reason, None)
        return actions

    def poll(self, now: float) -> list[Action]:
        """Hand work to every idle slot that can take some."""
        actions: list[Action] = []
        while True:
            progressed = False
            for src in self._sources_by_speed(now):
                if src.usable(now):
                    assign = self._next_work(src, now)
                    if assign is not None:
                        actions.append(assign)
                        progressed = True
            if not progressed:
                return actions

    # --- snapshots -----------------------------------------------------------------------------

    def statistics(self, now: float) -> SchedulerStats:
        leased = sum(p.remaining for p in self._pieces.values())
        return SchedulerStats(
            size=self.size,
            done=self._done.total(),
            missing=self._missing.total(),
            leased=leased,
            complete=self.is_complete(),
            in_endgame=self.in_endgame(),
            sources=tuple(self._source_info(s, now) for s in self._sources.values()),
            leases=tuple(self._lease_info(lease) for lease in self._leases.values()),
            reassigned_bytes=self._reassigned,
            steals=self._steals,
            duplicates=self._duplicates,
        )

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (used by tests)."""
        parts = [list(self._done), list(self._missing)]
        parts.append([ByteRange(p.frontier, p.end) for p in self._pieces.values() if p.remaining])
        flat = sorted(r for group in parts for r in group)
        pos = 0
        for r in flat:
            assert r.start == pos, f"gap or overlap at {pos}: {r}"
            pos = r.end
        assert pos == self.size, f"coverage ends at {pos}, size {self.size}"
        seen = RangeSet()
        for src in self._sources.values():
            for r in src.segments:
                assert not seen.overlaps(r), f"{r} claimed by two sources"
                seen.add(r)
        for r in seen:
            assert self._done.contains(r), f"{r} claimed but not done"
        for lease in self._leases.values():
            piece = self._pieces[lease.piece_id]
            assert lease.id in piece.leases
            assert lease.id in self._sources[lease.source_id].leases

    # --- internals: claiming -------------------------------------------------------------------

    def _count_received(self, lease: _Lease, src: _Source, nbytes: int, now: float) -> None:
        lease.received += nbytes
        lease.samples.append((now, nbytes))
        src.received += nbytes
        src.samples.append((now, nbytes))
        if src.first_data is None:
            src.first_data = lease.started

    def _claim(self, piece: _Piece, src: _Source, got: ByteRange) -> ByteRange | None:
        write = got.intersect(ByteRange(piece.frontier, piece.end))
        if write is None:
            return None
        piece.frontier = write.end
        self._done.add(write)
        src.segments.add(write)
        src.claimed += write.length
        return write

    def _finish_piece_lease(self, lease: _Lease, piece: _Piece) -> list[Action]:
        """``lease`` reached its end (or its piece is done): free it, cancel losing copies."""
        self._release(lease)
        actions: list[Action] = []
        if piece.remaining == 0:
            for other_id in list(piece.leases):
                other = self._leases[other_id]
                lost = "another copy finished first"
                actions.append(Cancel(other_id, other.source_id, lost, CancelCause.LOST_RACE))
                self._release(other)
        return actions

    def _release(self, lease: _Lease) -> None:
        """Forget a lease; give its piece's unclaimed bytes back if nobody else works on it."""
        del self._leases[lease.id]
        self._sources[lease.source_id].leases.discard(lease.id)
        piece = self._pieces[lease.piece_id]
        piece.leases.remove(lease.id)
        if piece.leases:
            return
        if piece.remaining:
            self._missing.add(ByteRange(piece.frontier, piece.end))
            self._reassigned += piece.remaining
        del self._pieces[piece.id]

    # --- internals: blame ----------------------------------------------------------------------

    def _blame(
        self,
        src: _Source,
        now: float,
        kind: FailureKind,
        reason: str,
        retry_after: float | None,
        lease_id: int = 0,
    ) -> list[Action]:
        if kind is FailureKind.CANCELLED:
            return []
        src.failures += 1
        if kind is FailureKind.RATE_LIMITED:
            wait = retry_after if retry_after is not None else self._backoff(1)
            src.not_before = max(src.not_before, now + wait)
            return []
        src.consecutive_failures += 1
        if kind is FailureKind.BROKEN:
            src.broken += 1
            self._answer(src, lease_id, good=False)
            bad = sum(1 for _, good in src.answers if not good)
            too_many = bad >= self.config.max_broken and 2 * bad > len(src.answers)
            if too_many and not self._is_last_hope(src):
                last = len(src.answers)
                return self._ban(src, f"{bad} of its last {last} answers bad, last: {reason}")
        if src.consecutive_failures >= self.config.max_failures:
            return self._ban(src, f"{src.consecutive_failures} failures in a row, last: {reason}")
        src.not_before = max(src.not_before, now + self._backoff(src.consecutive_failures))
        return []

    def _answer(self, src: _Source, lease_id: int, *, good: bool) -> None:
        """Record an answer of ``src``; a bad end of a lease replaces its good start."""
        if not good and lease_id:
            for i, (seen, _) in enumerate(src.answers):
                if seen == lease_id:
                    src.answers[i] = (lease_id, False)
                    return
        src.answers.append((lease_id, good))
        while len(src.answers) > self.config.judge_window:
            src.answers.popleft()

    def _is_last_hope(self, src: _Source) -> bool:
        """``src`` is the only usable source left and recently delivered (see the docstring)."""
        if not any(good for _, good in src.answers):
            return False
        return not any(
            s.banned is None and not s.gone for s in self._sources.values() if s is not src
        )

    def _backoff(self, failures: int) -> float:
        config = self.config
        return exponential_backoff(
            failures, initial=config.backoff_initial, maximum=config.backoff_max
        )

    def _ban(self, src: _Source, reason: str) -> list[Action]:
        src.banned = reason
        dropped = self._drop_leases(src, f"source banned: {reason}", CancelCause.BANNED)
        return [Ban(src.id, reason), *dropped]

    def _drop_leases(self, src: _Source, reason: str, cause: CancelCause) -> list[Action]:
        actions: list[Action] = []
        for lease_id in sorted(src.leases):
            actions.append(Cancel(lease_id, src.id, reason, cause))
            self._release(self._leases[lease_id])
        return actions

    # --- internals: handing out work -----------------------------------------------------------

    def _sources_by_speed(self, now: float) -> list[_Source]:
        def key(src: _Source) -> tuple[int, float]:
            rate = src.slot_rate(now)
            return (0, 0.0) if rate is None else (1, -rate)  # unknown first: measure them

        return sorted(self._sources.values(), key=key)

    def _next_work(self, src: _Source, now: float) -> Assign | None:
        rescue = self._rescue_frontier(src, now)
        if rescue is not None:
            return rescue
        if self._missing:
            return self._assign_missing(src, now)
        if self.config.steal:
            stolen = self._steal(src, now)
            if stolen is not None:
                return stolen
        if self.config.endgame:
            return self._duplicate(src, now)
        return None

    def _piece_size(self) -> int:
        slots = sum(s.slots for s in self._sources.values() if s.banned is None and not s.gone)
        target = self._missing.total() // max(1, slots * self.config.pieces_per_slot)
        return max(self.config.min_piece, min(self.config.max_piece, target))

    def _assign_missing(self, src: _Source, now: float) -> Assign:
        first = self._missing.first()
        assert first is not None
        size = self._piece_size()
        if first.length - size < self.config.min_piece:
            size = first.length  # do not leave a sliver behind
        size = _align_up(first.start + size, self.config.align) - first.start
        rng = self._missing.pop_first(size)
        assert rng is not None
        return self._new_lease(src, self._new_piece(rng.start, rng.end), rng.start, now)

    def _new_piece(self, start: int, end: int) -> _Piece:
        piece = _Piece(self._take_id(), start, end, start)
        self._pieces[piece.id] = piece
        return piece

    def _new_lease(
        self, src: _Source, piece: _Piece, cursor: int, now: float, duplicate: bool = False
    ) -> Assign:
        lease = _Lease(self._take_id(), src.id, piece.id, cursor, now, now, duplicate)
        self._leases[lease.id] = lease
        piece.leases.append(lease.id)
        src.leases.add(lease.id)
        return Assign(lease.id, src.id, ByteRange(cursor, piece.end), duplicate)

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _steal(self, thief: _Source, now: float) -> Assign | None:
        """Split the largest single-copy piece in flight; the thief takes its far end."""
        candidates = [p for p in self._pieces.values() if len(p.leases) == 1]
        for piece in sorted(candidates, key=lambda p: p.remaining, reverse=True):
            split = self._split_point(piece, thief, now)
            if split is not None:
                return self._split(piece, split, thief, now)
        return None

    def _split(self, piece: _Piece, split: int, thief: _Source, now: float) -> Assign:
        """The holder keeps ``[frontier, split)``; the thief gets ``[split, end)``."""
        self._steals += 1
        new = self._new_piece(split, piece.end)
        piece.end = split
        return self._new_lease(thief, new, split, now)

    def _split_point(self, piece: _Piece, thief: _Source, now: float) -> int | None:
        holder = self._leases[piece.leases[0]]
        if holder.cursor != piece.frontier:
            return None
        r_hold = holder.rate(now)
        r_thief = thief.slot_rate(now)
        share = 0.5
        if r_hold and r_thief:
            share = min(0.9, max(0.1, r_hold / (r_hold + r_thief)))
        split = _align_up(piece.frontier + int(piece.remaining * share), self.config.align)
        keep = split - piece.frontier
        if keep < self.config.min_steal or piece.end - split < self.config.min_steal:
            return None
        return split

    def _duplicate(self, src: _Source, now: float) -> Assign | None:
        """Endgame: copy the slowest-to-finish piece onto this idle, faster source."""
        best: tuple[float, _Piece] | None = None
        mine = {self._leases[i].piece_id for i in src.leases}
        for piece in self._pieces.values():
            if len(piece.leases) != 1 or piece.id in mine or not piece.remaining:
                continue
            holder = self._leases[piece.leases[0]]
            eta = self._eta(holder, piece, now)
            if eta < self.config.endgame_min_eta or not self._faster(src, holder, now):
                continue
            if best is None or eta > best[0]:
                best = (eta, piece)
        if best is None:
            return None
        self._duplicates += 1
        return self._new_lease(src, best[1], best[1].frontier, now, duplicate=True)

    def _rescue_frontier(self, src: _Source, now: float) -> Assign | None:
        """Help the lowest slow piece with ``rescue_backlog`` (or size / 8) done bytes beyond
        it and more than ``1.5 * rescue_keep`` seconds to go for its holder (see ``_rescue``)."""
        if not self.config.rescue_backlog or src.slot_rate(now) is None:
            return None  # a source not measured yet is no rescue
        first_missing = self._missing.first()
        limit = self.size if first_missing is None else first_missing.start
        threshold = min(self.config.rescue_backlog, max(1, self.size // 8))
        done = list(self._done)  # sorted, disjoint
        done_total = sum(r.length for r in done)
        soon = max(self.config.endgame_min_eta, 1.5 * self.config.rescue_keep)
        mine = {self._leases[i].piece_id for i in src.leases}
        pieces = sorted((p for p in self._pieces.values() if p.remaining), key=lambda p: p.frontier)
        i = before = 0  # before: done bytes in done[:i], all below the piece's frontier
        for piece in pieces:
            if piece.frontier > limit:
                break  # unleased bytes come first: the next assignment takes them
            while i < len(done) and done[i].end <= piece.frontier:
                before += done[i].length
                i += 1
            partial = piece.frontier - done[i].start if i < len(done) else 0
            beyond = done_total - before - max(0, partial)
            if beyond < threshold:
                break  # later pieces hold up even less
            if len(piece.leases) != 1 or piece.id in mine:
                continue
            holder = self._leases[piece.leases[0]]
            if self._eta(holder, piece, now) <= soon:
                continue  # e.g. what a rescue left it: let it finish
            rescue = self._rescue(src, piece, holder, now)
            if rescue is not None:
                return rescue
        return None

    def _rescue(self, src: _Source, piece: _Piece, holder: _Lease, now: float) -> Assign | None:
        """Split ``piece`` if ``src`` is about as fast as its holder (the two then work side
        by side), else duplicate it if ``src`` is faster; None if neither is worth it."""
        mine, theirs = src.slot_rate(now), holder.rate(now)
        if holder.cursor == piece.frontier and (not theirs or (mine or 0) >= 0.8 * theirs):
            ahead = int((theirs or 0) * self.config.rescue_keep)
            split = _align_up(piece.frontier + max(self.config.min_steal, ahead), self.config.align)
            if piece.end - split >= self.config.min_steal:
                return self._split(piece, split, src, now)
        if not self._faster(src, holder, now):
            return None
        self._duplicates += 1
        return self._new_lease(src, piece, piece.frontier, now, duplicate=True)

    def _eta(self, holder: _Lease, piece: _Piece, now: float) -> float:
        rate = holder.rate(now)
        if not rate:
            return float("inf") if now - holder.started > self.config.endgame_min_eta else 0.0
        return piece.remaining / rate

    def _faster(self, src: _Source, holder: _Lease, now: float) -> bool:
        mine = src.slot_rate(now)
        theirs = holder.rate(now)
        if theirs is None or theirs == 0:
            return True
        return mine is None or mine > theirs * 1.2

    # --- internals: snapshots ------------------------------------------------------------------

    def _source_info(self, src: _Source, now: float) -> SourceInfo:
        return SourceInfo(
            source_id=src.id,
            state=self._source_state(src, now),
            slots=src.slots,
            active_leases=len(src.leases),
            received=src.received,
            claimed=src.claimed,
            rate=src.rate(now) or 0.0,
            failures=src.failures,
            segments=tuple(src.segments),
            ban_reason=src.banned,
        )

    @staticmethod
    def _source_state(src: _Source, now: float) -> SourceState:
        if src.banned is not None:
            return SourceState.BANNED
        if src.gone:
            return SourceState.GONE
        if src.leases:
            return SourceState.ACTIVE
        return SourceState.BACKOFF if now < src.not_before else SourceState.IDLE

    def _lease_info(self, lease: _Lease) -> LeaseInfo:
        piece = self._pieces[lease.piece_id]
        return LeaseInfo(
            lease.id,
            lease.source_id,
            ByteRange(piece.frontier, piece.end),
            lease.cursor,
            lease.duplicate,
            lease.started,
        )
