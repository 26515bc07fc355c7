"""The ledger of bytes (core.pieces): its transitions, one at a time and in any order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmget.core.pieces import ByteState, PieceMap
from swarmget.core.ranges import ByteRange, RangeSet

M, L, C = ByteState.MISSING, ByteState.LEASED, ByteState.CLAIMED


def states(pieces: PieceMap) -> list[ByteState]:
    return [pieces.state_at(i) for i in range(pieces.size)]


def test_a_new_ledger_is_all_missing_but_what_was_claimed_before() -> None:
    pieces = PieceMap(10, claimed=RangeSet([ByteRange(2, 4), ByteRange(8, 15)]))
    assert states(pieces) == [M, M, C, C, M, M, M, M, C, C]  # clipped to the file
    assert (pieces.claimed_total(), pieces.missing_total(), pieces.leased_total()) == (4, 6, 0)
    assert not pieces.is_complete()
    pieces.check_invariants()


def test_leased_bytes_are_not_claimed() -> None:
    pieces = PieceMap(10)
    lease = pieces.lease_missing(6, piece_id=1, lease_id=2, source_id="a", now=0.0)
    assert states(pieces) == [L] * 6 + [M] * 4
    assert pieces.claimed() == RangeSet()
    assert pieces.claimed_total() == 0
    assert (pieces.leased_total(), pieces.missing_total()) == (6, 4)
    assert (lease.source_id, lease.started, lease.cursor) == ("a", 0.0, 0)
    assert pieces.lease_range(lease) == ByteRange(0, 6)
    pieces.check_invariants()


def test_delivered_bytes_are_claimed_once_and_move_the_frontier() -> None:
    pieces = PieceMap(10)
    lease = pieces.lease_missing(6, piece_id=1, lease_id=2, source_id="a", now=0.0)
    assert pieces.deliver(lease, 4, now=1.0) == ByteRange(0, 4)
    assert states(pieces) == [C] * 4 + [L] * 2 + [M] * 4
    assert (lease.cursor, lease.last_data, lease.received) == (4, 1.0, 4)
    assert pieces.lease_range(lease) == ByteRange(4, 6)
    pieces.check_invariants()


def test_a_duplicate_behind_the_frontier_claims_only_what_is_new() -> None:
    pieces = PieceMap(10)
    first = pieces.lease_missing(10, piece_id=1, lease_id=2, source_id="a", now=0.0)
    piece = pieces.piece(first.piece_id)
    second = pieces.add_lease(piece, lease_id=3, source_id="b", now=0.0, duplicate=True)
    assert pieces.is_duplicated()
    assert pieces.deliver(first, 5, now=1.0) == ByteRange(0, 5)
    assert pieces.deliver(second, 3, now=1.0) is None  # [0, 3) was claimed already
    assert pieces.deliver(second, 4, now=1.0) == ByteRange(5, 7)
    assert second.received == 7
    pieces.check_invariants()


def test_release_gives_the_leased_tail_back_only_when_the_last_copy_goes() -> None:
    pieces = PieceMap(10)
    first = pieces.lease_missing(10, piece_id=1, lease_id=2, source_id="a", now=0.0)
    second = pieces.add_lease(pieces.piece(1), lease_id=3, source_id="b", now=0.0)
    pieces.deliver(first, 4, now=1.0)
    pieces.release(first)
    assert states(pieces) == [C] * 4 + [L] * 6
    assert pieces.reassigned == 0
    pieces.release(second)
    assert states(pieces) == [C] * 4 + [M] * 6
    assert pieces.reassigned == 6
    assert list(pieces.pieces()) == []
    assert pieces.find_lease(2) is None
    pieces.check_invariants()


def test_split_moves_no_byte_between_states() -> None:
    pieces = PieceMap(10)
    lease = pieces.lease_missing(10, piece_id=1, lease_id=2, source_id="a", now=0.0)
    pieces.deliver(lease, 2, now=1.0)
    before = states(pieces)
    new = pieces.split(pieces.piece(1), 6, piece_id=3)
    assert states(pieces) == before
    assert (new.start, new.end, new.frontier, new.leases) == (6, 10, 6, [])
    assert pieces.lease_range(lease) == ByteRange(2, 6)
    for bad in (2, 10, 11):
        with pytest.raises(ValueError, match="cannot split"):
            pieces.split(pieces.piece(1), bad, piece_id=4)


def test_invalidate_makes_claimed_bytes_missing_and_leaves_leased_ones() -> None:
    pieces = PieceMap(10, claimed=RangeSet([ByteRange(0, 4)]))
    pieces.lease_missing(3, piece_id=1, lease_id=2, source_id="a", now=0.0)  # [4, 7)
    bad = pieces.invalidate(ByteRange(2, 6))
    assert bad == RangeSet([ByteRange(2, 4)])
    assert states(pieces) == [C, C, M, M, L, L, L, M, M, M]
    assert pieces.reassigned == 2
    pieces.check_invariants()


def test_complete_when_every_byte_is_claimed() -> None:
    pieces = PieceMap(4)
    lease = pieces.lease_missing(4, piece_id=1, lease_id=2, source_id="a", now=0.0)
    pieces.deliver(lease, 4, now=1.0)
    assert pieces.is_complete()
    with pytest.raises(ValueError, match="nothing is missing"):
        pieces.lease_missing(4, piece_id=3, lease_id=4, source_id="a", now=1.0)
    with pytest.raises(ValueError, match="outside"):
        pieces.state_at(4)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["lease", "dup", "deliver", "release", "split", "bad"]), st.integers(0, 99)
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 200), ops=_ops)
def test_every_byte_is_in_exactly_one_state_after_any_transitions(
    size: int, ops: list[tuple[str, int]]
) -> None:
    pieces = PieceMap(size)
    ids = iter(range(1, 10_000))
    claimed_ever = 0
    for op, n in ops:
        leases = list(pieces.leases())
        lease = leases[n % len(leases)] if leases else None
        if op == "lease" and pieces.missing_total():
            pieces.lease_missing(
                n + 1, piece_id=next(ids), lease_id=next(ids), source_id="a", now=0
            )
        elif op == "dup" and lease is not None:
            pieces.add_lease(pieces.piece(lease.piece_id), lease_id=next(ids), source_id="b", now=0)
        elif op == "deliver" and lease is not None:
            end = pieces.piece(lease.piece_id).end
            write = pieces.deliver(lease, min(n, max(0, end - lease.cursor)), now=1.0)
            claimed_ever += write.length if write is not None else 0
        elif op == "release" and lease is not None:
            pieces.release(lease)
        elif op == "split" and lease is not None:
            piece = pieces.piece(lease.piece_id)
            if piece.remaining > 1:
                pieces.split(
                    piece, piece.frontier + 1 + n % (piece.remaining - 1), piece_id=next(ids)
                )
        elif op == "bad" and size:
            pieces.invalidate(ByteRange(n % size, min(size, n % size + n)))
        pieces.check_invariants()
        total = pieces.claimed_total() + pieces.missing_total() + pieces.leased_total()
        assert total == size
        assert pieces.claimed_total() <= claimed_ever
