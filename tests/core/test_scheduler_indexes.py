"""The ledger's indexes kept on events (pieces by start, the claimed total; issue #17) agree
with working them out again. The hypothesis state machines of test_scheduler_properties.py
check it after every step (``check_invariants``); this shows the check catches a drift."""

from __future__ import annotations

import pytest

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

KiB = 1024


def _swarm() -> SimSwarm:
    config = SchedulerConfig(min_piece=4 * KiB, max_piece=16 * KiB, min_steal=1 * KiB)
    sim = SimSwarm(256 * KiB, config, done=RangeSet([ByteRange(8 * KiB, 24 * KiB)]))
    sim.add("a", rate=64 * KiB, slots=3)
    sim.add("b", rate=16 * KiB, slots=2)
    for _ in range(10):
        sim.step(0.1)
    sim.scheduler.invalidate(ByteRange(10 * KiB, 12 * KiB))
    sim.written.subtract(ByteRange(10 * KiB, 12 * KiB))
    sim.step(0.1)
    return sim


def test_the_indexes_agree_with_a_recount_through_splits_and_bad_bytes() -> None:
    sim = _swarm()
    sim.scheduler.check_invariants()
    ledger = sim.scheduler._pieces
    starts = [p.start for p in ledger.pieces_by_start()]
    assert starts == sorted(p.start for p in ledger.pieces())
    assert ledger.claimed_total() == sim.written.total()


def test_a_drifted_index_is_caught() -> None:
    sim = _swarm()
    ledger = sim.scheduler._pieces
    ledger._claimed_total += 1
    with pytest.raises(AssertionError):
        sim.scheduler.check_invariants()
    ledger._claimed_total -= 1
    ledger._by_start.reverse()
    with pytest.raises(AssertionError):
        sim.scheduler.check_invariants()
