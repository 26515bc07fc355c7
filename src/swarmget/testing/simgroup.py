"""Several requesters of one content, each with its own scheduler, on a simulated clock (#15).

Each *host* has a link to the origin (``origin_rate`` bytes/s, shared by every stream on it)
and a LAN port (``lan_rate`` bytes/s up and as much down, shared likewise). Each *member*
(a host that wants the content) drives one core ``Scheduler``:

* **sharing** (fetch once): its sources are ``link:<itself>`` (its own origin link, allowed
  only the ranges the group's ``ClaimBook`` granted it) and ``peer:<other>`` for every other
  member (a LAN holder, allowed only the blocks that member verified). A member claims a
  new grant when less than ``lookahead`` granted bytes are left to fetch (with
  ``endgame``, an idle link ``steal``s half of a slow member's unreported grant); it advertises
  (``ClaimBook.have`` and ``availability_grew`` at its peers) every whole ``block`` it has.
* **not sharing** (today): its sources are ``link:<h>`` for every host ``h`` (itself and the
  others as helpers), each allowed any byte; K members then share every link K ways.

A real origin stream that is cut (cancelled, or split by a thief and ended early) has sent
more than was used: the bytes in flight (socket buffers, the shaper's queue). ``inflight``
counts up to that many bytes of every cut origin stream as origin bytes (``cut_bytes``); 0
(the default) models none.

No sockets, no sleeps; ``step(dt)`` moves time. Killing a member stops its streams, tells its
peers' schedulers (``remove_source``) and the claim book (``leave``). Every claim is checked
against what the member wrote before: a byte written twice fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmget.core.claims import ClaimBook
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Action, Assign, Cancel, Scheduler, SchedulerConfig

MiB = 1024 * 1024


@dataclass
class _Stream:
    lease_id: int
    member: str
    source_id: str
    cursor: int
    end: int


@dataclass
class Member:
    id: str
    scheduler: Scheduler
    joined: float
    written: RangeSet = field(default_factory=RangeSet)
    advertised: RangeSet = field(default_factory=RangeSet)
    finished: float | None = None
    alive: bool = True
    from_origin: int = 0  # bytes its streams received over origin links (its own or helpers')
    from_lan: int = 0  # bytes it received from LAN holders


@dataclass
class GroupSim:
    size: int
    hosts: int
    sharing: bool = True
    origin_rate: float = 5e6  # 40 Mbit/s
    lan_rate: float = 125e6  # 1 Gbit/s
    block: int = 1 * MiB  # what a holder verifies (and advertises) at once
    lookahead: int = 2 * MiB
    #: how often members tell the group what they have (0: every step); real members batch
    #: their news to the hub, say once a second
    advertise_every: float = 0.0
    #: an idle origin link takes half of a slow member's unreported grant (``steal``)
    endgame: bool = True
    #: ``ClaimBook.steal_after``: how old a grant must be before an idle link may split it
    steal_after: float = 3.0
    #: per-host origin link rates (None: ``origin_rate`` for every host)
    link_rates: list[float] | None = None
    #: bytes a cut origin stream wasted (in flight when it was cut; see the docstring)
    inflight: int = 0
    #: while grants come whole (``max_grant``: the pool is large), claim while fewer than
    #: ``lookahead`` granted bytes are *unleased* (not: not done), as ``engine.group`` does:
    #: an idle connection then finds granted bytes instead of splitting a busy one's piece
    claim_unleased: bool = False
    #: ``ClaimBook.max_grant``
    max_grant: int = 4 * MiB
    config: SchedulerConfig = field(default_factory=lambda: SchedulerConfig(align=1 * MiB))
    now: float = 0.0

    def __post_init__(self) -> None:
        self.book = ClaimBook(
            self.size, align=self.block, steal_after=self.steal_after, max_grant=self.max_grant
        )
        self.members: dict[str, Member] = {}
        self.streams: dict[tuple[str, int], _Stream] = {}
        self.link_bytes = [0] * self.hosts  # origin bytes per host link
        self.cut_bytes = 0  # of which sent into cut streams and never used (``inflight``)
        self._last_grant: dict[str, int] = {}  # member -> length of its last grant
        self.cuts = 0
        self._advertised_at = -1e9

    # --- setup ---------------------------------------------------------------------------------

    def join(self, host: int) -> Member:
        """Host ``host`` starts downloading the content now."""
        name = f"m{host}"
        m = self.members[name] = Member(name, Scheduler(self.size, self.config), self.now)
        if not self.sharing:
            for h in range(self.hosts):
                m.scheduler.add_source(f"link:{h}", 4, self.now)
        else:
            self.book.join(name)
            m.scheduler.add_source(f"link:{host}", 4, self.now, available=RangeSet())
            for other in self._alive(but=name):
                m.scheduler.add_source(
                    f"peer:{other.id}", 2, self.now, available=other.advertised, whole_runs=True
                )
                other.scheduler.add_source(
                    f"peer:{name}", 2, self.now, available=RangeSet(), whole_runs=True
                )
            self._claim(m)
        self._apply(m, m.scheduler.poll(self.now))
        return m

    def kill(self, name: str) -> None:
        """Member ``name`` dies: its streams stop, its peers and the claim book learn it."""
        dead = self.members[name]
        dead.alive = False
        for key in [k for k in self.streams if k[0] == name]:
            del self.streams[key]
        self.book.leave(name)
        for m in self._alive():
            self._apply(m, m.scheduler.remove_source(f"peer:{name}", self.now))

    # --- running -------------------------------------------------------------------------------

    def step(self, dt: float) -> None:
        self.now += dt
        rates = self._rates()
        for key, stream in list(self.streams.items()):
            if key in self.streams:
                self._deliver(stream, int(rates[key] * dt) or 1)
        if self.now - self._advertised_at >= self.advertise_every - 1e-9:
            self._advertised_at = self.now
            for m in self._alive():
                self._advertise(m)
        for m in self._alive():
            if self.sharing:
                self._claim(m)
            self._apply(m, m.scheduler.on_timer(self.now))
            self._apply(m, m.scheduler.poll(self.now))
            if m.finished is None and m.scheduler.is_complete():
                m.finished = self.now

    def run(self, dt: float = 0.05, max_time: float = 3600.0) -> bool:
        """Step until every member alive finished (True) or ``max_time``."""
        while self.now < max_time:
            if all(m.finished is not None for m in self._alive()):
                return True
            self.step(dt)
        return False

    # --- internals -----------------------------------------------------------------------------

    def _alive(self, but: str = "") -> list[Member]:
        return [m for m in self.members.values() if m.alive and m.id != but]

    def _rates(self) -> dict[tuple[str, int], float]:
        """Each stream's rate: its share of its origin link, or the lesser of its shares of
        the holder's LAN upload and the member's LAN download."""
        link: dict[str, int] = {}
        up: dict[str, int] = {}
        down: dict[str, int] = {}
        for s in self.streams.values():
            if s.source_id.startswith("link:"):
                link[s.source_id] = link.get(s.source_id, 0) + 1
            else:
                up[s.source_id] = up.get(s.source_id, 0) + 1
                down[s.member] = down.get(s.member, 0) + 1
        out: dict[tuple[str, int], float] = {}
        for key, s in self.streams.items():
            if s.source_id.startswith("link:"):
                rate = self.origin_rate
                if self.link_rates is not None:
                    rate = self.link_rates[int(s.source_id[5:])]
                out[key] = rate / link[s.source_id]
            else:
                out[key] = min(self.lan_rate / up[s.source_id], self.lan_rate / down[s.member])
        return out

    def _deliver(self, stream: _Stream, n: int) -> None:
        m = self.members[stream.member]
        n = min(n, stream.end - stream.cursor)
        if stream.source_id.startswith("peer:"):
            holder = self.members[stream.source_id[5:]]
            assert holder.advertised.contains(ByteRange(stream.cursor, stream.cursor + n))
            m.from_lan += n
        else:
            self.link_bytes[int(stream.source_id[5:])] += n
            m.from_origin += n
        claim = m.scheduler.on_data(stream.lease_id, n, self.now)
        stream.cursor += n
        if claim.write is not None:
            assert not m.written.overlaps(claim.write), f"{claim.write} written twice"
            m.written.add(claim.write)
        if claim.finished:
            self.streams.pop((m.id, stream.lease_id), None)
            if stream.cursor < stream.end:  # split: its holder ends early
                self._cut(stream)
        self._apply(m, list(claim.actions))

    def _advertise(self, m: Member) -> None:
        """Tell the group about every whole block ``m`` now has (verified, in real life)."""
        fresh = RangeSet()
        for r in m.written:
            start = -(-r.start // self.block) * self.block
            end = r.end if r.end == self.size else r.end // self.block * self.block
            if start < end:
                for gap in m.advertised.missing(ByteRange(start, end)):
                    fresh.add(gap)
        if not fresh:
            return
        for r in fresh:
            m.advertised.add(r)
        if self.sharing:
            self.book.have(m.id, fresh)
            for other in self._alive(but=m.id):
                other.scheduler.availability_grew(f"peer:{m.id}", fresh, self.now)

    def _claim(self, m: Member) -> None:
        """Ask the group for origin work while less than ``lookahead`` granted bytes are left
        (``claim_unleased``: left unleased)."""
        link = f"link:{m.id[1:]}"
        for _ in range(64):
            granted = m.scheduler.availability(link) or RangeSet()
            left = sum(len(x) for g in granted for x in m.written.missing(g))
            topup = self.claim_unleased and self._last_grant.get(m.id, 0) >= self.max_grant
            ahead = _unleased(m.scheduler, granted, self.now) if topup else left
            if ahead >= self.lookahead or m.scheduler.is_complete():
                return
            grant = self.book.claim(m.id, now=self.now)
            if grant is None and left == 0 and self.endgame:
                grant = self.book.steal(m.id, now=self.now)  # idle link: the group endgame
                if grant is not None:
                    m.scheduler.availability_grew(link, RangeSet([grant]), self.now)
                return  # one steal per step at most
            if grant is None:
                return
            self._last_grant[m.id] = grant.length
            m.scheduler.availability_grew(link, RangeSet([grant]), self.now)

    def _apply(self, m: Member, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Assign):
                r = action.range
                s = _Stream(action.lease_id, m.id, action.source_id, r.start, r.end)
                self.streams[(m.id, action.lease_id)] = s
            elif isinstance(action, Cancel):
                cut = self.streams.pop((m.id, action.lease_id), None)
                if cut is not None and cut.cursor < cut.end:
                    self._cut(cut)

    def _cut(self, stream: _Stream) -> None:
        """An origin stream cut short wasted what was in flight (``inflight``)."""
        if not stream.source_id.startswith("link:"):
            return
        wasted = min(self.inflight, stream.end - stream.cursor)
        self.cuts += 1
        self.cut_bytes += wasted
        self.link_bytes[int(stream.source_id[5:])] += wasted


def _unleased(scheduler: Scheduler, granted: RangeSet, now: float) -> int:
    """Granted bytes neither done nor leased."""
    free = granted.copy()
    for r in scheduler.done():
        free.subtract(r)
    for lease in scheduler.statistics(now).leases:
        free.subtract(lease.range)
    return free.total()
