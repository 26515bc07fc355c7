"""A restricted source's pieces (issue #15, round 3): a member's origin link in a sharing
group may fetch only its grants. Its pieces are its share of the grant (one per free slot,
ending where the grant ends), it never splits its own stream (its connections share one
link: nothing to gain, and the origin stream cut wastes what was in flight), and every
stream we cut short is counted on its source (``SourceInfo.cut``). Pure, no clock."""

from __future__ import annotations

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import (
    Action,
    Assign,
    Cancel,
    CancelCause,
    FailureKind,
    Scheduler,
    SchedulerConfig,
)

MiB = 1024 * 1024
SIZE = 256 * MiB
GRANT = ByteRange(8 * MiB, 12 * MiB)


def assigns(actions: list[Action], source: str | None = None) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign) and source in (None, a.source_id)]


def cuts(sched: Scheduler, source: str) -> int:
    return next(s.cut for s in sched.statistics(0.0).sources if s.source_id == source)


def member(size: int = SIZE) -> Scheduler:
    """A group member: its origin link (4 connections, nothing granted yet) and 7 LAN
    holders (3 slots each, nothing verified yet): 25 slots, so a piece sized on the whole
    download would be 256 MiB / (25 * 4) = 2.56 MiB."""
    sched = Scheduler(size, SchedulerConfig())
    sched.add_source("link", 4, 0.0, available=RangeSet())
    for h in range(7):
        sched.add_source(f"lan:{h}", 3, 0.0, available=RangeSet())
    return sched


def test_a_grant_becomes_one_piece_per_free_connection_ending_at_the_grant() -> None:
    sched = member()
    assert sched.poll(0.0) == []  # nothing granted: nothing to fetch
    sched.availability_grew("link", RangeSet([GRANT]), 0.0)
    got = assigns(sched.poll(0.0), "link")
    assert len(got) == 4
    assert RangeSet(a.range for a in got) == RangeSet([GRANT])
    assert {a.range.length for a in got} == {1 * MiB}
    stats = sched.statistics(0.0)
    assert stats.steals == 0
    assert stats.duplicates == 0


def test_a_later_grant_is_shared_among_the_connections_still_free() -> None:
    sched = member()
    sched.availability_grew("link", RangeSet([ByteRange(0, 1 * MiB)]), 0.0)
    first = assigns(sched.poll(0.0), "link")
    assert [a.range.length for a in first] == [256 * 1024] * 4  # min_piece: no smaller
    for a in first[:2]:
        assert sched.on_data(a.lease_id, a.range.length, 0.1).finished
    sched.availability_grew("link", RangeSet([ByteRange(1 * MiB, 5 * MiB)]), 0.2)
    more = assigns(sched.poll(0.2), "link")
    assert len(more) == 2  # the two free connections: 2 MiB each
    assert RangeSet(a.range for a in more) == RangeSet([ByteRange(1 * MiB, 5 * MiB)])
    assert {a.range.length for a in more} == {2 * MiB}


#: 1 MiB pieces, and steals of small remainders allowed: only the rule under test keeps a
#: split away
SPLITTY = SchedulerConfig(min_piece=1 * MiB, max_piece=1 * MiB, min_steal=16 * 1024)


def one_finishes(sched: Scheduler, leases: list[Assign]) -> float:
    """The first connection fetches its piece; the others crawl (16 KiB a step)."""
    done = leases[0]
    for t in range(1, 5):
        claim = sched.on_data(done.lease_id, done.range.length // 4, t * 0.1)
        for other in leases[1:]:
            sched.on_data(other.lease_id, 16 * 1024, t * 0.1)
    assert claim.finished
    return 0.5


def test_a_restricted_link_with_nothing_left_unleased_waits_instead_of_splitting_itself() -> None:
    sched = Scheduler(SIZE, SPLITTY)
    sched.add_source("link", 4, 0.0, available=RangeSet())
    sched.availability_grew("link", RangeSet([GRANT]), 0.0)
    leases = assigns(sched.poll(0.0), "link")
    assert [a.range.length for a in leases] == [1 * MiB] * 4
    now = one_finishes(sched, leases)
    assert assigns(sched.poll(now), "link") == []  # no split of a sibling's piece
    assert sched.statistics(now).steals == 0
    sched.availability_grew("link", RangeSet([ByteRange(12 * MiB, 13 * MiB)]), now)
    fresh = assigns(sched.poll(now), "link")
    assert [a.range for a in fresh] == [ByteRange(12 * MiB, 13 * MiB)]  # the next grant
    assert cuts(sched, "link") == 0


def test_an_unrestricted_source_still_splits_its_own_piece_and_that_cut_is_counted() -> None:
    """The control, the same pieces and streams: a source that may serve any byte (the
    origin outside a group, where connections may be capped one by one) splits a sibling's
    slow piece, and the split holder's stream, ended before the end it asked for, counts
    as a cut."""
    sched = Scheduler(GRANT.length, SPLITTY)
    sched.add_source("origin", 4, 0.0)
    leases = assigns(sched.poll(0.0))
    assert [a.range.length for a in leases] == [1 * MiB] * 4
    now = one_finishes(sched, leases)
    stolen = assigns(sched.poll(now))
    assert len(stolen) == 1
    assert sched.statistics(now).steals == 1
    victim = next(x for x in sched.statistics(now).leases if x.range.end == stolen[0].range.start)
    asked = next(a for a in leases if a.lease_id == victim.lease_id)
    assert victim.range.end < asked.range.end  # it now ends before what it asked for
    assert sched.on_data(victim.lease_id, victim.range.end - victim.cursor, now).finished
    assert cuts(sched, "origin") == 1


def test_cuts_count_cancels_and_lost_races_but_not_failures() -> None:
    sched = Scheduler(8 * MiB, SchedulerConfig(min_piece=1 * MiB, max_piece=1 * MiB))
    sched.add_source("a", 8, 0.0)
    got = assigns(sched.poll(0.0))
    assert len(got) == 8
    sched.on_failure(got[0].lease_id, 0.1, FailureKind.RETRYABLE)  # ended by itself
    assert cuts(sched, "a") == 0
    sched.add_source("b", 2, 0.2)
    actions = sched.remove_source("a", 0.3)  # we cancel its 7 streams
    cancelled = [x for x in actions if isinstance(x, Cancel)]
    assert {x.cause for x in cancelled} == {CancelCause.GONE}
    assert cuts(sched, "a") == len(cancelled) == 7
    assert cuts(sched, "b") == 0


def test_a_lan_holder_takes_a_run_it_has_whole_not_a_share_per_free_slot() -> None:
    """A LAN holder (``whole_runs``) is not bound by round trips to a distant origin: one
    request for what it has, where a share per free slot made three (each signed, checked
    and a slot of the holder that other requesters share)."""
    run = ByteRange(4 * MiB, 5 * MiB + 512 * 1024)  # 1.5 MiB verified on the holder
    for whole, expected in ((True, [run]), (False, None)):
        sched = Scheduler(SIZE, SchedulerConfig())
        sched.add_source("lan:h", 3, 0.0, available=RangeSet(), whole_runs=whole)
        sched.availability_grew("lan:h", RangeSet([run]), 0.0)
        got = [a.range for a in assigns(sched.poll(0.0), "lan:h")]
        assert RangeSet(got) == RangeSet([run])
        if expected is not None:
            assert got == expected
        else:  # the share per free slot, as a member's origin link gets
            assert len(got) == 3
