"""The hedge (issue #17): at the very end, a piece with one copy gets a second from an idle
source that showed progress, so a holder that hangs then costs no wait for its silence."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmget.core.scheduler import Action, Assign, Cancel, CancelCause, Scheduler, SchedulerConfig

KiB = 1024
MiB = 1024 * KiB
BEAT = 0.05

#: one piece per source, no steals or rescues: what is left at the end is the pieces in
#: flight; outside the hedge, the endgame's copies need a lead 10 s from done (never, here)
CONFIG = SchedulerConfig(
    min_piece=1 * MiB,
    max_piece=1 * MiB,
    pieces_per_slot=1,
    steal=False,
    rescue_backlog=0,
    endgame_min_eta=10.0,
    hedge=0.5,
)


def _assigns(actions: list[Action]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def _start(
    config: SchedulerConfig, size: int, quick: tuple[str, ...] = ("a",)
) -> tuple[Scheduler, dict[str, Assign], float]:
    """b and the ``quick`` sources (one slot each) stream 64 KiB per beat for 10 beats
    (1.25 MiB/s each); then the quick ones finish their pieces at once. b has 384 KiB of
    its 1 MiB piece left."""
    sched = Scheduler(size, config)
    for name in (*quick, "b"):
        sched.add_source(name, 1, 0.0)
    first = {x.source_id: x for x in _assigns(sched.poll(0.0))}
    assert set(first) == {*quick, "b"}
    t = 0.0
    for _ in range(10):
        t = round(t + BEAT, 2)
        for x in first.values():
            sched.on_data(x.lease_id, 64 * KiB, t)
    for name in quick:
        x = first[name]
        assert sched.on_data(x.lease_id, x.range.length - 640 * KiB, t).finished
    return sched, first, t


def _copies(sched: Scheduler, now: float) -> list[Assign]:
    return [x for x in _assigns(sched.poll(now)) if x.duplicate]


def test_the_last_piece_gets_a_second_copy_from_an_idle_source() -> None:
    sched, first, t = _start(CONFIG, 2 * MiB)
    b = first["b"]
    # b is live and as fast as a: no endgame copy (a is not faster), but the 384 KiB left
    # are less than what the swarm sends in 0.5 s, and a would be done within that: a hedges
    (copy,) = _copies(sched, t)
    assert copy.source_id == "a"
    assert copy.range == b.range.__class__(b.range.start + 640 * KiB, b.range.end)
    assert sched.in_endgame()


def test_a_holder_that_hangs_costs_no_wait_for_its_silence() -> None:
    sched, first, t = _start(CONFIG, 2 * MiB)
    (copy,) = _copies(sched, t)
    # b hangs now; the copy streams on and finishes the piece well before b is silent
    claim = sched.on_data(copy.lease_id, 384 * KiB, round(t + BEAT, 2))
    assert claim.finished
    lost = [x for x in claim.actions if isinstance(x, Cancel)]
    assert [(x.source_id, x.cause) for x in lost] == [("b", CancelCause.LOST_RACE)]
    assert sched.statistics(t + BEAT).complete


def test_no_hedge_while_bytes_are_missing() -> None:
    sched, _, t = _start(CONFIG, 8 * MiB)  # a gets new missing bytes, no copy
    got = _assigns(sched.poll(t))
    assert [(x.source_id, x.duplicate) for x in got] == [("a", False)]


def test_no_hedge_while_much_is_leased_for_the_swarm_s_rate() -> None:
    # what is left (384 KiB) is more than the swarm (2.5 MiB/s) sends in 0.1 s
    sched, _, t = _start(dataclasses.replace(CONFIG, hedge=0.1), 2 * MiB)
    assert _copies(sched, t) == []
    assert _copies(sched, round(t + 2 * BEAT, 2)) == []


def test_during_the_hedge_a_faster_copy_needs_no_endgame_min_eta() -> None:
    """a (2 MiB/s: its last report was a burst) would need 0.19 s for b's 384 KiB: more
    than a hedge of 0.15 s, so no hedge copy; but it is faster than b and would finish
    first, and during the hedge that is enough (outside it, b would have to need 10 s)."""
    sched, _, t = _start(dataclasses.replace(CONFIG, hedge=0.15), 2 * MiB)
    assert [x.source_id for x in _copies(sched, t)] == ["a"]


def test_hedge_zero_is_the_plain_endgame() -> None:
    sched, _, t = _start(dataclasses.replace(CONFIG, hedge=0.0), 2 * MiB)
    assert _copies(sched, t) == []


def test_a_source_never_measured_gets_no_copy_during_the_hedge() -> None:
    sched, _, t = _start(CONFIG, 2 * MiB)
    sched.add_source("c", 1, t)  # a newcomer (ranked first, to be measured): no data yet
    assert [x.source_id for x in _copies(sched, t)] == ["a"]


def test_a_piece_gets_one_hedge_copy_only() -> None:
    sched, _, t = _start(CONFIG, 3 * MiB, quick=("a", "c"))  # two idle, one piece left
    (copy,) = _copies(sched, t)  # the other may copy only once it beats the lead
    assert copy.source_id in {"a", "c"}


@settings(max_examples=30, deadline=None)
@given(
    rates=st.lists(st.integers(1, 8), min_size=2, max_size=6),
    hang=st.integers(0, 5),
    hedge=st.sampled_from([0.0, 0.25, 1.0]),
)
def test_the_hedge_keeps_the_ledger_sound(rates: list[int], hang: int, hedge: float) -> None:
    """Sources at various rates (one may hang midway) fetch a file to the end, with and
    without the hedge: every byte is claimed once and the invariants hold at every step."""
    config = dataclasses.replace(
        CONFIG, min_piece=64 * KiB, max_piece=256 * KiB, endgame_min_eta=0.25, hedge=hedge
    )
    sched = Scheduler(2 * MiB, config)
    names = [f"s{i}" for i in range(len(rates))]
    for name in names:
        sched.add_source(name, 1, 0.0)
    held: dict[int, tuple[str, int]] = {}  # lease -> (source, bytes left)
    hung = names[hang % len(names)]
    claimed = 0
    t = 0.0
    for step in range(2000):
        for a in _assigns(sched.poll(t)):
            held[a.lease_id] = (a.source_id, a.range.length)
        if sched.is_complete():
            break
        t = round(t + BEAT, 2)
        for lease_id, (sid, left) in list(held.items()):
            if lease_id not in held or (sid == hung and step > 5):
                continue
            n = min(left, rates[names.index(sid)] * 16 * KiB)
            claim = sched.on_data(lease_id, n, t)
            claimed += claim.write.length if claim.write is not None else 0
            held[lease_id] = (sid, left - n)
            for x in claim.actions:
                if isinstance(x, Cancel):
                    held.pop(x.lease_id, None)
            if claim.finished:
                held.pop(lease_id, None)
        for x in sched.on_timer(t):
            if isinstance(x, Cancel):
                held.pop(x.lease_id, None)
        sched.check_invariants()
    assert sched.is_complete()
    assert claimed == 2 * MiB


def _one_slow_piece_left() -> tuple[Scheduler, float]:
    """a and c stream 128 KiB per beat, b 32 KiB, for 5 beats; a and c finish their pieces:
    b's piece (864 KiB left, 0.625 MiB/s) is the last, the hedge is on."""
    sched = Scheduler(3 * MiB, CONFIG)
    for name in ("a", "b", "c"):
        sched.add_source(name, 1, 0.0)
    first = {x.source_id: x for x in _assigns(sched.poll(0.0))}
    t = 0.0
    for _ in range(5):
        t = round(t + BEAT, 2)
        for name, x in first.items():
            sched.on_data(x.lease_id, (32 if name == "b" else 128) * KiB, t)
    for name in ("a", "c"):
        x = first[name]
        assert sched.on_data(x.lease_id, x.range.length - 640 * KiB, t).finished
    return sched, t


def test_a_late_copy_does_not_hold_back_another_during_the_hedge() -> None:
    """The hedge copy went to a source that then hung before its first byte. A copy not
    measured yet holds back others (it may be fast); once it is twice its source's usual
    wait for a first byte (a beat here) late, the other idle source copies the piece, long
    before the copy would count as silent (``silence_floor``, 0.25 s)."""
    sched, t = _one_slow_piece_left()
    (hedge,) = _copies(sched, t)
    other = "c" if hedge.source_id == "a" else "a"
    assert _copies(sched, round(t + BEAT, 2)) == []  # not late yet: it may be fast
    (copy,) = _copies(sched, round(t + 2.2 * BEAT, 3))  # late: the lead is b again
    assert copy.source_id == other
    sched.check_invariants()


def test_a_copy_that_delivers_in_time_holds_the_others_back() -> None:
    sched, t = _one_slow_piece_left()
    (hedge,) = _copies(sched, t)
    # its first bytes in time, as fast as the other idle source: no reason for a third copy
    sched.on_data(hedge.lease_id, 256 * KiB, round(t + BEAT, 2))
    assert _copies(sched, round(t + 2.2 * BEAT, 3)) == []


def test_a_copy_is_never_late_before_the_floor() -> None:
    """A source whose first bytes came at once (its usual wait ~0) would make every copy
    on it late at once: a copy is late only after ``hedge_late_floor`` too."""
    sched = Scheduler(3 * MiB, CONFIG)
    for name in ("a", "b", "c"):
        sched.add_source(name, 1, 0.0)
    first = {x.source_id: x for x in _assigns(sched.poll(0.0))}
    t = 0.0
    for step in range(5):
        t = round(t + BEAT, 2)
        for name, x in first.items():
            # a and c deliver at once (first bytes at their start), b at 32 KiB per beat
            at = 0.0 if step == 0 and name != "b" else t
            sched.on_data(x.lease_id, (32 if name == "b" else 128) * KiB, at)
    for name in ("a", "c"):
        x = first[name]
        assert sched.on_data(x.lease_id, x.range.length - 640 * KiB, t).finished
    (hedge,) = _copies(sched, t)
    assert _copies(sched, round(t + 0.04, 3)) == []  # 2 x ~0 s: late by the waits alone
    assert len(_copies(sched, round(t + 0.06, 3))) == 1  # after the floor (0.05 s)
