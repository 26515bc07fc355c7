"""A simulated swarm that drives the core scheduler with a clock chosen by the caller.

No sockets, no sleeps: each ``step(dt)`` moves simulated time forward and lets every active
lease deliver ``rate * dt`` bytes (a source's rate is shared by its active streams). Sources can
be slowed, frozen (SIGSTOP-like: they hold leases but send nothing) or killed, and each of a
source's streams may wait ``first_byte`` seconds before its first byte (the round trips of a
request: to a helper and the helper's own to the origin; the link carries the source's other
streams meanwhile), which is what makes many small pieces cost time; and a stream we end
before the end it asked for (a steal's split, a copy that lost, a cancel) may still cost the
source's link ``in_flight`` bytes that go nowhere (what the origin had sent into sockets and
a shaper's queue), which is what makes a cut cost time. Every claim is
checked against the bytes written before, so a byte written twice fails loudly.

Used by the scheduler's tests and handy for reasoning about tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import (
    Action,
    Assign,
    Ban,
    Cancel,
    FailureKind,
    Scheduler,
    SchedulerConfig,
)


@dataclass
class SimSource:
    rate: float  # bytes per second, shared by the source's streams
    slots: int = 1
    frozen: bool = False
    alive: bool = True
    #: fail every stream after it delivered this many bytes (None: never)
    fail_after: int | None = None
    #: seconds each stream waits for its first byte (simulated round trips)
    first_byte: float = 0.0
    #: bytes a stream ended early still takes of the link, delivering nothing
    in_flight: int = 0


@dataclass
class _Stream:
    lease_id: int
    source_id: str
    cursor: int
    end: int  # as requested; the scheduler may finish it earlier
    delivered: int = 0
    started: float = 0.0  # when it was assigned (simulated clock)


@dataclass
class _Ghost:
    """What a stream ended early still takes of its source's link (``in_flight``)."""

    source_id: str
    left: int


@dataclass
class SimSwarm:
    size: int
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    now: float = 0.0
    done: RangeSet | None = None

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.size, self.config, done=self.done)
        self.sources: dict[str, SimSource] = {}
        self.streams: dict[int, _Stream] = {}
        self.written = RangeSet(self.done or ())
        self.writes_by_source: dict[str, int] = {}
        self.bans: list[Ban] = []
        self.cancels: list[Cancel] = []
        #: the streams ended early that still take link time
        self.ghosts: list[_Ghost] = []
        #: bytes the ghosts took of the links in all
        self.wasted = 0

    # --- setup ---------------------------------------------------------------------------------

    def add(self, source_id: str, rate: float, slots: int = 1, **kw: object) -> SimSource:
        src = SimSource(rate=rate, slots=slots, **kw)  # type: ignore[arg-type]
        self.sources[source_id] = src
        self.scheduler.add_source(source_id, slots, self.now)
        self._apply(self.scheduler.poll(self.now))
        return src

    def kill(self, source_id: str) -> None:
        """The source crashes: its streams break with a connection error."""
        self.sources[source_id].alive = False
        for lease_id in [i for i, s in self.streams.items() if s.source_id == source_id]:
            if self.streams.pop(lease_id, None) is not None:
                self._apply(self.scheduler.on_failure(lease_id, self.now, reason="killed"))

    # --- running -------------------------------------------------------------------------------

    def step(self, dt: float) -> None:
        self.now += dt
        for stream in list(self.streams.values()):
            if stream.lease_id in self.streams:
                self._deliver(stream, dt)
        self._drain_ghosts(dt)
        self._apply(self.scheduler.on_timer(self.now))
        self._apply(self.scheduler.poll(self.now))

    def run(self, dt: float = 0.05, max_time: float = 10_000.0) -> bool:
        """Step until complete, stuck (no usable source) or ``max_time``; True if complete."""
        self._apply(self.scheduler.poll(self.now))
        while not self.scheduler.is_complete() and self.now < max_time:
            if not self.scheduler.has_usable_source():
                return False
            self.step(dt)
        return self.scheduler.is_complete()

    # --- internals -----------------------------------------------------------------------------

    def _sharing(self, source_id: str) -> int:
        """How many streams (past their first byte) and ghosts share the source's link."""
        wait = self.sources[source_id].first_byte
        return sum(
            1
            for s in self.streams.values()
            if s.source_id == source_id and self.now - s.started >= wait
        ) + sum(1 for g in self.ghosts if g.source_id == source_id)

    def _drain_ghosts(self, dt: float) -> None:
        for g in self.ghosts:
            src = self.sources[g.source_id]
            if src.alive and not src.frozen:
                n = min(int(src.rate * dt / self._sharing(g.source_id)) or 1, g.left)
                g.left -= n
                self.wasted += n
        self.ghosts = [g for g in self.ghosts if g.left > 0]

    def _cut(self, stream: _Stream) -> None:
        """``stream`` ended before its end: its source's link still carries ``in_flight``."""
        waste = min(self.sources[stream.source_id].in_flight, stream.end - stream.cursor)
        if waste > 0:
            self.ghosts.append(_Ghost(stream.source_id, waste))

    def _deliver(self, stream: _Stream, dt: float) -> None:
        src = self.sources[stream.source_id]
        if not src.alive:  # connection refused
            del self.streams[stream.lease_id]
            self._apply(self.scheduler.on_failure(stream.lease_id, self.now, reason="refused"))
            return
        if src.frozen or self.now - stream.started < src.first_byte:
            return
        sharing = self._sharing(stream.source_id)
        n = min(int(src.rate * dt / sharing) or 1, stream.end - stream.cursor)
        if src.fail_after is not None and stream.delivered + n > src.fail_after:
            n = max(0, src.fail_after - stream.delivered)
            self._data(stream, n)
            if stream.lease_id in self.streams:
                del self.streams[stream.lease_id]
                self._apply(self.scheduler.on_failure(stream.lease_id, self.now, reason="drop"))
            return
        self._data(stream, n)

    def _data(self, stream: _Stream, n: int) -> None:
        if n == 0:
            return
        claim = self.scheduler.on_data(stream.lease_id, n, self.now)
        stream.cursor += n
        stream.delivered += n
        if claim.write is not None:
            assert not self.written.overlaps(claim.write), f"{claim.write} written twice"
            assert stream.cursor - n <= claim.write.start
            assert claim.write.end <= stream.cursor
            self.written.add(claim.write)
            key = stream.source_id
            self.writes_by_source[key] = self.writes_by_source.get(key, 0) + claim.write.length
        if claim.finished:
            if self.streams.pop(stream.lease_id, None) is not None and stream.cursor < stream.end:
                self._cut(stream)
        else:
            assert stream.cursor < stream.end, "stream ran past its range without finishing"
        self._apply(list(claim.actions))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Assign):
                assert action.source_id in self.sources
                r = action.range
                self.streams[action.lease_id] = _Stream(
                    action.lease_id, action.source_id, r.start, r.end, started=self.now
                )
            elif isinstance(action, Cancel):
                self.cancels.append(action)
                cut = self.streams.pop(action.lease_id, None)
                if cut is not None:
                    self._cut(cut)
            else:
                self.bans.append(action)

    def fail_stream(
        self, lease_id: int, kind: FailureKind, retry_after: float | None = None
    ) -> None:
        if self.streams.pop(lease_id, None) is not None:
            self._apply(
                self.scheduler.on_failure(lease_id, self.now, kind, retry_after=retry_after)
            )


def whole(size: int) -> ByteRange:
    return ByteRange(0, size)
