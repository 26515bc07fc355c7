"""One source of a download: its slots and leases, its health and its speed.

A *source* (the origin itself, or a helper node) has ``slots`` connection slots; it is
*usable* while it is neither banned nor gone, is not backing off and has a free slot (its
leases about to end do not count: pipelining, ``core.scheduler``). ``Source`` holds the
facts and answers queries about one source; ``core.sources.SourceBook`` keeps them all,
judges them (health, backoff, bans) and indexes them for the selector.

**Trust** (issue #17). A source must show progress to get more work. A lease that stalls
(no data for ``stall_timeout``) makes its source *suspect*: until it delivers a byte again it
holds one lease at most, a small probe of missing bytes (``min_piece``), and is given no
steal, copy or rescue; its stalls still count towards a ban. The same holds much sooner for
a stream that goes *silent*: no data for ``silence_gaps`` of the usual gaps between its
source's reports of data, or before its first byte for ``silence_first`` of the source's
usual waits for a first byte (at least ``silence_floor``, at most ``silence`` seconds;
``Source.silence``): a helper that hung while it held nothing is noticed on its next
lease. A source that holds work and has been silent that long is *quiet* and gets no new
work; a silent copy that loses its piece's race leaves its source suspect. A source added
while others are already delivering is on *probation*: one lease (its first piece, to be
measured) until its first byte; the sources there at the start get all their slots at
once (nothing to compare them with, and waiting would delay the start).

**Speed.** A source's rate is the bytes it streamed over the last few seconds
(``core.rates``), counted from its first data. While it works (holds a lease, or has recent
samples) the estimate is live; once it sits idle with nothing recent, it is remembered as it
was when last brought up to date (``last_rate``), so an idle fast source still ranks as fast.
Estimates are brought up to date by events only: ``record_data`` when bytes arrive, and
``SourceBook.usable_by_speed(now)`` (the scheduler's ``poll``), which ranks the usable sources
and then moves the estimates that can still change (those with samples kept) to ``now``:
all of them at most once per ``SchedulerConfig.refresh``, else those with data since.
``rate(now)`` itself is a query: a snapshot taken between two events changes nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.rates import RateWindow
from swarmget.core.scheduling import SchedulerConfig, SourceInfo, SourceState

__all__ = ["Source"]


@dataclass(slots=True)
class Source:
    id: str
    slots: int
    added: float
    leases: set[int] = field(default_factory=set)
    #: of its ``leases``, those about to end: their slots are free for the next range
    #: already, so that its request overlaps their last bytes (``Scheduler.on_data``,
    #: "pipelining" in ``core.scheduler``)
    ending: set[int] = field(default_factory=set)
    consecutive_failures: int = 0
    broken: int = 0  # BROKEN answers ever (for statistics)
    #: the most recent answers: (lease id or 0, good?), oldest first
    answers: deque[tuple[int, bool]] = field(default_factory=deque)
    failures: int = 0
    not_before: float = 0.0
    banned: str | None = None
    gone: bool = False
    received: int = 0  # bytes streamed (including duplicates that lost)
    claimed: int = 0  # bytes of the file it delivered first
    cuts: int = 0  # its streams we ended before the end they asked for (``SourceInfo.cut``)
    ranges: int = 0  # leases it was given (``SourceInfo.ranges``)
    waited: float = 0.0  # seconds its leases waited for their first data (``SourceInfo``)
    ahead: int = 0  # leases given while one of it was ending (``SourceInfo.ahead``)
    segments: RangeSet = field(default_factory=RangeSet)  # ... and where they are
    samples: RateWindow = field(default_factory=RateWindow)
    first_data: float | None = None
    last_rate: float = 0.0
    #: the bytes it may serve; None: any byte (see "Availability" in the module docstring)
    available: RangeSet | None = None
    #: its last lease stalled and it has delivered nothing since (see "Trust")
    suspect: bool = False
    #: it came when others were already delivering: one lease until it delivers (see "Trust")
    probation: bool = False
    #: the order it was first added in (ties in a ranking keep it)
    index: int = 0
    #: held to this many leases until ``held_until``: it refused one more as busy while
    #: streaming these for us (``SourceBook.judge``); None: not held
    held_to: int | None = None
    held_until: float = float("-inf")
    #: a restricted source whose piece may take a whole run of what it may serve, not
    #: the run's share per free slot (a LAN holder: see "restricted sources" in
    #: ``core.selection``)
    whole_runs: bool = False
    #: the usual time between two reports of data of one of its streams (None: not seen)
    gap: float | None = None
    #: the usual time from a lease's start to its first data (None: not seen)
    first_wait: float | None = None
    #: when it last delivered a byte, and when it last went from no lease to one
    last_data: float = float("-inf")
    busy_since: float = float("-inf")

    # --- queries -------------------------------------------------------------------------------

    def alive(self) -> bool:
        """Neither banned nor gone: it may still get work (now or after a backoff)."""
        return self.banned is None and not self.gone

    def may_serve(self, rng: ByteRange) -> bool:
        """Whether every byte of ``rng`` is within this source's availability."""
        return self.available is None or self.available.contains(rng)

    def capacity(self) -> int:
        """How many leases it may hold: one while suspect or on probation, else its slots."""
        if self.suspect or (self.probation and self.first_data is None):
            return 1
        return self.slots

    def occupied(self) -> int:
        """The slots its leases take: all of them but those about to end (``ending``)."""
        return len(self.leases) - len(self.ending)

    def ahead_only(self) -> bool:
        """Its only free slots are those of streams about to end (pipelining): they are
        for missing bytes (or a rescue of the done prefix, which comes first), never for an
        endgame copy or a steal, which would cut or double streams (wasting their bytes in
        flight) for a slot that is not idle yet; once the stream ended, the slot is free for
        those as before."""
        return bool(self.ending) and len(self.leases) >= self.capacity()

    def usable(self, now: float) -> bool:
        return (
            self.alive()
            and now >= self.not_before
            and self.occupied() < self.capacity()
            and not self.held(now)
        )

    def held(self, now: float) -> bool:
        """Held to the streams it has (``held_to``): it said busy to one more not long ago.
        Its ending leases count: one of them over, the slot it leaves is asked for again."""
        return (
            self.held_to is not None and now < self.held_until and len(self.leases) >= self.held_to
        )

    def rate(self, now: float) -> float | None:
        """Bytes/s over the last few seconds; None before its first data. Changes nothing."""
        if self.first_data is None:
            return None
        if not self.leases and not self.samples:
            return self.last_rate  # idle: how fast it was when it worked
        return self.samples.rate(now, self.first_data)

    def silence(self, config: SchedulerConfig, *, started: bool = True) -> float:
        """How long a stream of it may go without data before it counts as silent (see
        ``SchedulerConfig.silence_gaps``). ``started``: the stream has delivered before; a
        first byte (a round trip, the helper's own request to the origin) is judged by the
        source's usual wait for a first byte instead (all of ``config.silence`` until one
        was seen): a helper that hung while it held nothing is noticed on its next lease."""
        usual, times = (
            (self.gap, config.silence_gaps) if started else (self.first_wait, config.silence_first)
        )
        if usual is None:
            return config.silence
        return min(config.silence, max(config.silence_floor, times * usual))

    def quiet(self, now: float, config: SchedulerConfig) -> bool:
        """It holds leases and has delivered nothing for its ``silence`` (since it last
        delivered or, if later, got work after having none): no progress to show."""
        started = self.last_data >= self.busy_since
        waited = now - max(self.last_data, self.busy_since)
        return bool(self.leases) and waited >= self.silence(config, started=started)

    def slot_rate(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate is None else rate / self.slots

    def state(self, now: float) -> SourceState:
        if self.banned is not None:
            return SourceState.BANNED
        if self.gone:
            return SourceState.GONE
        if self.leases:
            return SourceState.ACTIVE
        return SourceState.BACKOFF if now < self.not_before else SourceState.IDLE

    def info(self, now: float) -> SourceInfo:
        return SourceInfo(
            source_id=self.id,
            state=self.state(now),
            slots=self.slots,
            active_leases=len(self.leases),
            received=self.received,
            claimed=self.claimed,
            rate=self.rate(now) or 0.0,
            failures=self.failures,
            segments=tuple(self.segments),
            ban_reason=self.banned,
            cut=self.cuts,
            ranges=self.ranges,
            waited=self.waited,
            ahead=self.ahead,
        )

    # --- events --------------------------------------------------------------------------------

    def record_data(self, now: float, nbytes: int, lease_started: float) -> None:
        """A stream of this source that started at ``lease_started`` delivered ``nbytes``."""
        self.received += nbytes
        self.samples.add(now, nbytes)
        if self.first_data is None:
            self.first_data = lease_started
        if nbytes:
            self.suspect = False  # it proved progress
            self.last_data = now

    def credit(self, write: ByteRange) -> None:
        """``write`` was claimed from this source's stream: it delivered those bytes first."""
        self.segments.add(write)
        self.claimed += write.length
        self.consecutive_failures = 0

    def advance(self, now: float) -> None:
        """Bring the rate estimate to ``now``: forget old samples, remember the live rate."""
        if self.first_data is None:
            return
        self.samples.prune(now)
        rate = self.samples.rate(now, self.first_data)
        if rate is not None and self.samples:
            self.last_rate = rate
