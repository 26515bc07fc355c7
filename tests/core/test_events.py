"""Typed events: one per kind, carried over JSON by their fields, counted as they happen."""

from __future__ import annotations

import json

import pytest

from swarmget.core import events as ev
from swarmget.core.events import BadDataCheck, CancelCause, RefetchCause
from swarmget.core.ranges import ByteRange

R = ByteRange(100, 200)
ONE_OF_EACH: list[ev.Event] = [
    ev.Assigned(at=0.1, source_id="a", range=R),
    ev.EndgameCopy(at=0.2, source_id="b", range=R),
    ev.Revoked(at=0.3, source_id="a", cause=CancelCause.STALLED, reason="stalled: no data"),
    ev.StreamFailed(at=0.4, source_id="a", range=R, code="source_retryable", message="reset"),
    ev.Banned(at=0.5, source_id="a", reason="3 failures in a row"),
    ev.BadData(at=0.6, source_ids=("a", "b"), range=R, check=BadDataCheck.PIECE_HASH, piece=3),
    ev.BadData(at=0.6, source_ids=("c",), range=R, check=BadDataCheck.SAMPLE),
    ev.Restarted(at=0.7, reason="the file changed since the partial download"),
    ev.FellBack(at=0.8),
    ev.Resumed(at=0.9, bytes_on_disk=4096),
    ev.RelayUsed(at=1.0, hit=True),
    ev.Verified(at=1.1, path="/d/f.iso", algorithms=("sha256",)),
    ev.Failed(at=1.2, code="origin_unusable", message="the origin answered 404"),
    ev.Refetched(
        at=0.65, ranges=(R, ByteRange(300, 350)), source_ids=("a",), cause=RefetchCause.LOST_LEASE
    ),
]


def test_every_kind_has_a_json_name_and_an_example_here() -> None:
    assert {type(e) for e in ONE_OF_EACH} == set(ev.KINDS)


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: type(e).__name__)
def test_json_round_trip(event: ev.Event) -> None:
    sent = json.loads(json.dumps(ev.to_json(event)))
    assert ev.from_json(sent) == event
    assert sent["kind"] == ev.kind(event)
    assert sent["detail"] == ev.describe(event)
    assert sent["source"] == ev.source(event)


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (ONE_OF_EACH[0], "[100, 200)"),
        (ONE_OF_EACH[3], "[100, 200): reset"),
        (ONE_OF_EACH[5], "piece 3 [100, 200) failed its sha256"),
        (ONE_OF_EACH[6], "sample [100, 200) differs from the origin's bytes"),
        (ONE_OF_EACH[8], "the origin does not serve ranges: one stream"),
        (ONE_OF_EACH[9], "4096 bytes already on disk"),
        (ONE_OF_EACH[10], "cached by the relay"),
        (ONE_OF_EACH[11], "/d/f.iso verified (sha256)"),
        (ONE_OF_EACH[13], "150 bytes to fetch again (lease lost): [100, 200), [300, 350)"),
    ],
)
def test_describe_writes_the_lines_the_timeline_always_showed(event: ev.Event, text: str) -> None:
    assert ev.describe(event) == text


def test_sources_as_shown() -> None:
    assert ev.source(ONE_OF_EACH[5]) == "a, b"
    assert ev.source(ONE_OF_EACH[8]) == "origin"
    assert ev.source(ONE_OF_EACH[11]) is None
    assert ev.source(ONE_OF_EACH[13]) == "a"


@pytest.mark.parametrize(
    "data",
    [
        {"at": 1.0, "kind": "assign", "source": "a"},  # no range
        {"at": 1.0, "kind": "assign", "source": "a", "range": ["0", 5]},
        {"at": 1.0, "kind": "assign", "source": "a", "range": [9, 5]},  # backwards
        {"at": 1.0, "kind": "assign", "source": 7, "range": [0, 5]},
        {"at": 1.0, "kind": "cancel", "source": "a", "cause": "bored", "detail": "x"},
        {"at": 1.0, "kind": "teleport"},
        {"kind": "fallback"},  # no time
    ],
)
def test_unreadable_json_is_none(data: dict[str, object]) -> None:
    assert ev.from_json(data) is None


def test_counters_count_when_events_happen_and_never_go_down() -> None:
    counters = ev.EventCounters()
    for event in ONE_OF_EACH:
        counters.count(event)
    lost = ev.Revoked(at=2.0, source_id="b", cause=CancelCause.LOST_RACE, reason="x")
    counters.count(lost)  # an endgame copy losing its race is not a stall
    assert (counters.stalls, counters.bans, counters.stream_failures) == (1, 1, 1)
    assert (counters.bad_data, counters.restarts) == (2, 1)
    assert (counters.refetches, counters.refetched_bytes) == (1, 150)
    counters.count(ONE_OF_EACH[2])
    assert counters.stalls == 2


@pytest.mark.parametrize("cause", list(RefetchCause))
def test_every_refetch_cause_is_described_and_read_back(cause: RefetchCause) -> None:
    event = ev.Refetched(at=1.0, ranges=(ByteRange(0, 10),), source_ids=(), cause=cause)
    assert ev.describe(event).startswith("10 bytes to fetch again (")
    assert ev.from_json(ev.to_json(event)) == event
