"""The download lifecycle: the transition table, move by move."""

from __future__ import annotations

import itertools

import pytest

from swarmget.core.lifecycle import (
    ACTIVE,
    ENDED,
    FETCH_TRANSITIONS,
    TRANSITIONS,
    DownloadState,
    FetchPhase,
    IllegalTransition,
    parse_phase,
    parse_state,
    still_going,
    transition,
)

S = DownloadState
ALLOWED = {
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.FAILED),
    (S.STARTING, S.CANCELLED),
    (S.STARTING, S.STOPPED),
    (S.RUNNING, S.DONE),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.STOPPED),
    (S.STARTING, S.PAUSED),
    (S.RUNNING, S.PAUSED),
    (S.PAUSED, S.STARTING),  # resume: the same download goes on
    (S.PAUSED, S.CANCELLED),
    (S.FAILED, S.STARTING),  # retried in place, under its own id
    (S.CANCELLED, S.STARTING),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_pair_is_allowed_exactly_when_listed(current: S, target: S) -> None:
    if (current, target) in ALLOWED:
        assert transition(current, target) is target
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(current, target)
        assert (info.value.current, info.value.target) == (current, target)


def test_the_table_covers_every_state_and_ended_ones_only_start_again() -> None:
    assert set(TRANSITIONS) == set(S)
    for state in ENDED:
        assert TRANSITIONS[state] <= {S.STARTING, S.CANCELLED}
        assert not state.active
    assert TRANSITIONS[S.DONE] == TRANSITIONS[S.STOPPED] == frozenset()
    assert ACTIVE == {S.STARTING, S.RUNNING}
    assert {s for s in S if s.retryable} == {S.FAILED, S.CANCELLED}
    assert {s for s in S if s.pausable} == {S.STARTING, S.RUNNING}
    assert {s for s in S if not s.finished} == {S.STARTING, S.RUNNING, S.PAUSED}


def test_done_only_after_running() -> None:
    assert [s for s in S if S.DONE in TRANSITIONS[s]] == [S.RUNNING]


def test_values_are_the_api_strings() -> None:
    assert [s.value for s in S] == [
        "starting", "running", "done", "failed", "cancelled", "stopped", "paused"
    ]  # fmt: skip
    assert parse_state("stopped") is S.STOPPED
    assert parse_state("paused") is S.PAUSED
    assert not still_going({"state": "paused"})  # a poller stops: it waits for the user
    assert parse_state("sleeping") is None
    assert parse_state(None) is None


def test_still_going_reads_the_json_state() -> None:
    assert still_going({"state": "running"})
    assert still_going({"state": "starting"})
    assert not still_going({"state": "done"})
    assert not still_going({"state": "something new"})
    assert not still_going({})


def test_a_fetch_ends_ready_or_failed_and_stays_there() -> None:
    assert FETCH_TRANSITIONS[FetchPhase.FETCHING] == {FetchPhase.READY, FetchPhase.FAILED}
    assert FETCH_TRANSITIONS[FetchPhase.READY] == frozenset()
    assert FETCH_TRANSITIONS[FetchPhase.FAILED] == frozenset()
    assert [p.value for p in FetchPhase] == ["fetching", "ready", "failed"]
    assert parse_phase("ready") is FetchPhase.READY
    assert parse_phase("done") is None
