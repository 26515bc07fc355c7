"""A helper that streamed steadily and then hung (issue #17): noticed within a few of its own
beats between reports of data, not after ``config.silence``; no new work for it; its piece
is copied whole, and it stays suspect once the copy wins."""

from __future__ import annotations

import dataclasses

from swarmget.core.ranges import ByteRange
from swarmget.core.scheduler import Action, Assign, Cancel, CancelCause, Scheduler, SchedulerConfig

KiB = 1024
MiB = 1024 * KiB

#: silence 2 s, but a stream that reports every 0.05 s is silent after 10 beats (0.5 s);
#: copies only for pieces more than 1 s from done (a silent stream's: never done); no hedge
#: (it would copy b's piece before b hangs: these tests are about noticing the hang)
CONFIG = SchedulerConfig(
    min_piece=1 * MiB,
    max_piece=1 * MiB,
    pieces_per_slot=1,
    stall_timeout=15.0,
    silence=2.0,
    silence_gaps=10.0,
    silence_floor=0.25,
    steal=False,
    rescue_backlog=0,
    endgame_min_eta=1.0,
    hedge=0.0,
)
BEAT = 0.05


def _assigns(actions: list[Action]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def _b_hangs(config: SchedulerConfig, size: int, b_slots: int) -> tuple[Scheduler, float]:
    """a (1 slot) and b start; every stream reports 64 KiB every 0.05 s up to t=0.5, then b
    hangs; a reports the rest of its piece at t=0.5 (it is free again if nothing is
    missing)."""
    sched = Scheduler(size, config)
    sched.add_source("a", 1, 0.0)
    sched.add_source("b", b_slots, 0.0)
    first = _assigns(sched.poll(0.0))
    t = 0.0
    for _ in range(10):
        t = round(t + BEAT, 2)
        for x in first:
            sched.on_data(x.lease_id, 64 * KiB, t)
    (a,) = [x for x in first if x.source_id == "a"]
    assert sched.on_data(a.lease_id, a.range.length - 640 * KiB, t).finished
    return sched, t


def _copies(sched: Scheduler, now: float) -> list[Assign]:
    return [x for x in _assigns(sched.poll(now)) if x.duplicate]


def test_a_hung_stream_is_noticed_within_its_own_beats_and_its_piece_copied() -> None:
    sched, t = _b_hangs(CONFIG, 2 * MiB, 1)
    assert _copies(sched, t + 0.3) == []  # 0.3 s: 6 of its beats, it may be a hiccup
    (copy,) = _copies(sched, t + 0.6)  # 12 beats: hung (config.silence is 2 s)
    assert copy.source_id == "a"
    assert copy.range == ByteRange(MiB + 640 * KiB, 2 * MiB)  # all b had left


def test_without_beats_a_hung_stream_waits_for_config_silence() -> None:
    slow = dataclasses.replace(CONFIG, silence_gaps=1000.0)
    sched, t = _b_hangs(slow, 2 * MiB, 1)
    assert _copies(sched, t + 0.6) == []
    assert len(_copies(sched, t + 2.0)) == 1


def test_a_source_that_shows_no_progress_gets_no_new_work() -> None:
    sched, t = _b_hangs(CONFIG, 8 * MiB, 2)  # bytes are still missing
    b_leases = [x.lease_id for x in sched.statistics(t).leases if x.source_id == "b"]
    assert len(b_leases) == 2
    sched.on_failure(b_leases[1], t, reason="reset")  # backs b off 0.5 s; the other hangs
    for later in (t + 0.6, t + 0.8, t + 1.2):
        got = _assigns(sched.poll(later))
        assert [x.source_id for x in got if x.source_id == "b"] == [], later


def test_a_silent_loser_of_a_race_is_suspect_until_it_delivers() -> None:
    sched, t = _b_hangs(CONFIG, 2 * MiB, 1)
    (copy,) = _copies(sched, t + 0.6)
    claim = sched.on_data(copy.lease_id, copy.range.length, t + 0.7)
    lost = [x for x in claim.actions if isinstance(x, Cancel)]
    assert [(x.source_id, x.cause) for x in lost] == [("b", CancelCause.LOST_RACE)]
    assert sched.statistics(t + 0.7).complete
