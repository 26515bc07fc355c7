"""Pipelining (``core.scheduler``, issue #14): a stream about to end frees its slot for the
next range, so that the next request's wait overlaps its last bytes; driven by hand with
a clock of our own (``SimSwarm`` shows what it saves: test_simswarm_first_byte.py)."""

from __future__ import annotations

import pytest

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Action, Assign, Claim, Scheduler, SchedulerConfig

KiB = 1024
MiB = 1024 * KiB
CHUNK = 64 * KiB
#: pieces of 1 MiB, nothing stolen or copied: only pipelining gives a slot work early
ONE_MIB = SchedulerConfig(min_piece=MiB, max_piece=MiB, steal=False, endgame=False)


def assigns(actions: list[Action]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def stream(
    s: Scheduler, lease: Assign, now: float, *, wait: float = 0.1, step: float = 0.01
) -> tuple[list[tuple[float, Claim]], list[Assign], float]:
    """Deliver ``lease``'s range ``CHUNK`` bytes per ``step`` after ``wait`` (6.4 MB/s),
    polling after every chunk as the engine does; returns the claims (with their times),
    the ranges polled out meanwhile and the time it ended."""
    claims: list[tuple[float, Claim]] = []
    given: list[Assign] = []
    now += wait
    while True:
        claim = s.on_data(lease.lease_id, CHUNK, now)
        claims.append((now, claim))
        if claim.finished:
            return claims, given, now
        given += assigns(s.poll(now))
        s.check_invariants()
        now += step


def test_a_stream_about_to_end_frees_its_slot_once() -> None:
    s = Scheduler(4 * MiB, ONE_MIB)
    s.add_source("a", 1, 0.0)
    (first,) = assigns(s.poll(0.0))
    # the first stream: its wait for a first byte is measured, then the rest is planned by it
    claims, given, now = stream(s, first, 0.0)
    told = [t for t, c in claims if c.ending]
    assert len(told) == 1  # once per lease
    (second,) = given  # its next range, asked for while it still streamed
    assert second.range == ByteRange(MiB, 2 * MiB)
    (info,) = s.statistics(now).sources
    assert (info.ranges, info.ahead) == (2, 1)
    # told when what was left would take at most the wait measured (0.1 s at 6.4 MB/s; the
    # rate measured so far counts the wait too: less)
    assert 0.03 <= now - told[0] <= 0.1


def test_never_more_than_one_lease_ahead_per_slot() -> None:
    """Two slots: while both streams end, each has one successor at most (4 leases); a
    successor is not given more until it is about to end itself."""
    s = Scheduler(16 * MiB, ONE_MIB)
    s.add_source("a", 2, 0.0)
    live = {a.lease_id: a for a in assigns(s.poll(0.0))}
    now, most = 0.0, 0
    while not s.is_complete() and now < 30:
        now += 0.01
        for lease in list(live.values()):
            claim = s.on_data(lease.lease_id, CHUNK // 2, now)
            if claim.finished:
                del live[lease.lease_id]
        live |= {a.lease_id: a for a in assigns(s.poll(now))}
        s.check_invariants()
        most = max(most, len(live))
    assert s.is_complete()
    assert most <= 4
    stats = s.statistics(now)
    assert stats.sources[0].ranges == 16


def test_a_stream_cut_short_by_a_steal_does_not_free_its_slot() -> None:
    """Its piece was split: its stream on the wire goes on past the new end (the helper
    would not lend its slot then: it has more than that left), so no successor early."""
    config = SchedulerConfig(min_piece=MiB, max_piece=8 * MiB, pieces_per_slot=1, endgame=False)
    s = Scheduler(8 * MiB, config)
    s.add_source("slow", 1, 0.0)
    (slow,) = assigns(s.poll(0.0))
    assert slow.range == ByteRange(0, 8 * MiB)
    s.on_data(slow.lease_id, CHUNK, 0.1)  # its first byte: a wait of 0.1 s measured
    s.add_source("fast", 1, 0.1)
    (stolen,) = assigns(s.poll(0.1))  # takes the far end of the slow one's piece
    assert stolen.range.end == 8 * MiB
    assert stolen.range.start < 8 * MiB
    claims, given, _ = stream(s, slow, 0.1, wait=0.0)
    assert not any(c.ending for _, c in claims)
    assert not [a for a in given if a.source_id == "slow"]


def test_pipeline_zero_frees_a_slot_only_at_the_end() -> None:
    s = Scheduler(4 * MiB, SchedulerConfig(min_piece=MiB, max_piece=MiB, pipeline=0))
    s.add_source("a", 1, 0.0)
    (first,) = assigns(s.poll(0.0))
    claims, given, _ = stream(s, first, 0.0)
    assert not any(c.ending for _, c in claims)
    assert given == []
    assert len(assigns(s.poll(2.0))) == 1


def test_a_banned_source_whose_lease_was_ending_gets_nothing() -> None:
    """Its ending lease is let go with the rest; no slot of it stays open."""
    s = Scheduler(4 * MiB, ONE_MIB)
    s.add_source("a", 1, 0.0)
    s.add_source("b", 1, 0.0)
    a_lease = next(x for x in assigns(s.poll(0.0)) if x.source_id == "a")
    now = 0.1
    claim = s.on_data(a_lease.lease_id, CHUNK, now)
    while not claim.ending:
        now += 0.01
        s.poll(now)
        claim = s.on_data(a_lease.lease_id, CHUNK, now)
    s.remove_source("a", now)
    s.check_invariants()
    assert not [x for x in assigns(s.poll(now)) if x.source_id == "a"]


def test_pipelining_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="pipeline"):
        SchedulerConfig(pipeline=-1)
    with pytest.raises(ValueError, match="pipeline_most"):
        SchedulerConfig(pipeline_most=-0.1)


def test_a_slot_about_to_free_takes_no_copy_nor_steal() -> None:
    """Nothing missing: the ending stream's slot gets no endgame copy or steal (they would
    cut or double streams while it still streams); once its stream ended, it may."""
    config = SchedulerConfig(min_piece=MiB, max_piece=MiB, endgame_min_eta=0.0, hedge=10.0)
    s = Scheduler(2 * MiB, config)
    s.add_source("a", 1, 0.0)
    s.add_source("b", 1, 0.0)
    leases = {x.source_id: x for x in assigns(s.poll(0.0))}
    assert set(leases) == {"a", "b"}
    now = 0.1
    s.on_data(leases["b"].lease_id, CHUNK, now)  # b delivers slowly: a copy would be worth it
    claim = s.on_data(leases["a"].lease_id, CHUNK, now)
    while not claim.ending:
        now += 0.01
        s.poll(now)
        claim = s.on_data(leases["a"].lease_id, CHUNK, now)
    assert assigns(s.poll(now)) == []  # nothing missing, and no copy of b's piece yet
    while not claim.finished:
        now += 0.01
        claim = s.on_data(leases["a"].lease_id, CHUNK, now)
    (copy,) = assigns(s.poll(now))
    assert copy.source_id == "a"
    assert copy.duplicate or copy.range.end == 2 * MiB  # a copy or a steal of b's piece
    s.check_invariants()


def test_a_restricted_source_does_not_pipeline() -> None:
    """A LAN holder or a group member's link (``available``) frees its slot only when its
    stream ended."""
    s = Scheduler(4 * MiB, ONE_MIB)
    s.add_source("holder", 1, 0.0, available=RangeSet([ByteRange(0, 4 * MiB)]))
    (first,) = assigns(s.poll(0.0))
    claims, given, _ = stream(s, first, 0.0)
    assert not any(c.ending for _, c in claims)
    assert given == []
