"""Property tests: under any sequence of events the scheduler's bookkeeping stays exact.

Hypothesis drives a simulated swarm with arbitrary progress, failures, stalls, crashes and
time jumps. After every step: done ∪ leased ∪ missing covers the file exactly once, no byte is
written by two winners, each claim lies inside what its stream delivered. At the end, with one
healthy source left alive, the download always completes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import FailureKind, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

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
    )
    def setup(self, size: int, done: list[tuple[int, int]]) -> None:
        pre = RangeSet()
        for start, length in done:
            if start < size:
                pre.add(ByteRange(start, min(size, start + length)))
        self.sim = SimSwarm(size, CONFIG, done=pre)

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


SchedulerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestScheduler = SchedulerMachine.TestCase
