"""``SimSwarm`` with a wait for each stream's first byte (``SimSource.first_byte``): the
simulated round trips that make a piece cost time, so that piece sizing can be judged in
simulation before the testbed (bench/README, "Larger pieces by time")."""

from __future__ import annotations

import dataclasses

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

MiB = 1024 * 1024
#: pieces of 1 MiB: 16 requests for 16 MiB, each asked for once the one before ended
FIXED = SchedulerConfig(min_piece=MiB, max_piece=MiB, steal=False, endgame=False, pipeline=0)
#: ... each asked for while the one before still streams (``SchedulerConfig.pipeline``)
PIPELINED = dataclasses.replace(FIXED, pipeline=1.0)


def run(first_byte: float, *, slots: int = 1, config: SchedulerConfig = FIXED) -> SimSwarm:
    sim = SimSwarm(16 * MiB, config)
    sim.add("a", rate=4 * MiB, slots=slots, first_byte=first_byte)
    assert sim.run(dt=0.01, max_time=60.0)
    assert sim.written == RangeSet([ByteRange(0, 16 * MiB)])
    sim.scheduler.check_invariants()
    return sim


def test_a_stream_delivers_nothing_before_its_first_byte() -> None:
    sim = SimSwarm(4 * MiB, FIXED)
    sim.add("a", rate=4 * MiB, first_byte=0.2)
    for _ in range(19):
        sim.step(0.01)
    assert sim.written.total() == 0
    for _ in range(5):
        sim.step(0.01)
    assert sim.written.total() > 0


def test_each_piece_costs_its_wait_on_one_connection() -> None:
    """One slot: 16 pieces one after another, each waiting 0.1 s: ~1.6 s more."""
    assert 1.4 <= run(0.1).now - run(0.0).now <= 1.8


def test_other_connections_carry_the_link_while_one_waits() -> None:
    """Four slots: while one stream waits for its first byte the others share the link at
    full rate, so the waits mostly overlap."""
    alone, overlapped = run(0.1), run(0.1, slots=4)
    assert overlapped.now < alone.now - 1.0
    assert run(0.0, slots=4).now <= overlapped.now


def test_pipelining_hides_the_waits_on_one_connection() -> None:
    """One slot, each piece's request made while the one before still streams: the waits
    overlap the streams; only the first one (nothing measured yet to plan by) and a little
    of the next (the rate is learned as it goes) cost time."""
    waiting, pipelined, plain = run(0.1), run(0.1, config=PIPELINED), run(0.0)
    assert pipelined.now - plain.now < 0.4 < waiting.now - plain.now - 1.0
    stats = pipelined.scheduler.statistics(pipelined.now)
    assert [s.ranges for s in stats.sources] == [16]  # the same pieces, no copies or cuts
    assert [s.cut for s in stats.sources] == [0]


def test_a_stream_ended_early_still_takes_its_in_flight_bytes_of_the_link() -> None:
    """A fast source joins: the slow one's stream is ended early (split by a steal or lost
    to a copy), and what was in flight still takes the slow source's link
    (``SimSwarm.wasted``); none without ``in_flight``."""

    def split(in_flight: int) -> SimSwarm:
        sim = SimSwarm(8 * MiB, SchedulerConfig(min_piece=MiB, max_piece=8 * MiB))
        sim.add("slow", rate=MiB, in_flight=in_flight)
        sim.step(0.5)
        sim.add("fast", rate=8 * MiB)  # steals the far end of the slow one's piece
        assert sim.run(dt=0.01, max_time=60.0)
        assert sim.written == RangeSet([ByteRange(0, 8 * MiB)])
        return sim

    plain, wasteful = split(0), split(MiB)
    assert plain.wasted == 0
    cuts = sum(s.cut for s in wasteful.scheduler.statistics(wasteful.now).sources)
    assert 0 < wasteful.wasted <= MiB * cuts
    assert wasteful.now >= plain.now
