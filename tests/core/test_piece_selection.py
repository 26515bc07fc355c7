"""Which bytes an idle slot fetches next (core.selection): the pick, and that picking changes
nothing."""

from __future__ import annotations

import copy
import dataclasses

from swarmget.core.pieces import Lease, PieceMap
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import SchedulerConfig
from swarmget.core.selection import Duplicate, Selector, Split, TakeMissing
from swarmget.core.sources import SourceBook

KiB = 1024
MiB = 1024 * KiB

CONFIG = SchedulerConfig(
    min_piece=256 * KiB, max_piece=1 * MiB, min_steal=64 * KiB, rescue_backlog=0
)


class World:
    """A ledger and sources set up by hand, and the selector over them."""

    def __init__(
        self, size: int, config: SchedulerConfig = CONFIG, claimed: RangeSet | None = None
    ):
        self.pieces = PieceMap(size, claimed=claimed)
        self.sources = SourceBook(config)
        self.selector = Selector(config, self.pieces, self.sources)
        self._ids = iter(range(1, 1000))

    def lease(self, source_id: str, length: int) -> Lease:
        lease = self.pieces.lease_missing(
            length, piece_id=next(self._ids), lease_id=next(self._ids), source_id=source_id, now=0.0
        )
        self.sources[source_id].leases.add(lease.id)
        return lease

    def stream(self, lease: Lease, per_second: int, seconds: int) -> None:
        """``lease`` delivers ``per_second`` bytes at t = 1, 2, ... ``seconds``."""
        for t in range(1, seconds + 1):
            self.pieces.deliver(lease, per_second, float(t))
            self.sources[lease.source_id].record_data(float(t), per_second, lease.started)

    def measured(self, source_id: str, per_second: int, seconds: int) -> None:
        """``source_id`` streamed ``per_second`` bytes at t = 1 .. ``seconds`` (elsewhere)."""
        for t in range(1, seconds + 1):
            self.sources[source_id].record_data(float(t), per_second, 0.0)

    def state(self) -> object:
        return (
            copy.deepcopy(
                (list(self.pieces.pieces()), list(self.pieces.leases()), list(self.sources))
            ),
            self.pieces.claimed(),
            self.pieces.missing_total(),
        )


def test_missing_bytes_come_first_in_pieces_sized_by_the_slots() -> None:
    w = World(10 * MiB)
    w.sources.add("a", 2, 0.0)
    # 10 MiB over 2 slots * 4 pieces each: 1.25 MiB, capped at max_piece
    assert w.selector.pick(w.sources["a"], 0.0) == TakeMissing(1 * MiB)
    w.sources.add("b", 8, 0.0)  # 10 MiB / 40 pieces: 256 KiB (min_piece)
    assert w.selector.pick(w.sources["a"], 0.0) == TakeMissing(256 * KiB)


def test_a_piece_leaves_no_sliver_and_ends_on_the_alignment() -> None:
    claimed = RangeSet([ByteRange(1 * MiB + 100 * KiB, 4 * MiB)])
    w = World(8 * MiB, claimed=claimed)  # 5.1 MiB missing: 1 MiB pieces for 1 slot
    w.sources.add("a", 1, 0.0)
    assert w.selector.pick(w.sources["a"], 0.0) == TakeMissing(1 * MiB + 100 * KiB)
    aligned = World(10 * MiB, dataclasses.replace(CONFIG, align=300 * KiB))
    aligned.sources.add("a", 2, 0.0)
    assert aligned.selector.pick(aligned.sources["a"], 0.0) == TakeMissing(4 * 300 * KiB)


def test_picking_changes_nothing() -> None:
    w = World(4 * MiB)
    for name in ("a", "b"):
        w.sources.add(name, 1, 0.0)
    w.stream(w.lease("a", 4 * MiB), per_second=64 * KiB, seconds=3)
    before = w.state()
    first = w.selector.pick(w.sources["b"], 3.0)
    assert isinstance(first, Split)
    assert w.selector.pick(w.sources["b"], 3.0) == first
    assert w.state() == before


def test_an_idle_source_steals_the_far_part_of_the_largest_piece_by_speed() -> None:
    w = World(4 * MiB)
    for name in ("a", "b", "c"):
        w.sources.add(name, 1, 0.0)
    small = w.lease("a", 1 * MiB)
    big = w.lease("b", 3 * MiB)
    assert w.selector.pick(w.sources["c"], 0.0) == Split(w.pieces.piece(big.piece_id), 2560 * KiB)
    # measured: the holder streams 64 KiB/s, the thief 192 KiB/s: the holder keeps a quarter
    w.stream(big, per_second=64 * KiB, seconds=2)
    w.measured("c", per_second=192 * KiB, seconds=2)
    pick = w.selector.pick(w.sources["c"], 2.0)
    assert pick == Split(
        w.pieces.piece(big.piece_id), 1 * MiB + 128 * KiB + (3 * MiB - 128 * KiB) // 4
    )
    assert small.piece_id != big.piece_id


def test_too_little_to_split_goes_to_a_faster_source_as_an_endgame_duplicate() -> None:
    w = World(100 * KiB)
    for name in ("slow", "fast"):
        w.sources.add(name, 1, 0.0)
    lease = w.lease("slow", 100 * KiB)
    w.stream(lease, per_second=1 * KiB, seconds=2)  # 96 KiB left at 1 KiB/s
    w.measured("fast", per_second=100 * KiB, seconds=2)
    piece = w.pieces.piece(lease.piece_id)
    assert w.selector.pick(w.sources["fast"], 2.0) == Duplicate(piece)
    off = Selector(dataclasses.replace(CONFIG, endgame=False), w.pieces, w.sources)
    assert off.pick(w.sources["fast"], 2.0) is None


def test_no_duplicate_onto_a_slower_source_nor_of_its_own_piece() -> None:
    w = World(100 * KiB)
    for name in ("fast", "slow"):
        w.sources.add(name, 2, 0.0)
    w.stream(w.lease("fast", 100 * KiB), per_second=10 * KiB, seconds=2)
    w.measured("slow", per_second=1 * KiB, seconds=2)
    assert w.selector.pick(w.sources["slow"], 2.0) is None
    assert w.selector.pick(w.sources["fast"], 2.0) is None  # it holds the only piece


def test_a_slow_piece_holding_up_the_claimed_prefix_is_rescued_before_new_work() -> None:
    claimed = RangeSet([ByteRange(1 * MiB, 3 * MiB)])  # 2 MiB done beyond [0, 1 MiB)
    config = dataclasses.replace(CONFIG, rescue_backlog=256 * KiB)
    w = World(4 * MiB, config, claimed=claimed)
    for name in ("slow", "helper"):
        w.sources.add(name, 1, 0.0)
    lease = w.lease("slow", 1 * MiB)
    w.stream(lease, per_second=64 * KiB, seconds=4)  # 768 KiB to go: 12 s
    w.measured("helper", per_second=64 * KiB, seconds=4)  # as fast: split, keep 1 s
    piece = w.pieces.piece(lease.piece_id)
    assert w.selector.pick(w.sources["helper"], 4.0) == Split(piece, 256 * KiB + 64 * KiB)
    off = Selector(CONFIG, w.pieces, w.sources)  # no rescue: new work first
    assert isinstance(off.pick(w.sources["helper"], 4.0), TakeMissing)


def test_an_unmeasured_source_rescues_nobody() -> None:
    claimed = RangeSet([ByteRange(1 * MiB, 3 * MiB)])
    w = World(4 * MiB, dataclasses.replace(CONFIG, rescue_backlog=256 * KiB), claimed=claimed)
    for name in ("slow", "new"):
        w.sources.add(name, 1, 0.0)
    w.stream(w.lease("slow", 1 * MiB), per_second=64 * KiB, seconds=4)
    assert isinstance(w.selector.pick(w.sources["new"], 4.0), TakeMissing)
