"""Source health and rate estimates (core.sources, core.rates): events change them, queries
never do."""

from __future__ import annotations

import copy

import pytest

from swarmget.core.ranges import ByteRange
from swarmget.core.rates import RATE_WINDOW, RateWindow
from swarmget.core.scheduler import FailureKind, SchedulerConfig, SourceState
from swarmget.core.scheduling import Action
from swarmget.core.sources import Source, SourceBook
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB


# --- rate windows --------------------------------------------------------------------------------


def test_a_window_counts_the_last_seconds_from_its_start() -> None:
    w = RateWindow()
    assert w.rate(1.0, since=0.0) is None  # not measured yet
    assert w.rate(RATE_WINDOW, since=0.0) == 0.0  # a whole window of nothing
    w.add(1.0, 1000)
    w.add(2.0, 1000)
    assert w.rate(2.0, since=0.0) == 1000.0  # 2000 bytes over 2 s
    assert w.rate(6.5, since=0.0) == 1000 / RATE_WINDOW  # the sample at 1.0 fell out
    assert w.rate(2.0, since=1.99) == 2000 / 0.05  # the shortest span


def test_asking_a_window_changes_nothing() -> None:
    asked, fresh = RateWindow(), RateWindow()
    for w in (asked, fresh):
        w.add(1.0, 500)
        w.add(3.0, 700)
    answers = [asked.rate(t, since=0.5) for t in (3.0, 6.5, 9.0, 20.0)]
    assert answers == [fresh.rate(t, since=0.5) for t in (3.0, 6.5, 9.0, 20.0)]
    assert asked  # nothing was pruned by asking
    asked.prune(20.0)  # an event does
    assert not asked
    assert asked.rate(20.0, since=0.5) == fresh.rate(20.0, since=0.5) == 0.0


# --- a source's rate -----------------------------------------------------------------------------


def _worked(now: float = 2.0) -> Source:
    """A source that streamed 2 MiB over [0, 2] on one lease that has ended."""
    src = Source("a", slots=2, added=0.0)
    src.record_data(1.0, 1 * MiB, lease_started=0.0)
    src.record_data(2.0, 1 * MiB, lease_started=0.0)
    src.advance(now)
    return src


def test_a_source_rate_is_not_changed_by_asking() -> None:
    asked, fresh = _worked(), _worked()
    for t in (2.5, 4.0, 6.9, 7.5, 30.0):
        asked.rate(t)
        asked.slot_rate(t)
        asked.info(t)
    assert asked == fresh
    for t in (7.5, 30.0):
        assert asked.rate(t) == fresh.rate(t)


def test_an_idle_source_is_remembered_as_fast_once_its_samples_age_out() -> None:
    src = _worked()
    assert src.rate(2.0) == 1 * MiB
    assert src.rate(8.0) == 0.0  # not brought up to date: the old samples count for nothing
    src.advance(8.0)  # the event (a poll) that moves it on
    assert src.rate(8.0) == 1 * MiB  # idle: its last live rate
    assert src.slot_rate(8.0) == 0.5 * MiB
    src.leases.add(7)  # working again, no data yet: live rate
    assert src.rate(8.0) == 0.0


def test_ranking_by_speed_puts_unmeasured_first_then_fastest_per_slot() -> None:
    book = SourceBook(SchedulerConfig())
    for name, slots in (("slow", 1), ("new", 1), ("fast", 4)):
        book.add(name, slots, 0.0)
    book["slow"].record_data(1.0, 1 * MiB, lease_started=0.0)
    book["fast"].record_data(1.0, 8 * MiB, lease_started=0.0)
    before = copy.deepcopy(list(book))
    assert [s.id for s in book.by_speed(1.0)] == ["new", "fast", "slow"]
    assert [s.last_rate for s in book] != [s.last_rate for s in before]  # advanced to now


# --- health --------------------------------------------------------------------------------------


CONFIG = SchedulerConfig(max_failures=3, max_broken=2, judge_window=4, backoff_initial=1.0)


def _book(*names: str) -> SourceBook:
    book = SourceBook(CONFIG)
    for name in names:
        book.add(name, 1, 0.0)
    return book


def test_a_cancelled_lease_is_no_blame() -> None:
    book = _book("a")
    assert book.judge(book["a"], 0.0, FailureKind.CANCELLED, "bye", None) is None
    assert (book["a"].failures, book["a"].not_before) == (0, 0.0)


def test_rate_limited_waits_retry_after_and_is_not_a_failure_in_a_row() -> None:
    book = _book("a")
    assert book.judge(book["a"], 10.0, FailureKind.RATE_LIMITED, "429", 7.0) is None
    src = book["a"]
    assert (src.failures, src.consecutive_failures, src.not_before) == (1, 0, 17.0)
    assert src.state(16.0) is SourceState.BACKOFF
    assert src.state(17.0) is SourceState.IDLE
    assert book.backoff_ends(16.0) == [17.0]


def test_failures_in_a_row_back_off_then_ban_and_a_claimed_byte_resets_them() -> None:
    book = _book("a", "b")
    src = book["a"]
    assert book.judge(src, 0.0, FailureKind.RETRYABLE, "reset", None) is None
    assert src.not_before == 1.0
    assert book.judge(src, 1.0, FailureKind.STALLED, "stalled", None) is None
    assert src.not_before == 3.0
    src.credit(ByteRange(0, 10))
    assert src.consecutive_failures == 0
    for _ in range(2):
        assert book.judge(src, 3.0, FailureKind.RETRYABLE, "reset", None) is None
    assert book.judge(src, 3.0, FailureKind.RETRYABLE, "reset", None) == (
        "3 failures in a row, last: reset"
    )


def test_bad_answers_replace_the_good_start_of_their_lease() -> None:
    book = _book("a", "b")
    src = book["a"]
    book.answer(src, 5, good=True)
    book.answer(src, 6, good=True)
    assert book.judge(src, 0.0, FailureKind.BROKEN, "lie", None, lease_id=5) is None
    assert list(src.answers) == [(5, False), (6, True)]
    ban = book.judge(src, 0.0, FailureKind.BROKEN, "lie", None, lease_id=6)
    assert ban == "2 of its last 2 answers bad, last: lie"


def test_the_last_source_alive_is_not_banned_for_lies_while_it_delivers() -> None:
    book = _book("a", "b")
    book["b"].gone = True
    src = book["a"]
    for lease in (1, 2, 3):
        book.answer(src, lease, good=True)
    assert book.judge(src, 0.0, FailureKind.BROKEN, "lie", None, lease_id=1) is None
    assert book.judge(src, 0.0, FailureKind.BROKEN, "lie", None, lease_id=2) is None
    book["b"].gone = False  # someone else could finish: now it is banned
    assert book.judge(src, 0.0, FailureKind.BROKEN, "lie", None, lease_id=3) is not None


@pytest.mark.parametrize("slots", [0, -1])
def test_a_source_needs_a_slot(slots: int) -> None:
    with pytest.raises(ValueError, match="slot"):
        _book().add("a", slots, 0.0)


def test_a_banned_source_stays_banned_when_added_again() -> None:
    book = _book("a")
    book["a"].banned = "lies"
    book.add("a", 3, 1.0)
    assert (book["a"].banned, book["a"].slots) == ("lies", 1)
    book["a"].banned, book["a"].gone = None, True
    book.add("a", 3, 1.0)
    assert (book["a"].gone, book["a"].slots) == (False, 3)


# --- the scheduler: a snapshot between events changes no decision --------------------------------


class _LoggedSwarm(SimSwarm):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.log: list[object] = []

    def _apply(self, actions: list[Action]) -> None:
        self.log.extend(actions)
        super()._apply(actions)


def _run(observe: bool) -> list[object]:
    """Fast and slow sources, one of them frozen for a while; every action in order."""
    sim = _LoggedSwarm(24 * MiB, SchedulerConfig(min_piece=256 * KiB, max_piece=2 * MiB))
    sim.add("fast", rate=8 * MiB, slots=2)
    sim.add("slow", rate=1 * MiB, slots=2)
    sim.add("flaky", rate=4 * MiB, slots=1)
    for step in range(2000):
        if sim.scheduler.is_complete():
            break
        sim.sources["flaky"].frozen = 20 <= step < 200
        sim.step(0.05)
        if observe:
            sim.scheduler.statistics(sim.now + 0.025)  # a snapshot between two events
    return [*sim.log, sim.scheduler.statistics(sim.now)]


def test_statistics_between_events_change_no_decision() -> None:
    assert _run(observe=True) == _run(observe=False)
