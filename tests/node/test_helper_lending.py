"""A stream about to end lends its slot to its requester's next stream (pipelining, issue
#14: ``node.helper_service``): the next range's request overlaps the last bytes instead of
being refused as busy; nobody else borrows it, and each stream lends once."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmget.net.origin import OriginClient
from swarmget.node.helper_service import LEND_LEAST, HelperLimits, HelperService, StreamBudget
from swarmget.node.quota import DailyQuota
from swarmget.node.range_stream import Refusal

KiB = 1024
MiB = 1024 * KiB


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def service(slots: int = 1) -> tuple[HelperService, Clock]:
    clock = Clock()
    origin = OriginClient.__new__(OriginClient)  # never asked: admission only
    return HelperService(origin, HelperLimits(slots=slots), clock=clock), clock


def refused(svc: HelperService, requester: str) -> bool:
    try:
        svc.admit(requester, MiB)
    except Refusal as exc:
        return exc.code == "busy"
    return False


def test_a_stream_about_to_end_lends_its_slot_to_one_at_a_time() -> None:
    svc, clock = service()
    first = svc.admit("a", MiB)
    clock.now = 1.0
    svc.charge(first, 900 * KiB)  # 900 KiB/s: 124 KiB left, well under a second of it
    second = svc.admit("a", MiB)  # over the one slot: lent by the first
    assert svc.stats.lent == 1
    assert svc.stats.active_by_requester == {"a": 2}
    assert refused(svc, "a")  # the first lends to the second; the second has just begun
    svc.release("a", first)
    assert refused(svc, "a")  # back to one slot, taken by the second
    svc.release("a", second)
    assert svc.stats.active_by_requester == {}


def test_a_successor_that_ends_first_gives_the_slot_back_to_lend_again() -> None:
    """The successor was short and ended before the stream that lent it the slot: that
    one may lend it again (the requester's scheduler counts so too: ``core.scheduler``)."""
    svc, clock = service()
    first = svc.admit("a", MiB)
    clock.now = 1.0
    svc.charge(first, 900 * KiB)
    short = svc.admit("a", 64 * KiB)
    svc.charge(short, 64 * KiB)
    svc.release("a", short)
    third = svc.admit("a", MiB)  # lent by the first again
    assert third.lender is first
    assert svc.stats.lent == 2
    assert refused(svc, "a")


def test_a_stream_with_much_left_lends_nothing() -> None:
    svc, clock = service()
    first = svc.admit("a", 100 * MiB)
    clock.now = 1.0
    svc.charge(first, MiB)  # 99 s to go at its pace
    assert refused(svc, "a")
    assert svc.stats.lent == 0


def test_a_stream_that_sent_nothing_lends_nothing() -> None:
    """Even a short one: nothing sent yet, its pace is not known (it may hang)."""
    svc, clock = service()
    svc.admit("a", LEND_LEAST // 2)
    clock.now = 1.0
    assert refused(svc, "a")


def test_the_last_bytes_lend_whatever_the_pace() -> None:
    """At most ``LEND_LEAST`` left: lent even at a crawl."""
    svc, clock = service()
    first = svc.admit("a", 10 * MiB)
    clock.now = 100.0
    svc.charge(first, 10 * MiB - LEND_LEAST)  # ~100 KiB/s: LEND_LEAST is 2.5 s of it
    assert not refused(svc, "a")


def test_another_requester_does_not_borrow_the_slot() -> None:
    svc, clock = service()
    first = svc.admit("a", MiB)
    clock.now = 1.0
    svc.charge(first, 900 * KiB)
    assert refused(svc, "b")
    assert svc.stats.lent == 0
    assert not refused(svc, "a")


def test_lending_counts_against_fairness_too() -> None:
    """Two requesters on four slots hold two each; one of b's ending streams lends b a
    third for a moment, a's streams do not lend to b."""
    svc, clock = service(slots=4)
    a = [svc.admit("a", MiB) for _ in range(2)]
    b = [svc.admit("b", MiB) for _ in range(2)]
    assert refused(svc, "b")
    clock.now = 1.0
    for budget in a:
        svc.charge(budget, 900 * KiB)
    assert refused(svc, "b")
    svc.charge(b[0], 900 * KiB)
    assert not refused(svc, "b")
    assert refused(svc, "b")
    assert svc.stats.active_by_requester == {"a": 2, "b": 3}


@pytest.mark.parametrize("length", [MiB, 3 * MiB])
def test_a_holder_stream_counts_what_it_sent(length: int) -> None:
    """A LAN holder's stream charges no quota; ``progress`` counts what it sent, so it
    lends as a helper's does."""
    svc, clock = service()
    first = svc.admit("a", length, origin=False)
    assert isinstance(first, StreamBudget)
    clock.now = 1.0
    svc.progress(first, length - 200 * KiB)
    assert not refused(svc, "a")


def test_a_successor_refused_for_quota_leaves_the_slot_to_lend(tmp_path: Path) -> None:
    """The daily quota cannot cover the next stream: it is refused as over quota (not
    busy), and the ending stream's slot is still there to lend once the quota allows."""
    clock = Clock()
    quota = DailyQuota(tmp_path / "quota.json", 2 * MiB, clock=lambda: 0.0)
    origin = OriginClient.__new__(OriginClient)
    svc = HelperService(origin, HelperLimits(slots=1), quota=quota, clock=clock)
    first = svc.admit("a", MiB + 512 * KiB)
    clock.now = 1.0
    svc.charge(first, MiB + 400 * KiB)  # 112 KiB left of its 1.5 MiB
    with pytest.raises(Refusal) as refused_:
        svc.admit("a", MiB)  # 0.5 MiB of the day's 2 MiB left: not enough for 1 MiB
    assert refused_.value.code == "quota"
    assert first.lent is False
    assert svc.stats.lent == 0
    small = svc.admit("a", 256 * KiB)
    assert small.lender is first
