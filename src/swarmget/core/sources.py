"""Every source of a download: their health (failures, backoff, ban) and indexes.

Theory of operation
-------------------
A *source* (the origin itself, or a helper node) has ``slots`` connection slots; it is
*usable* while it is neither banned nor gone, is not backing off and has a free slot.

**Health.** A lease is one *answer* of its source: good once bytes flow, bad when it ends
``BROKEN`` (a wrong Content-Range, a short body, bad data). A source is judged by its last
``judge_window`` answers: it is banned when at least ``max_broken`` of them are bad and the bad
outnumber the good; otherwise every bad answer only backs it off. Any failure but a
cancellation backs it off exponentially (``core.backoff``); ``max_failures`` failures in a row
without a claimed byte ban it; a rate-limited answer waits ``retry_after`` and is no blame
(a short "busy" while it still streams others for us *holds* it to that many streams for
``BUSY_HOLD`` seconds instead: it is up, and full for us; a slot one of them frees is
asked for again at once, one more only after the hold). The
last usable source is never banned for bad answers while any of its recent answers was good:
it is the only way left to finish, and it still delivers. ``SourceBook.judge`` decides; the
scheduler carries out a ban (it also owns the source's leases).

**Availability.** An ordinary source (the origin, a helper with its own link to it) may
serve any byte. A source added with ``available`` (a LAN *holder* of the same content, or an
origin link the group granted some ranges to: issue #15) may only serve those ranges; the set
only grows (``SourceBook.grow``) as the holder verifies pieces or the group grants more. The
selector never leases it a byte outside; ``SourceBook.cover`` is what such sources can serve
together, which ordinary sources leave to them while other bytes are missing.

``Source`` (``core.source``) holds each source's facts: its trust and speed are explained
there.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from swarmget.core.backoff import exponential_backoff
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduling import FailureKind, SchedulerConfig
from swarmget.core.source import Source

__all__ = ["BUSY_HOLD", "BUSY_WAIT_MOST", "Source", "SourceBook"]

#: a source that refuses one more stream for at most this long (a helper's or holder's
#: "busy": Retry-After 1 s) while it streams others for us is held to those
#: (``Source.held_to``) for ``BUSY_HOLD`` seconds; a longer wait (a daily quota used up)
#: backs it off as any refusal
BUSY_WAIT_MOST = 5.0
BUSY_HOLD = 5.0


class SourceBook:
    """Every source of one download, in the order they were first added."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self._sources: dict[str, Source] = {}
        #: alive sources with a slot free (a superset of the usable ones)
        self._open: dict[str, Source] = {}
        #: ... of which those that may still find work before ``retry_all`` (see ``poll``)
        self._pending: dict[str, Source] = {}
        #: ... and those that asked in vain since (``next_deadline`` wakes them)
        self._in_vain: dict[str, Source] = {}
        #: (end of a backoff, source id), soonest first; entries whose source's backoff
        #: changed since are skipped when read
        self._backoffs: list[tuple[float, str]] = []
        #: the same, for ``usable_by_speed``: a source whose backoff ended may ask again
        self._wakeups: list[tuple[float, str]] = []
        #: sources with rate samples kept (the only ones ``advance`` can change)
        self._warm: dict[str, Source] = {}
        #: cached ``alive_slots``, ``restricted`` and ``cover`` (None: to compute)
        self._alive_slots: int | None = None
        self._restricted: bool | None = None
        self._cover: RangeSet | None = None
        #: when ``usable_by_speed`` last moved the estimates on, and who had data since
        self._advanced: float | None = None
        self._fresh: dict[str, Source] = {}
        #: some source has delivered bytes: a newcomer is on probation
        self._delivering = False

    def __iter__(self) -> Iterator[Source]:
        return iter(self._sources.values())

    def __getitem__(self, source_id: str) -> Source:
        return self._sources[source_id]

    def get(self, source_id: str) -> Source | None:
        return self._sources.get(source_id)

    def add(
        self,
        source_id: str,
        slots: int,
        now: float,
        available: RangeSet | None = None,
        *,
        whole_runs: bool = False,
    ) -> None:
        """Make a source available (again). Re-adding a gone source revives it with the
        availability given; re-adding a live one adds ``available`` to what it may serve
        (None: any byte); a banned one stays banned."""
        if slots < 1:
            raise ValueError("a source needs at least one slot")
        self._cover = None  # what it may serve may change, either way
        src = self._sources.get(source_id)
        if src is None:
            src = Source(source_id, slots, now, index=len(self._sources))
            src.probation = self._delivering
            self._sources[source_id] = src
            src.available = None if available is None else available.copy()
            src.whole_runs = whole_runs
        elif src.banned is None:
            if src.gone or available is None:
                src.available = None if available is None else available.copy()
            else:
                self.grow(src, available)
            src.slots, src.gone = slots, False
            src.whole_runs = whole_runs
            if src.not_before > now:  # revived while backing off
                heapq.heappush(self._backoffs, (src.not_before, src.id))
                heapq.heappush(self._wakeups, (src.not_before, src.id))
        self.refresh(src)

    def refresh(self, src: Source) -> None:
        """``src``'s leases, slots, ban or presence changed: update the indexes."""
        self._alive_slots = self._restricted = None
        if src.available is not None:
            self._cover = None  # its presence may have changed
        if src.alive() and src.occupied() < src.slots:
            self._open[src.id] = self._pending[src.id] = src
        else:
            self._open.pop(src.id, None)
            self._pending.pop(src.id, None)

    def hold(self, src: Source, lease_id: int, now: float) -> None:
        if not src.leases:
            src.busy_since = now
        if src.ending:
            src.ahead += 1
        src.leases.add(lease_id)
        src.ranges += 1
        if src.occupied() >= src.slots:
            self._open.pop(src.id, None)
            self._pending.pop(src.id, None)

    def let_go(self, src: Source, lease_id: int) -> None:
        src.leases.discard(lease_id)
        src.ending.discard(lease_id)
        self._opened(src)

    def ending(self, src: Source, lease_id: int) -> None:
        """``src``'s lease ``lease_id`` is about to end: its slot is free for the next one."""
        src.ending.add(lease_id)
        self._opened(src)

    def _opened(self, src: Source) -> None:
        """``src`` holds one lease fewer (or one ends soon): it may have a free slot."""
        if src.alive() and src.occupied() < src.slots:
            self._open[src.id] = self._pending[src.id] = src

    def found_nothing(self, src: Source, *, asked: bool) -> None:
        """``src`` asked for work and got none (``asked``), or could not ask (backing off,
        or at its capacity): it is not ranked again until ``retry_all``, until its backoff
        ends or until it frees a slot."""
        self._pending.pop(src.id, None)
        if asked:
            self._in_vain[src.id] = src

    def any_waiting(self) -> bool:
        """Some source asked for work in vain since the last ``retry_all``."""
        return bool(self._in_vain)

    def retry_all(self) -> None:
        """What the selector works from changed: every source with a free slot may ask.
        O(open sources); the scheduler calls it once per ``SchedulerConfig.refresh``."""
        self._pending = dict(self._open)
        self._in_vain = {}

    def record(self, src: Source, now: float, nbytes: int, lease_started: float) -> None:
        """``src.record_data``, and keep ``src`` among those whose estimates move on."""
        src.record_data(now, nbytes, lease_started)
        self._warm[src.id] = self._fresh[src.id] = src
        self._delivering = self._delivering or nbytes > 0

    def grow(self, src: Source, ranges: RangeSet) -> None:
        """``src`` may now serve ``ranges`` too (no change for a source serving any byte)."""
        if src.available is not None:
            src.available.update(ranges)
            if self._cover is not None and src.alive():
                self._cover.update(ranges)  # what the alive restricted sources serve grew

    # --- queries -------------------------------------------------------------------------------

    def any_alive(self) -> bool:
        return any(s.alive() for s in self._sources.values())

    def any_trusted(self) -> bool:
        """Some source alive is not suspect (stops at the first: O(1) unless most are)."""
        return any(s.alive() and not s.suspect for s in self._sources.values())

    def rate_reaches(self, now: float, target: float) -> bool:
        """The sources alive and not suspect deliver ``target`` bytes/s together (their
        rate estimates, idle ones as they last worked). O(n), stops once reached."""
        total = 0.0
        for src in self._sources.values():
            if src.alive() and not src.suspect:
                total += src.rate(now) or 0.0
                if total >= target:
                    return True
        return False

    def alive_slots(self) -> int:
        if self._alive_slots is None:
            self._alive_slots = sum(s.slots for s in self._sources.values() if s.alive())
        return self._alive_slots

    def restricted(self) -> bool:
        """Some source alive may serve only part of the file."""
        if self._restricted is None:
            self._restricted = any(
                s.available is not None and s.alive() for s in self._sources.values()
            )
        return self._restricted

    def cover(self) -> RangeSet:
        """What the sources alive that may serve only part of the file can serve together
        (a copy; worked out again only after a source's availability or presence changed:
        the selector asks on every pick while such sources are alive)."""
        if self._cover is None:
            out = RangeSet()
            for src in self._sources.values():
                if src.available is not None and src.alive():
                    out.update(src.available)
            self._cover = out
        return self._cover.copy()

    def next_backoff_end(self, now: float) -> float | None:
        """The soonest end of a backoff, or of a hold (``Source.held_to``), of a source alive
        that is still in the future (as ``min(backoff_ends(now))``, in O(log n) amortized:
        ends passed are dropped)."""
        heap = self._backoffs
        while heap:
            end, sid = heap[0]
            src = self._sources[sid]
            if end > now and end in (src.not_before, src.held_until) and src.alive():
                return end
            heapq.heappop(heap)
        return None

    def backoff_ends(self, now: float) -> list[float]:
        """When the backoffs and holds of sources still alive end (those still in the future)."""
        ends = [s.not_before for s in self._sources.values() if s.not_before > now and s.alive()]
        held = [s.held_until for s in self._sources.values() if s.held_until > now and s.alive()]
        return ends + held

    def contributors(self, rng: ByteRange) -> dict[str, int]:
        """Which sources delivered bytes of ``rng``, and how many each."""
        out: dict[str, int] = {}
        for src in self._sources.values():
            n = sum(len(x) for r in src.segments if (x := r.intersect(rng)) is not None)
            if n:
                out[src.id] = n
        return out

    # --- events --------------------------------------------------------------------------------

    def by_speed(self, now: float) -> list[Source]:
        """Every source, unmeasured ones first (to measure them), then fastest per slot
        first; then every rate estimate is brought to ``now`` (see the module docstring)."""

        def key(src: Source) -> tuple[int, float]:
            rate = src.slot_rate(now)
            return (0, 0.0) if rate is None else (1, -rate)

        ranked = sorted(self._sources.values(), key=key)
        for src in self._sources.values():
            src.advance(now)
        return ranked

    def usable_by_speed(self, now: float) -> list[Source]:
        """The sources that may still find work (``found_nothing``, ``retry_all``) in the
        order of ``by_speed`` (the caller checks ``usable``); then the estimates of the
        sources with samples are brought to ``now`` (the others' cannot change), all of
        them at most once per ``config.refresh``, else those with data since. Costs
        O(p log p + d) for p pending sources and d reports since, amortized."""

        def key(src: Source) -> tuple[int, float, int]:
            rate = src.slot_rate(now)
            return (0, 0.0, src.index) if rate is None else (1, -rate, src.index)

        wakeups = self._wakeups
        while wakeups and wakeups[0][0] <= now:  # backoffs that ended: they may ask again
            sid = heapq.heappop(wakeups)[1]
            if sid in self._open:
                self._pending[sid] = self._open[sid]
        ranked = sorted(self._pending.values(), key=key)
        # moving an estimate to the time it was moved to changes nothing: at the same time
        # (or within ``config.refresh`` of the last time all moved), only those with data
        # since need it
        advanced = self._advanced
        if advanced is not None and advanced <= now < advanced + self.config.refresh:
            moving = self._fresh
        else:
            moving = self._fresh if now == advanced else self._warm
            self._advanced = now
        self._fresh = {}
        for sid, src in list(moving.items()):
            src.advance(now)
            if not src.samples:
                self._warm.pop(sid, None)
        return ranked

    def uncredit(self, bad: RangeSet) -> None:
        """The bytes of ``bad`` turned out bad: no source delivered them any more."""
        for r in bad:
            for src in self._sources.values():
                if src.segments.overlaps(r):
                    src.claimed -= sum(
                        len(x) for s in src.segments if (x := s.intersect(r)) is not None
                    )
                    src.segments.subtract(r)

    def judge(
        self,
        src: Source,
        now: float,
        kind: FailureKind,
        reason: str,
        retry_after: float | None,
        lease_id: int = 0,
    ) -> str | None:
        """Count a failure of ``src`` (of lease ``lease_id``, 0: of no lease) and back it off;
        returns why it must be banned, or None."""
        if kind is FailureKind.CANCELLED:
            return None
        src.failures += 1
        if kind is FailureKind.RATE_LIMITED:
            wait = retry_after if retry_after is not None else self._backoff(1)
            if src.leases and wait <= BUSY_WAIT_MOST:
                # busy for one more of ours while streaming the others: hold it to those
                # for a while, rather than wait for nothing when one of them ends, or ask
                # again (and be refused again) after every short wait
                src.held_to, src.held_until = len(src.leases), now + BUSY_HOLD
                heapq.heappush(self._backoffs, (src.held_until, src.id))
                heapq.heappush(self._wakeups, (src.held_until, src.id))
                return None
            self._back_off(src, now + wait)
            return None
        src.consecutive_failures += 1
        if kind is FailureKind.STALLED:
            src.suspect = True  # one probe at a time until it delivers again
        if kind is FailureKind.BROKEN:
            src.broken += 1
            self.answer(src, lease_id, good=False)
            bad = sum(1 for _, good in src.answers if not good)
            too_many = bad >= self.config.max_broken and 2 * bad > len(src.answers)
            if too_many and not self._is_last_hope(src):
                return f"{bad} of its last {len(src.answers)} answers bad, last: {reason}"
        if src.consecutive_failures >= self.config.max_failures:
            return f"{src.consecutive_failures} failures in a row, last: {reason}"
        self._back_off(src, now + self._backoff(src.consecutive_failures))
        return None

    def _back_off(self, src: Source, until: float) -> None:
        if until > src.not_before:
            src.not_before = until
            heapq.heappush(self._backoffs, (until, src.id))
            heapq.heappush(self._wakeups, (until, src.id))

    def answer(self, src: Source, lease_id: int, *, good: bool) -> None:
        """Record an answer of ``src``; a bad end of a lease replaces its good start."""
        if not good and lease_id:
            for i, (seen, _) in enumerate(src.answers):
                if seen == lease_id:
                    src.answers[i] = (lease_id, False)
                    return
        src.answers.append((lease_id, good))
        while len(src.answers) > self.config.judge_window:
            src.answers.popleft()

    def _is_last_hope(self, src: Source) -> bool:
        """``src`` is the only source alive and recently delivered (see the docstring)."""
        if not any(good for _, good in src.answers):
            return False
        return not any(s.alive() for s in self._sources.values() if s is not src)

    def _backoff(self, failures: int) -> float:
        config = self.config
        return exponential_backoff(
            failures, initial=config.backoff_initial, maximum=config.backoff_max
        )

    # --- checks --------------------------------------------------------------------------------

    def check_invariants(self, claimed: RangeSet) -> None:
        """Raise AssertionError if two sources claim one byte, or one claims a byte that is
        not claimed."""
        seen = RangeSet()
        for src in self._sources.values():
            for r in src.segments:
                assert not seen.overlaps(r), f"{r} claimed by two sources"
                seen.add(r)
        for r in seen:
            assert claimed.contains(r), f"{r} claimed but not done"
        for src in self._sources.values():
            assert src.ending <= src.leases, f"{src.id}: ending leases it does not hold"
            has_room = src.alive() and src.occupied() < src.slots
            assert (src.id in self._open) == has_room, f"{src.id}: index of free slots is off"
            assert src.id in self._open or src.id not in self._pending, f"{src.id}: pending"
            assert src.id in self._warm or not src.samples, f"{src.id}: rate not moved on"
