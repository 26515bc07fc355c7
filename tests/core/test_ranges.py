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


def _first_run(offsets: set[int]) -> ByteRange | None:
    """The lowest run of consecutive offsets (the model of a set's first range)."""
    if not offsets:
        return None
    start = end = min(offsets)
    while end in offsets:
        end += 1
    return ByteRange(start, end)


@given(st.lists(ranges, max_size=25), st.lists(ranges, max_size=25))
def test_first_common_and_first_outside_match_the_sets_of_offsets(
    mine: list[ByteRange], theirs: list[ByteRange]
) -> None:
    a, b = RangeSet(mine), RangeSet(theirs)
    in_a = {i for r in a for i in range(r.start, r.end)}
    in_b = {i for r in b for i in range(r.start, r.end)}
    both, only_a = in_a & in_b, in_a - in_b
    # each set's ranges are merged (never adjacent): a run of offsets lies in one range
    assert a.first_common(b) == b.first_common(a) == _first_run(both)
    assert a.first_outside(b) == _first_run(only_a)


def test_first_common_and_first_outside_by_example() -> None:
    a = RangeSet([ByteRange(0, 10), ByteRange(20, 30)])
    b = RangeSet([ByteRange(5, 8), ByteRange(9, 25)])
    assert a.first_common(b) == ByteRange(5, 8)
    assert a.first_outside(b) == ByteRange(0, 5)
    assert b.first_outside(a) == ByteRange(10, 20)
    assert RangeSet([ByteRange(0, 4)]).first_outside(RangeSet([ByteRange(0, 9)])) is None
    assert a.first_common(RangeSet()) is None
    assert a.first_outside(RangeSet()) == ByteRange(0, 10)


def _offsets(s: RangeSet) -> set[int]:
    return {i for r in s for i in range(r.start, r.end)}


def _merged(s: RangeSet) -> bool:
    parts = list(s)
    return all(a.end < b.start for a, b in zip(parts, parts[1:], strict=False))


@given(st.lists(ranges, max_size=25), st.lists(ranges, max_size=25))
def test_difference_and_update_match_the_sets_of_offsets(
    mine: list[ByteRange], theirs: list[ByteRange]
) -> None:
    a, b = RangeSet(mine), RangeSet(theirs)
    rest = a.difference(b)
    assert _offsets(rest) == _offsets(a) - _offsets(b)
    assert _merged(rest)
    union = a.copy()
    union.update(b)
    assert union == RangeSet([*mine, *theirs])  # as adding them one by one
    assert _offsets(union) == _offsets(a) | _offsets(b)
    assert _merged(union)


@given(st.lists(ranges, max_size=25))
def test_of_sorted_is_the_set_of_ranges_in_order(given_ranges: list[ByteRange]) -> None:
    in_order = sorted(given_ranges)
    assert RangeSet.of_sorted(in_order) == RangeSet(given_ranges)


def test_of_sorted_refuses_ranges_out_of_order() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        RangeSet.of_sorted([ByteRange(10, 20), ByteRange(0, 5)])
