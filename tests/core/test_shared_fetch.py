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


def test_claims_that_keep_granted_bytes_unleased_cut_fewer_origin_streams() -> None:
    """A real origin stream cut short (a steal among our own connections, a lost copy)
    wasted what the origin had sent into it (``inflight``). Keeping granted bytes unleased
    (``claim_unleased``, as ``engine.group`` does while grants come whole) leaves an idle
    connection granted bytes to take instead of a busy one's piece to split."""
    size = 128 * MiB
    sims = {}
    for unleased in (False, True):
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
        sims[unleased] = sim
    before, after = sims[False], sims[True]
    assert before.cut_bytes > 0
    assert after.cuts < before.cuts
    assert after.cut_bytes < before.cut_bytes
    assert sum(after.link_bytes) < sum(before.link_bytes)
    assert sum(after.link_bytes) <= 1.12 * size
