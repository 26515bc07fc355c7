"""The piece scheduler as a conversation with time and faults chosen by the test."""

from __future__ import annotations

import dataclasses

import pytest

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import (
    Assign,
    Ban,
    Cancel,
    CancelCause,
    FailureKind,
    Scheduler,
    SchedulerConfig,
    SourceState,
)
from swarmget.core.sources import BUSY_HOLD
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB

SMALL = SchedulerConfig(
    min_piece=16 * KiB, max_piece=256 * KiB, min_steal=4 * KiB, stall_timeout=3.0
)


def assigns(actions: list[object]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def test_single_source_fills_its_slots_and_completes() -> None:
    sim = SimSwarm(8 * MiB, SMALL)
    sim.add("origin", rate=4 * MiB, slots=4)
    assert len(sim.streams) == 4
    assert sim.run()
    assert sim.written == RangeSet([ByteRange(0, 8 * MiB)])
    sim.scheduler.check_invariants()


def test_piece_size_adapts_and_is_bounded() -> None:
    cfg = SchedulerConfig()
    big = Scheduler(10 * 1024 * MiB, cfg)
    big.add_source("a", 4, 0.0)
    sizes = {a.range.length for a in assigns(big.poll(0.0))}
    assert sizes == {cfg.max_piece}
    small = Scheduler(3 * MiB, cfg)
    small.add_source("a", 4, 0.0)
    sizes = {a.range.length for a in assigns(small.poll(0.0))}
    assert max(sizes) <= 3 * MiB // 4 + cfg.min_piece
    assert min(sizes) >= cfg.min_piece


def test_zero_size_file_is_complete_at_once() -> None:
    s = Scheduler(0)
    s.add_source("a", 2, 0.0)
    assert s.is_complete()
    assert s.poll(0.0) == []


def test_failure_keeps_claimed_bytes_and_requeues_the_rest() -> None:
    s = Scheduler(1 * MiB, SMALL)
    s.add_source("a", 1, 0.0)
    (first,) = assigns(s.poll(0.0))
    claim = s.on_data(first.lease_id, 1000, 0.1)
    assert claim.write == ByteRange(first.range.start, first.range.start + 1000)
    s.on_failure(first.lease_id, 0.2, reason="reset")
    s.check_invariants()
    assert s.done() == RangeSet([ByteRange(0, 1000)])
    (again,) = assigns(s.poll(10.0))  # after the backoff
    assert again.range.start == 1000


def test_idle_source_steals_half_of_a_running_piece() -> None:
    s = Scheduler(1 * MiB, SchedulerConfig(min_piece=1 * MiB, min_steal=4 * KiB))
    s.add_source("slow", 1, 0.0)
    (held,) = assigns(s.poll(0.0))
    assert held.range == ByteRange(0, 1 * MiB)
    s.on_data(held.lease_id, 100 * KiB, 1.0)
    s.add_source("fast", 1, 1.0)
    (stolen,) = assigns(s.poll(1.0))
    assert stolen.source_id == "fast"
    assert stolen.range.end == 1 * MiB
    split = stolen.range.start
    assert 100 * KiB < split < 1 * MiB
    # the holder is told to stop exactly at the split, even though it asked for more
    claim = s.on_data(held.lease_id, split - 100 * KiB + 5000, 2.0)
    assert claim.write == ByteRange(100 * KiB, split)
    assert claim.finished
    s.check_invariants()


def test_endgame_duplicates_onto_a_faster_source_and_cancels_the_loser() -> None:
    cfg = SchedulerConfig(min_piece=64 * KiB, min_steal=64 * KiB, endgame_min_eta=0.5)
    s = Scheduler(100 * KiB, cfg)
    s.add_source("slow", 1, 0.0)
    (slow,) = assigns(s.poll(0.0))
    s.on_data(slow.lease_id, 10 * KiB, 1.0)  # 10 KiB/s: 9 s to go
    s.add_source("fast", 1, 1.0)
    (dup,) = assigns(s.poll(1.0))
    assert dup.duplicate
    assert dup.range == ByteRange(10 * KiB, 100 * KiB)
    assert s.in_endgame()
    # both stream; the fast copy gets ahead and claims; the slow one writes nothing new
    assert s.on_data(dup.lease_id, 50 * KiB, 1.5).write == ByteRange(10 * KiB, 60 * KiB)
    assert s.on_data(slow.lease_id, 20 * KiB, 1.6).write is None
    last = s.on_data(dup.lease_id, 40 * KiB, 2.0)
    assert last.finished
    assert last.write == ByteRange(60 * KiB, 100 * KiB)
    lost = Cancel(slow.lease_id, "slow", "another copy finished first", CancelCause.LOST_RACE)
    assert last.actions == (lost,)
    assert s.is_complete()
    s.check_invariants()
    # late reports about the cancelled copy are harmless
    assert s.on_data(slow.lease_id, 10, 2.1).finished


def _idle_source_duplicates(seconds: int) -> bool:
    """'holder' streams an unsplittable piece at 9 KiB/s; 'other' delivered its 64 KiB piece
    in the last ``seconds`` seconds and is idle. Does it get an endgame duplicate?"""
    cfg = SchedulerConfig(min_piece=64 * KiB, max_piece=64 * KiB, min_steal=64 * KiB)
    s = Scheduler(128 * KiB, cfg)
    s.add_source("holder", 1, 0.0)
    s.add_source("other", 1, 0.0)
    leases = {a.source_id: a for a in assigns(s.poll(0.0))}
    for t in range(1, 11):
        if t > 10 - seconds:
            s.on_data(leases["other"].lease_id, 64 * KiB // seconds, float(t))
        if t > 5:
            s.on_data(leases["holder"].lease_id, 9 * KiB, float(t))
    got = assigns(s.poll(10.0))
    s.check_invariants()
    return any(a.duplicate and a.source_id == "other" for a in got)


def test_no_duplicate_onto_a_slower_source() -> None:
    assert not _idle_source_duplicates(seconds=10)  # 6.4 KiB/s
    assert _idle_source_duplicates(seconds=4)  # 12.8 KiB/s over the rate window


def _frontier_backlog(rescue_backlog: int) -> tuple[int, int, int]:
    """A slow source holds the first piece while a fast one does the rest: how many bytes
    were done beyond the contiguous prefix at worst, and when the last byte landed?"""
    sim = SimSwarm(128 * MiB, SchedulerConfig(rescue_backlog=rescue_backlog))
    sim.add("slow", rate=0.5 * MiB, slots=1)  # measured first: it gets [0, 8 MiB)
    sim.add("fast", rate=20 * MiB, slots=3)
    worst = at_end = 0
    while not sim.scheduler.is_complete():
        assert sim.now < 100
        first = sim.written.first()
        prefix = first.end if first is not None and first.start == 0 else 0
        at_end = sim.written.total() - prefix
        worst = max(worst, at_end)
        sim.step(0.01)
        sim.scheduler.check_invariants()
    stats = sim.scheduler.statistics(sim.now)
    return worst, at_end, stats.steals + stats.duplicates


def test_a_slow_stream_holding_up_the_done_prefix_is_rescued() -> None:
    worst, at_end, rescues = _frontier_backlog(rescue_backlog=32 * MiB)
    # from 32 MiB on, the fast source's next free slot takes the slow piece but its next
    # second: the backlog stops growing (one piece per busy slot later) and stays bounded
    assert worst < 72 * MiB
    assert at_end < 40 * MiB
    assert rescues >= 1
    # without the rescue the whole file waits behind the slow piece until the endgame
    worst_off, at_end_off, _ = _frontier_backlog(rescue_backlog=0)
    assert at_end_off > 100 * MiB


def _equal_sources_backlog(rescue_backlog: int) -> int:
    """Eight equal sources joining one by one: the first takes 16 MiB pieces at a third of
    its rate each, which hold up the prefix although nobody is faster per slot."""
    sim = SimSwarm(256 * MiB, SchedulerConfig(rescue_backlog=rescue_backlog))
    for i in range(8):
        sim.add(f"s{i}", rate=4 * MiB, slots=3)
    at_end = 0
    while not sim.scheduler.is_complete():
        assert sim.now < 100
        first = sim.written.first()
        at_end = sim.written.total() - (first.end if first and first.start == 0 else 0)
        sim.step(0.02)
    sim.scheduler.check_invariants()
    return at_end


def test_a_long_piece_holding_up_the_prefix_is_split_between_equals() -> None:
    assert _equal_sources_backlog(rescue_backlog=32 * MiB) < 32 * MiB
    assert _equal_sources_backlog(rescue_backlog=0) > 128 * MiB


@pytest.mark.parametrize("min_steal", [4 * KiB, 128 * KiB])
def test_rescue_needs_a_faster_measured_source_and_a_backlog(min_steal: int) -> None:
    cfg = SchedulerConfig(
        min_piece=64 * KiB, max_piece=64 * KiB, min_steal=min_steal, rescue_backlog=256 * KiB
    )
    s = Scheduler(4 * MiB, cfg)
    s.add_source("slow", 1, 0.0)
    s.add_source("fast", 2, 0.0)
    first, *rest = assigns(s.poll(0.0))
    assert first.source_id == "slow"
    assert first.range.start == 0
    # the fast source finishes pieces behind the slow one's; not yet 256 KiB done beyond it
    s.on_data(first.lease_id, 4 * KiB, 1.0)
    for lease in rest:
        s.on_data(lease.lease_id, 64 * KiB, 1.0)
    (a, b) = assigns(s.poll(1.0))
    assert min(a.range.start, b.range.start) >= 128 * KiB  # 128 KiB backlog: new work
    s.on_data(a.lease_id, 64 * KiB, 2.0)
    s.on_data(b.lease_id, 64 * KiB, 2.0)
    s.on_data(first.lease_id, 4 * KiB, 2.0)  # 4 KiB/s: 14 s to go
    (rescue, fresh) = assigns(s.poll(2.0))  # 256 KiB done beyond byte 8 Ki: help it
    assert rescue.source_id == "fast"
    if min_steal == 4 * KiB:  # the slow stream keeps about a second of its work
        assert not rescue.duplicate
        assert rescue.range == ByteRange(12 * KiB, 64 * KiB)
        assert s.on_data(first.lease_id, 4 * KiB, 2.5).finished
    else:  # too little to split: a second copy of the rest
        assert rescue.duplicate
        assert rescue.range == ByteRange(8 * KiB, 64 * KiB)
    assert not fresh.duplicate  # one rescue is enough
    assert fresh.range.start >= 256 * KiB
    s.check_invariants()


def test_the_rescue_threshold_shrinks_with_the_file() -> None:
    """32 MiB beyond a slow piece is all of a small file: there it is an eighth of the size."""
    cfg = SchedulerConfig(min_piece=64 * KiB, max_piece=64 * KiB, min_steal=128 * KiB)
    assert cfg.rescue_backlog == 32 * MiB
    s = Scheduler(4 * MiB, cfg)  # threshold: 512 KiB
    s.add_source("slow", 1, 0.0)
    s.add_source("fast", 1, 0.0)
    slow, fast = assigns(s.poll(0.0))
    s.on_data(slow.lease_id, 4 * KiB, 1.0)
    now, lease, rescued = 1.0, fast, None
    for _ in range(12):
        assert s.on_data(lease.lease_id, 64 * KiB, now).finished
        (lease,) = assigns(s.poll(now))
        if lease.duplicate:
            rescued = s.done().total() - lease.range.start  # done beyond the slow piece
            break
        now += 0.1
        s.on_data(slow.lease_id, 100, now)  # it trickles
    assert rescued is not None
    assert rescued == 512 * KiB
    s.check_invariants()


def test_stalled_lease_is_revoked_and_reassigned() -> None:
    # without the frontier rescue, which would otherwise take the hung source's pieces first
    # (nor pipelining: the download then ends before the stall timeout, the hung source's
    # pieces copied in the endgame)
    sim = SimSwarm(4 * MiB, dataclasses.replace(SMALL, rescue_backlog=0, pipeline=0))
    hung = sim.add("hung", rate=1 * MiB, slots=2)
    sim.add("ok", rate=1 * MiB, slots=2)
    sim.step(0.5)
    hung.frozen = True  # SIGSTOP: holds its leases, sends nothing
    assert sim.run()
    reasons = [c.reason for c in sim.cancels if c.source_id == "hung"]
    assert any(r.startswith("stalled") for r in reasons)
    sim.scheduler.check_invariants()


def test_repeated_failures_back_off_then_ban() -> None:
    cfg = SchedulerConfig(max_failures=3, backoff_initial=1.0, min_piece=16 * KiB)
    s = Scheduler(1 * MiB, cfg)
    s.add_source("bad", 1, 0.0)
    now = 0.0
    for i in range(3):
        (a,) = assigns(s.poll(now))
        actions = s.on_failure(a.lease_id, now, reason="refused")
        assert s.poll(now + 0.01) == []  # backing off (or banned)
        now += 2.0**i + 0.01
    assert actions == [Ban("bad", "3 failures in a row, last: refused")]
    assert not s.has_usable_source()
    (info,) = s.statistics(now).sources
    assert info.state is SourceState.BANNED


def test_broken_answers_ban_even_with_progress() -> None:
    s = Scheduler(1 * MiB, SchedulerConfig(max_broken=2, min_piece=16 * KiB))
    s.add_source("liar", 1, 0.0)
    now = 0.0
    bans = []
    for _ in range(2):
        now += 60.0
        (a,) = assigns(s.poll(now))
        s.on_data(a.lease_id, 100, now)
        bans += s.on_failure(a.lease_id, now, FailureKind.BROKEN, reason="bad Content-Range")
    assert [b for b in bans if isinstance(b, Ban)]


def test_rate_limited_source_waits_for_retry_after() -> None:
    s = Scheduler(1 * MiB, SMALL)
    s.add_source("a", 1, 0.0)
    (a,) = assigns(s.poll(0.0))
    s.on_failure(a.lease_id, 0.0, FailureKind.RATE_LIMITED, retry_after=7.0)
    assert s.poll(6.9) == []
    assert s.next_deadline(6.9) == pytest.approx(7.0)
    assert len(assigns(s.poll(7.0))) == 1


def test_resume_assigns_only_missing_bytes() -> None:
    done = RangeSet([ByteRange(0, 300 * KiB), ByteRange(400 * KiB, 1 * MiB)])
    sim = SimSwarm(1 * MiB, SMALL, done=done)
    sim.add("a", rate=1 * MiB, slots=3)
    assert sim.run()
    assert sim.writes_by_source["a"] == 100 * KiB


def test_survives_n_minus_one_of_n_sources_dying() -> None:
    sim = SimSwarm(16 * MiB, SMALL)
    for i in range(4):
        sim.add(f"n{i}", rate=2 * MiB, slots=3)
    sim.step(1.0)
    for i in range(3):
        sim.kill(f"n{i}")
        sim.step(0.5)
    assert sim.run()
    assert sim.written.total() == 16 * MiB
    sim.scheduler.check_invariants()


def test_faster_sources_get_more_work() -> None:
    sim = SimSwarm(64 * MiB, SchedulerConfig())
    sim.add("x1", rate=1 * MiB, slots=3)
    sim.add("x4", rate=4 * MiB, slots=3)
    assert sim.run(dt=0.05)
    share = sim.writes_by_source["x4"] / (64 * MiB)
    assert 0.7 < share < 0.9  # 4/5 of the aggregate rate


def test_remove_source_gives_back_its_work() -> None:
    s = Scheduler(1 * MiB, SMALL)
    s.add_source("a", 2, 0.0)
    leases = assigns(s.poll(0.0))
    actions = s.remove_source("a", 0.1, reason="crashed")
    assert {c.lease_id for c in actions if isinstance(c, Cancel)} == {a.lease_id for a in leases}
    s.check_invariants()
    assert s.statistics(0.1).missing == 1 * MiB


def test_statistics_report_segments_per_source() -> None:
    sim = SimSwarm(2 * MiB, SMALL)
    sim.add("a", rate=1 * MiB, slots=1)
    sim.add("b", rate=1 * MiB, slots=1)
    assert sim.run()
    stats = sim.scheduler.statistics(sim.now)
    assert stats.complete
    union = RangeSet(r for src in stats.sources for r in src.segments)
    assert union == RangeSet([ByteRange(0, 2 * MiB)])
    assert sum(src.claimed for src in stats.sources) == 2 * MiB


def _drive_with_lies(s: Scheduler, lies: dict[str, int], max_steps: int = 2000) -> list[Ban]:
    """Run ``s`` on a simulated clock. Source ``x`` answers every ``lies[x]``-th lease BROKEN
    at once (a shifted Content-Range) and delivers every other one whole, 64 KiB per 0.1 s.
    Returns the bans; stops when complete, stuck or after ``max_steps``."""
    now, answers, bans = 0.0, dict.fromkeys(lies, 0), []
    open_leases: dict[int, Assign] = {}
    for _ in range(max_steps):
        if s.is_complete() or not s.has_usable_source():
            break
        actions = [*s.on_timer(now), *s.poll(now)]
        for a in assigns(actions):
            answers[a.source_id] += 1
            if answers[a.source_id] % lies[a.source_id] == 0:
                actions += s.on_failure(a.lease_id, now, FailureKind.BROKEN, reason="lie")
            else:
                open_leases[a.lease_id] = a
        bans += [b for b in actions if isinstance(b, Ban)]
        for c in actions:
            if isinstance(c, Cancel | Ban):
                open_leases.pop(getattr(c, "lease_id", -1), None)
        now += 0.1
        for lease_id in list(open_leases):
            claim = s.on_data(lease_id, 64 * KiB, now)
            bans += [b for b in claim.actions if isinstance(b, Ban)]
            if claim.finished:
                del open_leases[lease_id]
            for c in claim.actions:
                if isinstance(c, Cancel):
                    open_leases.pop(c.lease_id, None)
        s.check_invariants()
    return bans


def test_an_origin_lying_in_one_answer_of_three_is_backed_off_never_banned() -> None:
    """The only source answers one range request in three wrongly: judged by its recent
    ratio it is backed off after each lie, never banned, and the download completes."""
    s = Scheduler(8 * MiB, SchedulerConfig(min_piece=256 * KiB, max_piece=256 * KiB))
    s.add_source("origin", 4, 0.0)
    assert _drive_with_lies(s, {"origin": 3}) == []
    assert s.is_complete()
    (info,) = s.statistics(1000.0).sources
    assert info.failures >= 9  # 32 pieces: it did lie about ten times
    assert info.state is not SourceState.BANNED


def test_a_lying_source_is_backed_off_after_a_bad_answer() -> None:
    cfg = SchedulerConfig(min_piece=16 * KiB, max_piece=16 * KiB, backoff_initial=1.0)
    s = Scheduler(1 * MiB, cfg)
    s.add_source("a", 1, 0.0)
    (first,) = assigns(s.poll(0.0))
    s.on_data(first.lease_id, 16 * KiB, 0.1)  # a good answer
    (second,) = assigns(s.poll(0.1))
    assert s.on_failure(second.lease_id, 0.2, FailureKind.BROKEN, reason="lie") == []
    assert s.poll(0.3) == []  # backing off
    assert len(assigns(s.poll(1.3))) == 1


def test_mostly_bad_answers_ban_a_source_while_another_remains() -> None:
    """Three lies in four answers: banned when another source can finish the file ..."""
    s = Scheduler(4 * MiB, SchedulerConfig(min_piece=64 * KiB, max_piece=64 * KiB))
    s.add_source("liar", 2, 0.0)
    s.add_source("good", 2, 0.0)
    bans = _drive_with_lies(s, {"liar": 1, "good": 10**9}, max_steps=50)
    assert [b.source_id for b in bans] == ["liar"]


def test_the_last_source_is_not_banned_while_some_answers_are_good() -> None:
    """... but not when it is the last source and some of its recent answers were good."""
    s = Scheduler(1 * MiB, SchedulerConfig(min_piece=64 * KiB, max_piece=64 * KiB))
    s.add_source("only", 1, 0.0)
    now = 0.0
    for i in range(9):  # good, bad, bad, good, bad, bad ...: two thirds bad
        now += 60.0
        (a,) = assigns(s.poll(now))
        if i % 3 == 0:
            s.on_data(a.lease_id, 64 * KiB, now)
        else:
            assert s.on_failure(a.lease_id, now, FailureKind.BROKEN, reason="lie") == []
    (info,) = s.statistics(now).sources
    assert info.state is not SourceState.BANNED


def test_a_last_source_that_only_lies_is_still_banned() -> None:
    s = Scheduler(1 * MiB, SchedulerConfig(min_piece=64 * KiB, max_broken=3))
    s.add_source("only", 1, 0.0)
    bans = []
    now = 0.0
    for _ in range(3):
        now += 60.0
        (a,) = assigns(s.poll(now))
        bans += s.on_failure(a.lease_id, now, FailureKind.BROKEN, reason="lie")
    assert [b.source_id for b in bans if isinstance(b, Ban)] == ["only"]
    assert not s.has_usable_source()


def test_any_stalled_says_when_on_timer_would_revoke_and_leases_are_those_in_flight() -> None:
    s = Scheduler(4 * MiB, SchedulerConfig(min_piece=1 * MiB, stall_timeout=5.0))
    s.add_source("a", 2, 0.0)
    first, second = assigns(s.poll(0.0))
    assert s.leases() == s.statistics(0.0).leases
    assert {lease.lease_id for lease in s.leases()} == {first.lease_id, second.lease_id}
    s.on_data(first.lease_id, 1000, 3.0)
    assert not s.any_stalled(4.99)
    assert s.on_timer(4.99) == []
    assert s.any_stalled(5.0)  # the second: no data since 0.0
    revoked = [a for a in s.on_timer(5.0) if isinstance(a, Cancel)]
    assert [a.lease_id for a in revoked] == [second.lease_id]
    assert not s.any_stalled(7.99)  # the first delivered at 3.0
    assert {lease.lease_id for lease in s.leases()} == {first.lease_id}


def test_a_busy_refusal_while_streaming_others_holds_the_source_to_those() -> None:
    """A helper or holder that refuses one more stream as busy (Retry-After 1 s) while it
    streams others for us is up and full for us: held to those for ``BUSY_HOLD`` s. A
    slot one of them frees is asked for again at once (not after the wait); one more only
    once the hold is over (one refusal per hold, not one per wait)."""
    s = Scheduler(16 * MiB, SchedulerConfig(min_piece=1 * MiB, max_piece=1 * MiB))
    s.add_source("h", 3, 0.0)
    a, b, c = assigns(s.poll(0.0))
    assert s.on_failure(c.lease_id, 0.1, FailureKind.RATE_LIMITED, retry_after=1.0) == []
    assert assigns(s.poll(0.2)) == []  # held to the two it streams
    assert assigns(s.poll(2.0)) == []  # the wait passed: still held, no ask to be refused
    assert s.next_deadline(2.0) == pytest.approx(0.1 + BUSY_HOLD)  # the loop wakes then
    s.on_data(b.lease_id, 256 * 1024, 2.5)
    s.on_data(a.lease_id, 1 * MiB, 2.5)  # one of them ends
    (again,) = assigns(s.poll(2.5))  # at once, and one only: the slot it freed
    assert again.source_id == "h"
    s.on_data(b.lease_id, 256 * 1024, 5.0)  # both stream on
    s.on_data(again.lease_id, 256 * 1024, 5.0)
    assert assigns(s.poll(5.0)) == []
    (more,) = assigns(s.poll(0.1 + BUSY_HOLD))  # the hold is over: one more asked for
    assert more.source_id == "h"
    s.check_invariants()


def test_a_busy_refusal_with_nothing_else_streaming_or_a_long_wait_backs_off() -> None:
    s = Scheduler(8 * MiB, SchedulerConfig(min_piece=1 * MiB, max_piece=1 * MiB))
    s.add_source("h", 1, 0.0)
    (only,) = assigns(s.poll(0.0))
    s.on_failure(only.lease_id, 0.1, FailureKind.RATE_LIMITED, retry_after=1.0)
    assert assigns(s.poll(0.5)) == []  # backing off: nothing of ours on it shows it is up
    assert len(assigns(s.poll(1.2))) == 1
    q = Scheduler(8 * MiB, SchedulerConfig(min_piece=1 * MiB, max_piece=1 * MiB))
    q.add_source("h", 2, 0.0)
    first, second = assigns(q.poll(0.0))
    q.on_failure(second.lease_id, 0.1, FailureKind.RATE_LIMITED, retry_after=3600.0)
    q.on_data(first.lease_id, 1 * MiB, 1.0)  # a quota used up: its end frees nothing
    assert assigns(q.poll(1.0)) == []
