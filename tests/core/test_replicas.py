"""Which hub replicas stopped, decided from reads of their counters (pure: the test passes
the read times)."""

from __future__ import annotations

import pytest

from swarmget.core.replicas import ReplicaSightings, ReplicaState

ME, A, B = "me", "a", "b"


def _sightings(**kw: float) -> ReplicaSightings:
    return ReplicaSightings(me=ME, dead_after=kw.pop("dead_after", 2.0), **kw)  # type: ignore[arg-type]


def test_a_replica_whose_counter_moves_stays_alive() -> None:
    s = _sightings()
    for step in range(20):
        assert s.read({ME: step, A: step}, step * 0.5) == frozenset()
    assert s.state(A, 10.0) is ReplicaState.ALIVE


def test_a_still_counter_is_gone_after_dead_after_and_told_once() -> None:
    s = _sightings()
    s.read({ME: 1, A: 7}, 0.0)
    news = [s.read({ME: 2 + i, A: 7}, 0.5 * (i + 1)) for i in range(6)]
    # unchanged since 0.0: gone at the read at 2.0 s (4 reads unchanged >= min_reads 3)
    assert news == [frozenset(), frozenset(), frozenset(), {A}, frozenset(), frozenset()]
    assert s.state(A, 3.0) is ReplicaState.GONE
    assert s.state(ME, 3.0) is ReplicaState.ALIVE


def test_one_slow_read_condemns_nobody() -> None:
    """The database (or this process) stalled for longer than dead_after: A's raises were
    held up too, so one read is not enough to call it gone."""
    s = _sightings()
    s.read({ME: 1, A: 7}, 0.0)
    assert s.read({ME: 2, A: 7}, 5.0) == frozenset()
    assert s.state(A, 5.0) is ReplicaState.ALIVE
    assert s.read({ME: 3, A: 8}, 5.5) == frozenset()  # its raise landed: alive, clock reset
    assert s.read({ME: 4, A: 8}, 6.0) == frozenset()
    assert s.state(A, 6.0) is ReplicaState.ALIVE


def test_a_deleted_row_is_gone_at_once() -> None:
    s = _sightings()
    s.read({ME: 1, A: 1, B: 1}, 0.0)
    assert s.read({ME: 2, B: 2}, 0.5) == {A}
    assert s.state(A, 0.5) is ReplicaState.GONE
    assert s.state(B, 0.5) is ReplicaState.ALIVE


def test_a_resumed_replica_is_alive_again_and_can_be_gone_again() -> None:
    s = _sightings(dead_after=1.0)
    for i in range(5):
        s.read({ME: i, A: 3}, i * 0.5)
    assert s.state(A, 2.0) is ReplicaState.GONE
    assert s.read({ME: 9, A: 4}, 2.5) == frozenset()
    assert s.state(A, 2.5) is ReplicaState.ALIVE
    told = [s.read({ME: 10 + i, A: 4}, 3.0 + i * 0.5) for i in range(4)]
    assert frozenset({A}) in told


def test_never_seen_is_unknown_not_gone() -> None:
    s = _sightings()
    assert s.state(A, 0.0) is ReplicaState.UNKNOWN
    s.read({ME: 1}, 0.0)
    assert s.state(A, 100.0) is ReplicaState.UNKNOWN


def test_long_silent_rows_are_named_stale_and_vanished_ones_forgotten() -> None:
    s = _sightings(forget_after=10.0)
    s.read({ME: 1, A: 1, B: 1}, 0.0)
    for i in range(1, 25):
        s.read({ME: 1 + i, A: 1, B: 1 + i}, i * 0.5)
    assert s.stale(12.0) == {A}  # silent since 0.0; never ourselves, never a live one
    s.read({ME: 30, B: 30}, 12.5)  # its row deleted
    assert s.stale(12.5) == frozenset()
    assert s.state(A, 12.5) is ReplicaState.GONE  # a late watcher still hears "gone"
    s.read({ME: 31, B: 31}, 23.0)
    assert s.state(A, 23.0) is ReplicaState.UNKNOWN  # forgotten forget_after after


@pytest.mark.parametrize(
    "kw", [{"dead_after": 0.0}, {"min_reads": 0}, {"dead_after": 5.0, "forget_after": 1.0}]
)
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="dead_after"):
        ReplicaSightings(me=ME, **{"dead_after": 2.0, **kw})  # type: ignore[arg-type]


def test_after_a_blind_spell_still_counters_are_judged_from_then_on() -> None:
    """This replica could not read for 10 s (the database away): nobody raised meanwhile;
    a counter that moves again soon after is not condemned for the spell."""
    s = _sightings()
    s.read({ME: 1, A: 1}, 0.0)
    s.read({ME: 2, A: 2}, 0.5)
    s.read({ME: 3, A: 2}, 1.0)
    s.read({ME: 4, A: 2}, 1.5)
    s.read({ME: 5, A: 2}, 2.0)  # still for 1.5 s over 3 reads: not yet gone
    s.rebase(11.5)
    assert s.read({ME: 6, A: 2}, 11.5) == frozenset()  # A's first raise not yet landed
    assert s.state(A, 11.5) is ReplicaState.ALIVE
    assert s.read({ME: 7, A: 3}, 12.0) == frozenset()
    # and one that stays still is gone dead_after after the spell, not before
    told = [s.read({ME: 8 + i, A: 3}, 12.5 + 0.5 * i) for i in range(5)]
    assert told[:2] == [frozenset(), frozenset()]
    assert frozenset({A}) in told[2:]
