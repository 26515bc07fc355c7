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
