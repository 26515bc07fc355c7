"""RangeSet: unit and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange, RangeSet


def test_add_merges_adjacent_and_overlapping() -> None:
    s = RangeSet([ByteRange(0, 10), ByteRange(20, 30)])
    s.add(ByteRange(10, 20))
    assert list(s) == [ByteRange(0, 30)]
    s.add(ByteRange(25, 40))
    assert list(s) == [ByteRange(0, 40)]


def test_subtract_splits() -> None:
    s = RangeSet([ByteRange(0, 100)])
    s.subtract(ByteRange(10, 20))
    assert list(s) == [ByteRange(0, 10), ByteRange(20, 100)]
    assert s.total() == 90


def test_missing_and_bounds() -> None:
    s = RangeSet([ByteRange(10, 20), ByteRange(30, 40)])
    assert list(s.missing(ByteRange(0, 50))) == [
        ByteRange(0, 10),
        ByteRange(20, 30),
        ByteRange(40, 50),
    ]
    assert s.bounds() == ByteRange(10, 40)
    assert RangeSet().bounds() is None


def test_contains_and_pop_first() -> None:
    s = RangeSet([ByteRange(0, 10), ByteRange(20, 30)])
    assert s.contains(ByteRange(2, 8))
    assert not s.contains(ByteRange(8, 22))
    assert s.pop_first(4) == ByteRange(0, 4)
    assert s.pop_first(100) == ByteRange(4, 10)
    assert list(s) == [ByteRange(20, 30)]


def test_invalid_range_rejected() -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        ByteRange(5, 4)
    with pytest.raises(ValueError, match="empty"):
        ByteRange(3, 3).http_spec()
    assert ByteRange(0, 10).http_spec() == "bytes=0-9"


def test_pairs_round_trip() -> None:
    s = RangeSet([ByteRange(0, 3), ByteRange(7, 9)])
    assert RangeSet.from_pairs(s.as_pairs()) == s


ranges = st.tuples(st.integers(0, 500), st.integers(0, 60)).map(
    lambda t: ByteRange(t[0], t[0] + t[1])
)


@given(st.lists(st.tuples(st.booleans(), ranges), max_size=40))
def test_matches_a_set_of_offsets(ops: list[tuple[bool, ByteRange]]) -> None:
    model: set[int] = set()
    s = RangeSet()
    for add, r in ops:
        if add:
            s.add(r)
            model |= set(range(r.start, r.end))
        else:
            s.subtract(r)
            model -= set(range(r.start, r.end))
    assert s.total() == len(model)
    covered = {i for r in s for i in range(r.start, r.end)}
    assert covered == model
    parts = list(s)
    for a, b in zip(parts, parts[1:], strict=False):
        assert a.end < b.start  # disjoint and not adjacent
    assert s.missing(ByteRange(0, 600)).total() == 600 - len(model & set(range(600)))
