"""``SourceInfo.ranges``: how many ranges each source was asked for (each is a request of
its own: to a helper a signed request and the helper's own request to the origin), what a
bench divides by the MiB to see the requester's cost per range (issue #17)."""

from __future__ import annotations

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Action, Assign, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

MiB = 1024 * 1024


class CountingSwarm(SimSwarm):
    """A SimSwarm that counts the pieces each source was told to fetch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.asked: dict[str, int] = {}

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Assign):
                self.asked[a.source_id] = self.asked.get(a.source_id, 0) + 1
        super()._apply(actions)


def test_each_source_counts_the_ranges_it_was_asked_for() -> None:
    sim = CountingSwarm(16 * MiB, SchedulerConfig())
    sim.add("origin", rate=4 * MiB, slots=4)
    for h in range(3):
        sim.add(f"h{h}", rate=(h + 1) * MiB, slots=3)
    sim.step(0.5)
    sim.kill("h0")  # its pieces go to the others: more ranges for them
    assert sim.run(max_time=600.0)
    assert sim.written == RangeSet([ByteRange(0, 16 * MiB)])
    counted = {s.source_id: s.ranges for s in sim.scheduler.statistics(sim.now).sources}
    assert counted == sim.asked
    assert sum(counted.values()) > 4 + 3 * 3  # more than the first round


def test_each_source_sums_what_its_ranges_waited_for_their_first_data() -> None:
    """``SourceInfo.waited``: with a simulated wait of 0.2 s per stream, every range that
    delivered waited about that long (to the simulator's step)."""
    sim = CountingSwarm(8 * MiB, SchedulerConfig(steal=False, endgame=False))
    sim.add("origin", rate=4 * MiB, slots=2, first_byte=0.2)
    sim.add("h0", rate=2 * MiB, slots=1)
    assert sim.run(dt=0.01, max_time=600.0)
    info = {s.source_id: s for s in sim.scheduler.statistics(sim.now).sources}
    origin, helper = info["origin"], info["h0"]
    assert origin.ranges >= 2
    assert 0.2 * origin.ranges <= origin.waited <= 0.23 * origin.ranges
    assert helper.waited <= 0.02 * helper.ranges  # no wait but the step's
