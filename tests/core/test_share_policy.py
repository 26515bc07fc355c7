"""The share cache's pure policy (#15, docs/fetch-once.md §7): LRU within a byte budget,
pinned files never evicted, a budget of 0 keeps nothing. Time is a fake clock: plain
numbers chosen by the test."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.share_cache import SharePolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


def test_least_recently_used_goes_first() -> None:
    clock, policy = FakeClock(), SharePolicy(budget=300)
    for name in ("a", "b", "c"):
        policy.add(name, 100, clock.tick())
    policy.touch("a", clock.tick())  # a served: now the most recent
    policy.add("d", 100, clock.tick())
    assert policy.evictions() == ["b"]


def test_within_budget_nothing_goes() -> None:
    policy = SharePolicy(budget=300)
    policy.add("a", 100, 1.0)
    policy.add("b", 200, 2.0)
    assert policy.evictions() == []


def test_a_pinned_file_is_never_evicted_and_goes_once_unpinned() -> None:
    clock, policy = FakeClock(), SharePolicy(budget=250)
    policy.add("old", 100, clock.tick())
    policy.add("mid", 100, clock.tick())
    policy.pin("old")  # being served
    policy.add("new", 100, clock.tick())
    assert policy.evictions() == ["mid"]
    policy.remove("mid")
    policy.add("newer", 100, clock.tick())
    assert policy.evictions() == ["new"]  # old still pinned
    policy.remove("new")
    policy.unpin("old")
    policy.add("latest", 100, clock.tick())
    assert policy.evictions() == ["old"]


def test_pins_count_streams() -> None:
    policy = SharePolicy(budget=1)
    policy.add("a", 100, 1.0)
    policy.pin("a")
    policy.pin("a")
    policy.unpin("a")
    assert policy.evictions() == []
    policy.unpin("a")
    assert policy.evictions() == ["a"]


def test_pins_taken_before_the_file_was_kept_count() -> None:
    policy = SharePolicy(budget=1)
    policy.add("a", 100, 1.0, pins=1)
    assert policy.evictions() == []


def test_everything_pinned_leaves_the_cache_over_budget() -> None:
    policy = SharePolicy(budget=100)
    for i, name in enumerate(("a", "b")):
        policy.add(name, 100, float(i))
        policy.pin(name)
    assert policy.evictions() == []
    assert policy.total() == 200


def test_a_budget_of_zero_keeps_nothing() -> None:
    policy = SharePolicy(budget=0)
    assert not policy.sharing
    policy.add("a", 0, 1.0)
    policy.add("b", 10, 2.0)
    assert policy.evictions() == ["a", "b"]


def test_a_file_larger_than_the_budget_is_evicted_itself() -> None:
    policy = SharePolicy(budget=100)
    policy.add("small", 50, 1.0)
    policy.add("huge", 500, 2.0)
    assert policy.evictions() == ["small", "huge"]


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        SharePolicy(budget=-1)


@given(
    budget=st.integers(0, 1000),
    files=st.lists(st.tuples(st.integers(0, 400), st.floats(0, 1e6), st.booleans()), max_size=20),
)
def test_evictions_fit_the_budget_and_spare_pins(
    budget: int, files: list[tuple[int, float, bool]]
) -> None:
    policy = SharePolicy(budget=budget)
    for i, (size, used, pinned) in enumerate(files):
        policy.add(f"f{i}", size, used)
        if pinned:
            policy.pin(f"f{i}")
    by_use = [e.name for e in policy.entries()]
    evicted = policy.evictions()
    assert not any(policy.pinned(name) for name in evicted)
    assert evicted == [n for n in by_use if n in evicted]  # least recently used first
    for name in evicted:
        policy.remove(name)
    left = policy.entries()
    if budget > 0:
        unpinned_left = [e for e in left if not e.pins]
        assert policy.total() <= budget or not unpinned_left
    else:
        assert all(e.pins for e in left)
