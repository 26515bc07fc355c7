"""Pieces sized for the swarm the hub listed, not for the requester alone (issue #14):
``Scheduler.expect_slots``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Assign, Scheduler, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB
CONFIG = SchedulerConfig()


def first_round(size: int, slots: int, expected: int) -> list[Assign]:
    s = Scheduler(size, CONFIG)
    s.expect_slots(expected)
    s.add_source("origin", slots, 0.0)
    out = [a for a in s.poll(0.0) if isinstance(a, Assign)]
    s.check_invariants()
    return out


def test_first_pieces_are_sized_for_the_listed_swarm() -> None:
    alone = first_round(64 * MiB, 4, 0)
    swarm = first_round(64 * MiB, 4, 4 + 7 * 3)  # the requester and 7 listed helpers
    assert len(alone) == len(swarm) == 4
    assert sum(a.range.length for a in alone) > 64 * MiB // 5  # about a quarter at once
    leased = sum(a.range.length for a in swarm)
    assert leased <= 64 * MiB // 25 + 4 * CONFIG.min_piece  # about its own share's quarter
    assert max(a.range.length for a in swarm) < min(a.range.length for a in alone)


def test_an_expectation_below_the_slots_alive_changes_nothing() -> None:
    assert first_round(64 * MiB, 4, 3) == first_round(64 * MiB, 4, 0)


def test_clearing_the_expectation_sizes_for_the_slots_alive_again() -> None:
    s = Scheduler(64 * MiB, CONFIG)
    s.expect_slots(32)
    s.add_source("origin", 1, 0.0)
    small = [a for a in s.poll(0.0) if isinstance(a, Assign)]
    s.expect_slots(0)
    s.add_source("late", 1, 0.0)
    big = [a for a in s.poll(0.0) if isinstance(a, Assign)]
    assert len(small) == len(big) == 1
    assert big[0].range.length > 4 * small[0].range.length
    s.check_invariants()


def test_a_negative_expectation_is_refused() -> None:
    with pytest.raises(ValueError, match="slots"):
        Scheduler(MiB).expect_slots(-1)


def joined_late(size: int, expected: int) -> SimSwarm:
    """The requester (4 slots) starts alone; 7 helpers (3 slots each) of the same rate join
    0.15 s later, as their health checks answer; run to the end (simulated time)."""
    sim = SimSwarm(size, CONFIG)
    sim.scheduler.expect_slots(expected)
    sim.add("origin", rate=5 * MiB, slots=4)
    sim.step(0.15)
    for h in range(7):
        sim.add(f"h{h}", rate=5 * MiB, slots=3)
    assert sim.run(max_time=60.0)
    sim.scheduler.check_invariants()
    return sim


def test_helpers_that_join_late_share_the_work_and_the_file_completes() -> None:
    """With the expectation the requester's own link does not hold a quarter of the file
    when the helpers come: the swarm ends sooner (simulated clock), every byte once."""
    size = 16 * MiB
    alone, swarm = joined_late(size, 0), joined_late(size, 4 + 7 * 3)
    for sim in (alone, swarm):
        assert sim.written == RangeSet([ByteRange(0, size)])
    assert swarm.now < alone.now


def test_the_expectation_gives_the_late_helpers_as_much_work_as_the_requester() -> None:
    swarm = joined_late(16 * MiB, 4 + 7 * 3)
    shares = [swarm.writes_by_source[f"h{h}"] for h in range(7)]
    assert min(shares) * 2 > swarm.writes_by_source["origin"]  # no quarter of the file held


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 256 * MiB),
    slots=st.integers(1, 8),
    expected=st.integers(0, 64),
)
def test_pieces_never_grow_with_the_expectation(size: int, slots: int, expected: int) -> None:
    alone, swarm = first_round(size, slots, 0), first_round(size, slots, expected)
    assert swarm[0].range.start == 0
    assert swarm[0].range.length <= alone[0].range.length
    target = size // (max(slots, expected) * CONFIG.pieces_per_slot)
    bound = max(CONFIG.min_piece, min(CONFIG.max_piece, target))
    assert swarm[0].range.length <= bound or swarm[0].range.length == size
