"""Fetch once per LAN (issue #15) as a pure conversation: K requesters of one content, each
with its own scheduler and origin link, a claim book splitting the origin work, and the
parts flowing between them as holders' availability grows (``swarmget.testing.simgroup``).
Byte counts only: the speed figures are in ``bench/scheduler_sim.py --shared K``."""

from __future__ import annotations

import pytest

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import SchedulerConfig
from swarmget.testing.simgroup import GroupSim

MiB = 1024 * 1024
SIZE = 24 * MiB + 12345  # not a whole number of blocks


def everyone_has_everything(sim: GroupSim) -> None:
    for m in sim.members.values():
        if m.alive:
            assert m.written == RangeSet([ByteRange(0, sim.size)]), m.id
            m.scheduler.check_invariants()
    sim.book.check_invariants()


@pytest.mark.parametrize("k", [2, 5])
def test_simultaneous_requesters_fetch_each_byte_from_the_origin_about_once(k: int) -> None:
    sim = GroupSim(SIZE, hosts=k)
    for h in range(k):
        sim.join(h)
    assert sim.run()
    everyone_has_everything(sim)
    assert sum(sim.link_bytes) <= 1.05 * SIZE
    assert all(b > 0 for b in sim.link_bytes)  # every link worked for the group
    for m in sim.members.values():
        assert m.from_lan >= SIZE - m.from_origin  # the rest came over the LAN


def test_without_sharing_each_requester_pulls_its_own_copy() -> None:
    """The control: today's behaviour costs K copies on the origin links."""
    sim = GroupSim(SIZE, hosts=3, sharing=False)
    for h in range(3):
        sim.join(h)
    assert sim.run()
    assert sum(sim.link_bytes) >= 3 * SIZE


def test_the_first_requester_killed_mid_way_the_others_finish_without_starting_over() -> None:
    sim = GroupSim(SIZE, hosts=4)
    for h in range(4):
        sim.join(h)
    for _ in range(1000):
        sim.step(0.05)
        if sim.members["m0"].advertised.total() >= SIZE // 8:
            break
    had = {m.id: m.written.total() for m in sim.members.values()}
    sim.kill("m0")
    assert sim.run()
    everyone_has_everything(sim)
    # nobody started over: origin bytes stay near one copy, whatever the dead one had fetched
    assert sum(sim.link_bytes) <= 1.25 * SIZE
    assert all(had[m] > 0 for m in ("m1", "m2", "m3"))
    assert "m0" not in sim.book.members()


def test_a_later_requester_gets_the_content_from_lan_holders_only() -> None:
    sim = GroupSim(SIZE, hosts=3)
    sim.join(0)
    sim.join(1)
    assert sim.run()
    third = sim.join(2)
    # one holder goes while the third downloads: the other holder serves the rest
    sim.step(0.05)
    assert 0 < third.written.total() < SIZE
    sim.kill("m0")
    assert sim.run()
    everyone_has_everything(sim)
    assert third.from_origin == 0
    assert third.from_lan >= SIZE


def test_a_slow_members_grants_are_shared_out_at_the_end() -> None:
    """One link at a tenth of the others' speed: idle links take halves (or copies) of its
    old, unreported grants; the duplicate origin bytes stay bounded by what was contested."""
    rates = [5e6, 5e6, 0.5e6, 5e6]
    sim = GroupSim(SIZE, hosts=4, link_rates=rates, advertise_every=1.0)
    for h in range(4):
        sim.join(h)
    assert sim.run()
    everyone_has_everything(sim)
    contested = sim.book.contested().total()
    assert contested > 0
    assert sum(sim.link_bytes) <= SIZE + contested + SIZE // 50
    assert sum(sim.link_bytes) <= 1.25 * SIZE


def test_without_the_group_endgame_nothing_is_granted_twice() -> None:
    rates = [5e6, 5e6, 0.5e6, 5e6]
    sim = GroupSim(SIZE, hosts=4, link_rates=rates, advertise_every=1.0, endgame=False)
    for h in range(4):
        sim.join(h)
    assert sim.run()
    everyone_has_everything(sim)
    assert sim.book.contested() == RangeSet()


def link_cuts(sim: GroupSim) -> int:
    """Origin streams the members' schedulers counted as cut short (``SourceInfo.cut``)."""
    return sum(
        s.cut
        for m in sim.members.values()
        for s in m.scheduler.statistics(sim.now).sources
        if s.source_id.startswith("link:")
    )


@pytest.mark.parametrize("unleased", [False, True])
def test_sharing_members_cut_no_origin_stream(unleased: bool) -> None:
    """A real origin stream cut short wastes what the origin had sent into it (``inflight``;
    0.8-1.75 MiB on the testbed). A member's origin link sizes its pieces on its grants and
    never splits its own streams (``core.selection``, restricted sources): 8 members at once
    cut none, whichever claim rule (``claim_unleased``: as ``engine.group`` while grants come
    whole), and the origin sends each byte about once."""
    size = 128 * MiB
    sim = GroupSim(
        size,
        hosts=8,
        advertise_every=1.0,
        inflight=768 * 1024,
        claim_unleased=unleased,
        config=SchedulerConfig(align=1),  # the engine's pieces (no manifest)
    )
    for h in range(8):
        sim.join(h)
    assert sim.run()
    everyone_has_everything(sim)
    assert sim.cuts == sim.cut_bytes == 0
    assert link_cuts(sim) == 0
    assert sum(sim.link_bytes) <= 1.01 * size


def test_the_schedulers_count_every_origin_stream_they_cut() -> None:
    """The control (no sharing: every member uses every host's link, unrestricted, and
    steals and copies at the end): the streams the simulation saw cut short are the ones
    the schedulers counted (``SourceInfo.cut``, what ``SharingReport.origin_cuts`` sums)."""
    config = SchedulerConfig(align=1)
    sim = GroupSim(32 * MiB, hosts=3, sharing=False, inflight=256 * 1024, config=config)
    for h in range(3):
        sim.join(h)
    assert sim.run()
    everyone_has_everything(sim)
    assert sim.cuts > 0
    assert link_cuts(sim) == sim.cuts
