"""Property tests: under any sequence of events the scheduler's bookkeeping stays exact.

Hypothesis drives a simulated swarm with arbitrary progress, failures, stalls, crashes and
time jumps. After every step: done ∪ leased ∪ missing covers the file exactly once, no byte is
written by two winners, each claim lies inside what its stream delivered. At the end, with one
healthy source left alive, the download always completes.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import FailureKind, SchedulerConfig
from swarmget.testing.simswarm import SimSource, SimSwarm

KiB = 1024

CONFIG = SchedulerConfig(
    min_piece=2 * KiB,
    max_piece=32 * KiB,
    min_steal=512,
    stall_timeout=2.0,
    max_failures=3,
    max_broken=2,
    backoff_initial=0.1,
    backoff_max=1.0,
    endgame_min_eta=0.1,
)

source_names = st.sampled_from(["a", "b", "c", "d", "e"])


class SchedulerMachine(RuleBasedStateMachine):
    sim: SimSwarm

    @initialize(
        size=st.integers(0, 300 * KiB),
        done=st.lists(st.tuples(st.integers(0, 300 * KiB), st.integers(0, 20 * KiB)), max_size=4),
        rescue=st.sampled_from([0, 8 * KiB, 64 * KiB]),  # frontier rescue off, eager, default-ish
    )
    def setup(self, size: int, done: list[tuple[int, int]], rescue: int) -> None:
        pre = RangeSet()
        for start, length in done:
            if start < size:
                pre.add(ByteRange(start, min(size, start + length)))
        config = dataclasses.replace(CONFIG, rescue_backlog=rescue)
        self.sim = SimSwarm(size, config, done=pre)

    @rule(name=source_names, rate=st.integers(1 * KiB, 200 * KiB), slots=st.integers(1, 4))
    def add_source(self, name: str, rate: int, slots: int) -> None:
        if name not in self.sim.sources:
            self.sim.add(name, rate=rate, slots=slots)

    @rule(dt=st.sampled_from([0.01, 0.1, 0.5, 1.0, 3.0]))
    def step(self, dt: float) -> None:
        self.sim.step(dt)

    @precondition(lambda self: bool(self.sim.streams))
    @rule(
        data=st.data(),
        kind=st.sampled_from(list(FailureKind)),
        retry_after=st.none() | st.floats(0, 5),
    )
    def fail_a_stream(
        self, data: st.DataObject, kind: FailureKind, retry_after: float | None
    ) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.sim.streams)))
        self.sim.fail_stream(lease_id, kind, retry_after)

    @precondition(lambda self: bool(self.sim.sources))
    @rule(data=st.data())
    def freeze_or_thaw(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.sim.sources)))
        src = self.sim.sources[name]
        src.frozen = not src.frozen

    @precondition(lambda self: bool(self.sim.sources))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.sim.sources)))
        self.sim.kill(name)

    @precondition(lambda self: bool(self.sim.sources))
    @rule(data=st.data())
    def crash_notice(self, data: st.DataObject) -> None:
        """The driver learns a source is gone (e.g. from the hub) and removes it."""
        name = data.draw(st.sampled_from(sorted(self.sim.sources)))
        self.sim.sources[name].alive = False
        for lease_id in [i for i, s in self.sim.streams.items() if s.source_id == name]:
            self.sim.streams.pop(lease_id)
        self.sim._apply(self.sim.scheduler.remove_source(name, self.sim.now))

    @precondition(lambda self: self.sim.scheduler.done().total() > 0)
    @rule(data=st.data())
    def find_bad_bytes(self, data: st.DataObject) -> None:
        """A verification failed: part of what was done must be fetched again."""
        done = list(self.sim.scheduler.done())
        r = data.draw(st.sampled_from(done))
        start = data.draw(st.integers(r.start, r.end - 1))
        end = data.draw(st.integers(start + 1, r.end))
        culprits = self.sim.scheduler.contributors(ByteRange(start, end))
        assert sum(culprits.values()) <= end - start  # resumed bytes have no source
        self.sim.scheduler.invalidate(ByteRange(start, end))
        self.sim.written.subtract(ByteRange(start, end))
        if culprits and data.draw(st.booleans()):
            self.sim._apply(self.sim.scheduler.ban(max(culprits), "bad data"))

    @invariant()
    def bookkeeping_is_exact(self) -> None:
        self.sim.scheduler.check_invariants()
        assert self.sim.written == self.sim.scheduler.done()

    def teardown(self) -> None:
        # one healthy source stays alive: the download must complete
        self.sim.add("rescuer", rate=64 * KiB, slots=2)
        for src in self.sim.sources.values():
            src.frozen = False
        assert self.sim.run(dt=0.1, max_time=self.sim.now + 3600)
        assert self.sim.written == RangeSet([ByteRange(0, self.sim.size)] if self.sim.size else [])
        self.sim.scheduler.check_invariants()


SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SchedulerMachine.TestCase.settings = SETTINGS
TestScheduler = SchedulerMachine.TestCase


class AlignedSchedulerMachine(SchedulerMachine):
    """The same conversation with piece boundaries aligned to 4 KiB (a manifest's pieces)."""

    @initialize(size=st.integers(0, 300 * KiB))
    def setup(self, size: int, done: list[tuple[int, int]] | None = None) -> None:
        config = SchedulerConfig(
            min_piece=8 * KiB, max_piece=32 * KiB, min_steal=4 * KiB, stall_timeout=2.0,
            max_failures=3, backoff_initial=0.1, backoff_max=1.0, align=4 * KiB,
        )  # fmt: skip
        self.sim = SimSwarm(size, config)

    @precondition(lambda self: self.sim.scheduler.done().total() > 0)
    @rule(data=st.data())
    def find_bad_bytes(self, data: st.DataObject) -> None:
        """Verification fails on whole 4 KiB pieces, as with a manifest."""
        done = self.sim.scheduler.done()
        blocks = [
            ByteRange(b, min(b + 4 * KiB, self.sim.size))
            for b in range(0, self.sim.size, 4 * KiB)
            if done.contains(ByteRange(b, min(b + 4 * KiB, self.sim.size)))
        ]
        if blocks:
            bad = data.draw(st.sampled_from(blocks))
            self.sim.scheduler.invalidate(bad)
            self.sim.written.subtract(bad)

    @invariant()
    def pieces_start_aligned(self) -> None:
        for lease in self.sim.scheduler.statistics(self.sim.now).leases:
            if not lease.duplicate and lease.range.end != self.sim.size:
                assert lease.range.end % (4 * KiB) == 0, lease


AlignedSchedulerMachine.TestCase.settings = SETTINGS
TestAlignedScheduler = AlignedSchedulerMachine.TestCase


# --- the property conversation, with holders ----------------------------------------------------

holder_names = st.sampled_from(["h1", "h2", "h3"])
spans = st.lists(st.tuples(st.integers(0, 300 * KiB), st.integers(1, 64 * KiB)), max_size=4)


class HolderSchedulerMachine(SchedulerMachine):
    """The same conversation with LAN holders added (issue #15): leases
    always lie within their source's availability, and the bookkeeping stays exact."""

    def _ranges(self, pairs: list[tuple[int, int]]) -> RangeSet:
        size = self.sim.size
        return RangeSet(
            ByteRange(a, min(size, a + n)) for a, n in pairs if a < size and min(size, a + n) > a
        )

    @rule(name=holder_names, rate=st.integers(1 * KiB, 400 * KiB), have=spans)
    def add_holder(self, name: str, rate: int, have: list[tuple[int, int]]) -> None:
        if name not in self.sim.sources:
            self.sim.sources[name] = SimSource(rate=rate, slots=2)
            self.sim.scheduler.add_source(name, 2, self.sim.now, available=self._ranges(have))
            self.sim._apply(self.sim.scheduler.poll(self.sim.now))

    @precondition(lambda self: any(n.startswith("h") for n in self.sim.sources))
    @rule(data=st.data(), more=spans)
    def holder_verified_more(self, data: st.DataObject, more: list[tuple[int, int]]) -> None:
        name = data.draw(st.sampled_from(sorted(n for n in self.sim.sources if n[0] == "h")))
        self.sim.scheduler.availability_grew(name, self._ranges(more), self.sim.now)
        self.sim._apply(self.sim.scheduler.poll(self.sim.now))

    @invariant()
    def holders_stay_within_their_availability(self) -> None:
        sim = self.sim
        for lease in sim.scheduler.statistics(sim.now).leases:
            allowed = sim.scheduler.availability(lease.source_id)
            assert allowed is None or allowed.contains(lease.range), (lease, allowed)
        done = self.sim.scheduler.done()
        for r in self.sim.scheduler.unserved():
            assert not done.overlaps(r), r


HolderSchedulerMachine.TestCase.settings = SETTINGS
TestHolderScheduler = HolderSchedulerMachine.TestCase
