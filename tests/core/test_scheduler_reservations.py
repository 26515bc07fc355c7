"""Reservations (issue #14): bytes kept for a helper whose first stream is already on its
way, so that its first lease is that stream."""

from __future__ import annotations

import pytest

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Assign, Scheduler, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB

SMALL = SchedulerConfig(min_piece=16 * KiB, max_piece=256 * KiB, min_steal=4 * KiB)


def assigns(actions: list[object]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def test_the_owner_first_lease_is_its_reservation_and_nobody_else_takes_it() -> None:
    s = Scheduler(4 * MiB, SMALL)
    kept = ByteRange(256 * KiB, 768 * KiB)
    s.reserve("h1", kept)
    s.add_source("own", 4, 0.0)
    own = assigns(s.poll(0.0))
    assert len(own) == 4
    assert not any(a.range.start < kept.end and kept.start < a.range.end for a in own)
    s.add_source("h1", 3, 0.01)
    mine = assigns(s.poll(0.01))
    assert mine[0] == Assign(mine[0].lease_id, "h1", kept, False)
    assert all(a.source_id == "h1" for a in mine)
    assert s.reserved() == {}
    s.check_invariants()


def test_a_reservation_taken_in_part_keeps_what_is_still_missing() -> None:
    s = Scheduler(2 * MiB, SMALL)
    s.add_source("own", 1, 0.0)
    first = assigns(s.poll(0.0))[0]  # [0, ...) leased before the reservation
    s.reserve("h1", ByteRange(0, first.range.end + 64 * KiB))
    s.add_source("h1", 1, 0.0)
    got = assigns(s.poll(0.0))
    assert got[0].source_id == "h1"
    assert got[0].range == ByteRange(first.range.end, first.range.end + 64 * KiB)


def test_reserved_bytes_wait_while_anything_else_is_missing() -> None:
    s = Scheduler(2 * MiB, SMALL)
    s.reserve("h1", ByteRange(1 * MiB, 2 * MiB))
    s.add_source("own", 2, 0.0)
    got = assigns(s.poll(0.0))
    assert got
    assert all(a.range.end <= 1 * MiB for a in got)
    assert s.reserved() == {"h1": ByteRange(1 * MiB, 2 * MiB)}


def test_bytes_kept_for_a_helper_that_never_joins_do_not_hold_up_the_end() -> None:
    """Nothing but bytes kept for a listed helper whose check has not answered (stopped,
    black-holed: it may never): an idle source takes them rather than wait for the check
    to time out (it waited before, up to the health timeout: 2 s by default)."""
    s = Scheduler(1 * MiB, SMALL)
    s.reserve("h1", ByteRange(0, 1 * MiB))
    s.add_source("own", 2, 0.0)
    got = assigns(s.poll(0.0))
    assert got
    assert all(a.source_id == "own" for a in got)
    assert got[0].range.start == 0
    assert s.reserved() == {}  # h1's is dropped: joining later, it takes what is left
    s.check_invariants()


def test_a_joined_owner_keeps_its_reservation_for_its_own_pick() -> None:
    """Only the reservations of sources that have not joined are given away."""
    s = Scheduler(1 * MiB, SMALL)
    s.add_source("h1", 1, 0.0)
    assert assigns(s.poll(0.0))  # h1 busy with the file's start
    s.reserve("h1", ByteRange(512 * KiB, 1 * MiB))
    s.add_source("own", 2, 0.0)
    taken = [a.range for a in assigns(s.poll(0.0))]
    assert not any(r.end > 512 * KiB for r in taken)
    assert s.reserved() == {"h1": ByteRange(512 * KiB, 1 * MiB)}


def test_a_swarm_whose_listed_helper_never_joins_completes() -> None:
    sim = SimSwarm(4 * MiB, SMALL)
    sim.scheduler.reserve("silent", ByteRange(256 * KiB, 768 * KiB))
    sim.add("own", rate=4 * MiB, slots=4)
    sim.add("h1", rate=4 * MiB, slots=3)
    assert sim.run()  # (it never released the silent one's bytes: stuck)
    assert sim.written == RangeSet([ByteRange(0, 4 * MiB)])


@pytest.mark.parametrize("how", ["remove", "ban"])
def test_an_owner_that_goes_gives_its_reservation_back(how: str) -> None:
    s = Scheduler(1 * MiB, SMALL)
    s.reserve("h1", ByteRange(0, 1 * MiB))
    s.add_source("h1", 1, 0.0)
    s.add_source("own", 1, 0.0)
    if how == "remove":
        s.remove_source("h1", 0.0)
    else:
        s.ban("h1", "bad bytes")
    got = assigns(s.poll(0.0))
    assert [a.source_id for a in got] == ["own"]
    assert got[0].range.start == 0


def test_bad_reservations_are_refused() -> None:
    s = Scheduler(1 * MiB, SMALL)
    with pytest.raises(ValueError, match="empty"):
        s.reserve("h1", ByteRange(5, 5))
    with pytest.raises(ValueError, match="beyond"):
        s.reserve("h1", ByteRange(0, 1 * MiB + 1))
    s.reserve("h1", ByteRange(0, 100))
    with pytest.raises(ValueError, match="overlaps"):
        s.reserve("h2", ByteRange(50, 150))
    s.reserve("h1", ByteRange(50, 150))  # the owner's new one replaces its old one
    assert s.reserved() == {"h1": ByteRange(50, 150)}


def test_a_restricted_owner_does_not_take_a_reservation() -> None:
    """A source that may serve only part of the file (a LAN holder) never gets a lead:
    its reservation is dropped, not leased outside what it may serve."""
    s = Scheduler(1 * MiB, SMALL)
    s.reserve("holder", ByteRange(512 * KiB, 1 * MiB))
    s.add_source("holder", 1, 0.0, available=RangeSet([ByteRange(0, 256 * KiB)]))
    got = assigns(s.poll(0.0))
    assert got
    assert got[0].range.end <= 256 * KiB
    assert s.reserved() == {}


def test_a_swarm_with_reservations_completes_and_each_owner_starts_with_its_own() -> None:
    sim = SimSwarm(16 * MiB, SMALL)
    leads = {f"h{i}": ByteRange((1 + 2 * i) * 256 * KiB, (3 + 2 * i) * 256 * KiB) for i in range(3)}
    for owner, rng in leads.items():
        sim.scheduler.reserve(owner, rng)
    sim.add("own", rate=4 * MiB, slots=4)
    for owner, rng in leads.items():
        sim.add(owner, rate=4 * MiB, slots=3)
        assert rng in [lease.range for lease in sim.scheduler.leases() if lease.source_id == owner]
    assert sim.run()
    assert sim.written == RangeSet([ByteRange(0, 16 * MiB)])
    assert sim.scheduler.reserved() == {}
    sim.scheduler.check_invariants()


def test_releasing_keeps_the_reservations_of_those_named() -> None:
    s = Scheduler(1 * MiB, SMALL)
    s.reserve("joined", ByteRange(0, 256 * KiB))
    s.reserve("silent", ByteRange(256 * KiB, 512 * KiB))
    s.release_reservations(keep={"joined"})
    assert s.reserved() == {"joined": ByteRange(0, 256 * KiB)}
    s.add_source("own", 1, 0.0)
    got = assigns(s.poll(0.0))
    assert got[0].range.start == 256 * KiB  # the silent one's bytes are anyone's again


def test_a_reserved_lease_does_not_teach_its_source_a_first_wait() -> None:
    """The lead's bytes were on their way before it was asked: they come at once, which
    says nothing of how long the source's next ranges wait (what pipelining asks ahead by)."""
    s = Scheduler(4 * MiB, SMALL)
    s.reserve("h1", ByteRange(0, 512 * KiB))
    s.add_source("h1", 2, 0.0)
    lead, other = assigns(s.poll(0.0))
    assert lead.range == ByteRange(0, 512 * KiB)
    s.on_data(lead.lease_id, 64 * KiB, 0.05)
    info = {i.source_id: i for i in s.statistics(0.05).sources}["h1"]
    assert info.waited == 0.0  # (the first wait and the sum of waits are learnt together)
    s.on_data(other.lease_id, 64 * KiB, 0.2)
    info = {i.source_id: i for i in s.statistics(0.2).sources}["h1"]
    assert info.waited == pytest.approx(0.2)


def test_a_source_that_has_only_had_its_reservation_pipelines_by_the_others_wait() -> None:
    """Its lead's stream is about to end and it knows no wait of its own: it asks ahead by
    the longest another source had, rather than going idle for a round trip."""
    config = SchedulerConfig(min_piece=MiB, max_piece=MiB, steal=False, endgame=False)
    s = Scheduler(8 * MiB, config)
    s.reserve("h1", ByteRange(MiB, 2 * MiB))
    s.add_source("own", 1, 0.0)
    s.add_source("h1", 1, 0.0)
    got = {a.source_id: a for a in assigns(s.poll(0.0))}
    assert got["h1"].range == ByteRange(MiB, 2 * MiB)
    s.on_data(got["own"].lease_id, 64 * KiB, 0.2)  # the origin's first byte after 0.2 s
    now, told, ahead = 0.0, [], []
    while True:  # the lead's bytes come at once, 64 KiB per 10 ms
        now += 0.01
        claim = s.on_data(got["h1"].lease_id, 64 * KiB, now)
        if claim.ending:
            told.append(now)
        if claim.finished:
            break
        ahead += [a for a in assigns(s.poll(now)) if a.source_id == "h1"]
    assert len(told) == 1
    assert len(ahead) == 1  # its next range, asked while the lead's last bytes came
    assert told[0] < now
