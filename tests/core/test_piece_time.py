"""Pieces of at least ``piece_time`` seconds of a measured source's slot (issue #17: 64
helpers x 3 slots x 4 pieces made every piece ``min_piece``, and every piece costs the
requester a signed request and the helper a request to the origin)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Assign, Scheduler, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB
CONFIG = SchedulerConfig()
BY_COUNT = dataclasses.replace(CONFIG, piece_time=0.0)


class CountingSwarm(SimSwarm):
    """A SimSwarm that keeps every piece it was told to fetch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.assigned: list[Assign] = []

    def _apply(self, actions: list[object]) -> None:  # type: ignore[override]
        self.assigned += [a for a in actions if isinstance(a, Assign)]
        super()._apply(actions)  # type: ignore[arg-type]


def swarm(size: int, config: SchedulerConfig, helpers: int, rate: float) -> CountingSwarm:
    """The requester's own link (4 slots) and ``helpers`` helpers (3 slots) of one rate."""
    sim = CountingSwarm(size, config)
    sim.add("origin", rate=rate, slots=4)
    for h in range(helpers):
        sim.add(f"h{h}", rate=rate, slots=3)
    assert sim.run(max_time=600.0)
    sim.scheduler.check_invariants()
    assert sim.written == RangeSet([ByteRange(0, size)])
    return sim


def first_pieces(config: SchedulerConfig, rate: float, size: int, others: int) -> list[int]:
    """Source "a" (1 slot) delivers at ``rate`` for 2 s (less than its first piece) while
    ``others`` sources of one slot hold pieces and never deliver; then "a" has 4 slots: the
    lengths of its new pieces."""
    s = Scheduler(size, config)
    s.add_source("a", 1, 0.0)
    (first,) = [a for a in s.poll(0.0) if isinstance(a, Assign)]
    for i in range(others):
        s.add_source(f"o{i}", 1, 0.0)
    s.poll(0.0)
    for t in range(1, 21):
        s.on_data(first.lease_id, int(rate * 0.1), t / 10)
    s.add_source("a", 4, 2.0)
    new = [a.range.length for a in s.poll(2.0) if isinstance(a, Assign) and a.source_id == "a"]
    s.check_invariants()
    assert len(new) == 3
    return new


def test_a_measured_source_gets_piece_time_of_its_slot() -> None:
    """256 MiB, 64 slots: by count < 1 MiB per piece; a source of 7 MiB/s on 4 slots
    streams 1.75 MiB per slot in ``piece_time`` (1 s), and that is what it gets."""
    by_count = first_pieces(BY_COUNT, 7 * MiB, 256 * MiB, 60)
    by_time = first_pieces(CONFIG, 7 * MiB, 256 * MiB, 60)
    assert max(by_count) < MiB
    slot_bytes = 7 * MiB / 4 * CONFIG.piece_time
    assert all(0.9 * slot_bytes <= n <= 1.1 * slot_bytes for n in by_time)


def test_a_slow_source_gets_no_less_than_by_count() -> None:
    assert first_pieces(CONFIG, 256 * KiB, 256 * MiB, 24) == first_pieces(
        BY_COUNT, 256 * KiB, 256 * MiB, 24
    )


def test_the_floor_never_leaves_a_slot_alive_without_a_piece() -> None:
    """64 slots alive and ~33 MiB missing: at most an equal share per slot (~0.5 MiB),
    however fast the source (by count: ``min_piece``)."""
    by_time = first_pieces(CONFIG, 7 * MiB, 64 * MiB, 60)
    assert max(first_pieces(BY_COUNT, 7 * MiB, 64 * MiB, 60)) == CONFIG.min_piece
    assert all(CONFIG.min_piece < n <= 34 * MiB // 64 for n in by_time)


@pytest.mark.parametrize(
    ("size", "helpers", "rate"), [(64 * MiB, 7, 5 * MiB), (512 * MiB, 63, 2 * MiB)]
)
def test_fewer_pieces_and_no_later_finish_than_by_count(
    size: int, helpers: int, rate: float
) -> None:
    by_time, by_count = swarm(size, CONFIG, helpers, rate), swarm(size, BY_COUNT, helpers, rate)
    # 64 MiB, 7 helpers: 165 -> 103 pieces; 512 MiB, 63 helpers of 2 MiB/s: 1,242 -> 995
    assert len(by_time.assigned) < 0.85 * len(by_count.assigned)
    assert by_time.now <= by_count.now * 1.02  # simulated clock: the end is not held up


def test_a_negative_piece_time_is_refused() -> None:
    with pytest.raises(ValueError, match="piece_time"):
        SchedulerConfig(piece_time=-1.0)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 64 * MiB),
    rates=st.lists(st.integers(64 * KiB, 16 * MiB), min_size=1, max_size=6),
    piece_time=st.sampled_from([0.0, 0.5, 1.0, 4.0]),
)
def test_every_byte_arrives_once_whatever_the_floor(
    size: int, rates: list[int], piece_time: float
) -> None:
    sim = SimSwarm(size, dataclasses.replace(CONFIG, piece_time=piece_time))
    for i, rate in enumerate(rates):
        sim.add(f"s{i}", rate=rate, slots=1 + i % 3)
    assert sim.run(max_time=3600.0)
    assert sim.written == RangeSet([ByteRange(0, size)]) if size else True
    sim.scheduler.check_invariants()


def test_each_source_counts_the_ranges_it_was_asked_for() -> None:
    """``SourceInfo.ranges``: what a bench divides by the MiB to see the cost per range."""
    sim = swarm(16 * MiB, CONFIG, 3, 4 * MiB)
    asked: dict[str, int] = {}
    for a in sim.assigned:
        asked[a.source_id] = asked.get(a.source_id, 0) + 1
    counted = {s.source_id: s.ranges for s in sim.scheduler.statistics(sim.now).sources}
    assert counted == asked
    assert sum(counted.values()) > 4
