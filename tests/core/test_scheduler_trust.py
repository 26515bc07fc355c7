"""A source must show progress to get more work (issue #17): hung, new and many sources."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Action, Assign, Scheduler, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB

CONFIG = SchedulerConfig(
    min_piece=16 * KiB,
    max_piece=256 * KiB,
    min_steal=4 * KiB,
    stall_timeout=2.0,
    backoff_initial=0.5,
    backoff_max=0.5,
    rescue_backlog=0,
)


def _assigns(actions: list[Action]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def _feed(sched: Scheduler, leases: list[Assign], now: float) -> None:
    for a in leases:
        sched.on_data(a.lease_id, 1 * KiB, now)


def _stall_b() -> tuple[Scheduler, list[Assign]]:
    """Sources a and b (2 slots each) start; b delivers once then hangs; its leases stall."""
    sched = Scheduler(64 * MiB, CONFIG)
    sched.add_source("a", 2, 0.0)
    sched.add_source("b", 2, 0.0)
    first = _assigns(sched.poll(0.0))
    a_leases = [x for x in first if x.source_id == "a"]
    _feed(sched, first, 0.5)  # both deliver
    _feed(sched, a_leases, 2.0)
    _feed(sched, a_leases, 2.6)
    cancelled = sched.on_timer(2.6)  # b's leases had nothing since 0.5
    assert {c.source_id for c in cancelled} == {"b"}
    assert len(cancelled) == 2
    return sched, a_leases


def test_a_stalled_source_gets_one_small_probe_and_no_more() -> None:
    sched, a_leases = _stall_b()
    _feed(sched, a_leases, 3.5)  # b's backoff is over
    probe = [x for x in _assigns(sched.poll(3.5)) if x.source_id == "b"]
    assert len(probe) == 1
    assert probe[0].range.length <= CONFIG.min_piece
    assert not probe[0].duplicate
    for t in (4.0, 4.5):  # the probe shows nothing: no second lease, however long b idles
        _feed(sched, a_leases, t)
        assert not [x for x in _assigns(sched.poll(t)) if x.source_id == "b"]


def test_a_stalled_source_is_trusted_again_once_it_delivers() -> None:
    sched, a_leases = _stall_b()
    _feed(sched, a_leases, 3.5)
    (probe,) = [x for x in _assigns(sched.poll(3.5)) if x.source_id == "b"]
    sched.on_data(probe.lease_id, 1 * KiB, 3.7)  # progress
    more = [x for x in _assigns(sched.poll(3.7)) if x.source_id == "b"]
    assert len(more) == 1  # its second slot, a full piece
    assert more[0].range.length > CONFIG.min_piece


def _one_piece_in_flight(suspect: bool) -> list[Assign]:
    """a holds the whole file as one piece; b comes (suspect or not): what b gets."""
    config = SchedulerConfig(min_piece=16 * KiB, max_piece=4 * MiB, pieces_per_slot=1)
    sched = Scheduler(4 * MiB, config)
    sched.add_source("a", 1, 0.0)
    (a,) = _assigns(sched.poll(0.0))
    _feed(sched, [a], 0.5)
    _feed(sched, [a], 1.0)
    sched.add_source("b", 1, 1.0)
    sched._sources["b"].suspect = suspect  # as after a stall (see the tests above)
    return _assigns(sched.poll(1.0))


def test_a_suspect_source_gets_no_steal_when_nothing_is_missing() -> None:
    assert [x.source_id for x in _one_piece_in_flight(suspect=False)] == ["b"]  # a steal
    assert _one_piece_in_flight(suspect=True) == []


def test_a_newcomer_while_others_deliver_gets_one_probe_piece_then_its_slots() -> None:
    sched = Scheduler(64 * MiB, CONFIG)
    sched.add_source("a", 2, 0.0)
    _feed(sched, _assigns(sched.poll(0.0)), 0.5)
    sched.add_source("new", 4, 1.0)
    (probe,) = [x for x in _assigns(sched.poll(1.0)) if x.source_id == "new"]
    assert not [x for x in _assigns(sched.poll(1.2)) if x.source_id == "new"]
    sched.on_data(probe.lease_id, 1 * KiB, 1.3)
    assert len([x for x in _assigns(sched.poll(1.3)) if x.source_id == "new"]) == 3


def test_sources_there_at_the_start_get_all_their_slots() -> None:
    sched = Scheduler(64 * MiB, CONFIG)
    sched.add_source("a", 3, 0.0)
    sched.add_source("b", 2, 0.0)
    got = _assigns(sched.poll(0.0))
    assert sorted(x.source_id for x in got) == ["a", "a", "a", "b", "b"]


class _WatchedSwarm(SimSwarm):
    """Checks every assignment against the trust rules as it is made."""

    def _apply(self, actions: list[Action]) -> None:
        for a in _assigns(actions):
            src = self.scheduler._sources[a.source_id]
            if src.suspect:
                assert src.leases == {a.lease_id}, "a suspect source got a second lease"
                assert a.range.length <= self.config.min_piece
                assert not a.duplicate
        super()._apply(actions)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(20, 60),
    seed=st.integers(0, 2**32 - 1),
    hung=st.floats(0.0, 0.3),
    killed=st.floats(0.0, 0.3),
)
def test_many_sources_with_hung_and_killed_ones_keep_the_books_and_finish(
    n: int, seed: int, hung: float, killed: float
) -> None:
    rnd = random.Random(seed)
    size = 8 * MiB + rnd.randrange(MiB)
    sim = _WatchedSwarm(size, CONFIG)
    faults: list[tuple[float, str, str]] = []
    for i in range(n):
        sim.add(f"s{i}", rate=rnd.lognormvariate(13.0, 1.0), slots=rnd.randint(1, 3))
        roll = rnd.random()
        if roll < hung:
            faults.append((rnd.uniform(0.0, 2.0), "hang", f"s{i}"))
        elif roll < hung + killed:
            faults.append((rnd.uniform(0.0, 2.0), "kill", f"s{i}"))
    sim.add("healthy", rate=4 * MiB, slots=2)
    faults.sort()
    for _ in range(4000):
        if sim.scheduler.is_complete():
            break
        while faults and faults[0][0] <= sim.now:
            _, what, name = faults.pop(0)
            if what == "hang":
                sim.sources[name].frozen = True
            else:
                sim.kill(name)
        sim.step(0.05)
        sim.scheduler.check_invariants()
        assert sim.written == sim.scheduler.done()
    assert sim.scheduler.is_complete()
    assert sim.written == RangeSet([ByteRange(0, size)])
