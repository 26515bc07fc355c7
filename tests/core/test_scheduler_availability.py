"""Sources with partial, growing availability (issue #15): LAN holders of the same content.

A holder may only be leased bytes it advertised; its availability grows as it verifies more
pieces; bytes nobody restricted can serve wait for a source that may serve any byte; a holder
that goes gives its leases back. Driven as a conversation with a simulated clock.
"""

from __future__ import annotations

import dataclasses

import pytest

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Action, Assign, Cancel, CancelCause, Scheduler, SchedulerConfig
from swarmget.testing.simswarm import SimSource, SimSwarm

KiB = 1024
MiB = 1024 * KiB
SIZE = 4 * MiB
CONFIG = SchedulerConfig(min_piece=64 * KiB, max_piece=256 * KiB, min_steal=32 * KiB)


def rs(*pairs: tuple[int, int]) -> RangeSet:
    return RangeSet(ByteRange(a, b) for a, b in pairs)


def assigns(actions: list[Action]) -> list[Assign]:
    return [a for a in actions if isinstance(a, Assign)]


def add_holder(sim: SimSwarm, name: str, rate: float, available: RangeSet, slots: int = 2) -> None:
    sim.sources[name] = SimSource(rate=rate, slots=slots)
    sim.scheduler.add_source(name, slots, sim.now, available=available)
    sim._apply(sim.scheduler.poll(sim.now))


def leases_within_availability(sim: SimSwarm) -> None:
    for lease in sim.scheduler.statistics(sim.now).leases:
        allowed = sim.scheduler.availability(lease.source_id)
        if allowed is not None:
            assert allowed.contains(lease.range), (lease, allowed)


# --- a holder alone ----------------------------------------------------------------------------


def test_a_holder_is_only_leased_what_it_has() -> None:
    sched = Scheduler(SIZE, CONFIG)
    sched.add_source("h", 4, 0.0, available=rs((1 * MiB, 2 * MiB)))
    got = assigns(sched.poll(0.0))
    assert got
    for a in got:
        assert rs((1 * MiB, 2 * MiB)).contains(a.range)
    assert sched.unserved() == rs((0, 1 * MiB), (2 * MiB, SIZE))


def test_bytes_nobody_has_wait_until_availability_grows() -> None:
    sim = SimSwarm(SIZE, CONFIG)
    add_holder(sim, "h", rate=8 * MiB, available=rs((0, 1 * MiB)))
    for _ in range(40):
        sim.step(0.05)
        leases_within_availability(sim)
    assert sim.written == rs((0, 1 * MiB))
    assert not sim.streams  # nothing it could serve is left: it idles, nothing is stuck
    assert sim.scheduler.unserved() == rs((1 * MiB, SIZE))
    # the holder verified more pieces: they flow as soon as it says so
    sim.scheduler.availability_grew("h", rs((1 * MiB, SIZE)), sim.now)
    assert sim.run(dt=0.05, max_time=sim.now + 60)
    assert sim.scheduler.unserved() == RangeSet()


def test_a_growing_holder_delivers_the_whole_file_in_step_with_its_growth() -> None:
    sim = SimSwarm(SIZE, CONFIG)
    add_holder(sim, "h", rate=64 * MiB, available=RangeSet())
    for block in range(0, SIZE, 512 * KiB):
        sim.scheduler.availability_grew("h", rs((block, block + 512 * KiB)), sim.now)
        for _ in range(5):
            sim.step(0.05)
            leases_within_availability(sim)
            sim.scheduler.check_invariants()
        assert sim.written == rs((0, block + 512 * KiB))
    assert sim.scheduler.is_complete()


# --- holders and sources that may serve any byte -----------------------------------------------


def test_the_origin_leaves_to_holders_what_they_can_serve() -> None:
    sched = Scheduler(SIZE, CONFIG)
    sched.add_source("h", 1, 0.0, available=rs((0, 2 * MiB)))
    sched.add_source("origin", 1, 0.0)
    first = {a.source_id: a.range for a in assigns(sched.poll(0.0))}
    assert first["h"].start == 0
    assert first["origin"].start >= 2 * MiB  # not what the holder has
    assert sched.unserved() == RangeSet()  # the origin may serve anything


def test_the_origin_helps_with_holder_bytes_once_nothing_else_is_missing() -> None:
    # no steals, duplicates or rescues: only taking missing bytes can make the origin help
    config = dataclasses.replace(CONFIG, steal=False, endgame=False, rescue_backlog=0)
    sim = SimSwarm(SIZE, config)
    add_holder(sim, "h", rate=256 * KiB, available=rs((0, SIZE - 256 * KiB)))  # slow holder
    sim.add("origin", rate=16 * MiB, slots=2)
    assert sim.run(dt=0.05, max_time=120)
    held = ByteRange(0, SIZE - 256 * KiB)
    by = sim.scheduler.contributors(held)
    assert by["h"] > 0
    assert by.get("origin", 0) > held.length // 2  # it took over most of what the holder had


def test_a_holder_that_goes_gives_its_leases_back() -> None:
    sim = SimSwarm(SIZE, CONFIG)
    add_holder(sim, "h", rate=1 * MiB, available=rs((0, SIZE)))
    sim.step(0.5)
    held = [lease for lease in sim.scheduler.statistics(sim.now).leases if lease.source_id == "h"]
    assert held
    actions = sim.scheduler.remove_source("h", sim.now)
    cancels = [a for a in actions if isinstance(a, Cancel)]
    assert {c.lease_id for c in cancels} == {lease.lease_id for lease in held}
    assert all(c.cause is CancelCause.GONE for c in cancels)
    sim._apply(actions)
    del sim.sources["h"]
    assert sim.scheduler.unserved() == RangeSet(sim.written.missing(ByteRange(0, SIZE)))
    add_holder(sim, "h2", rate=8 * MiB, available=rs((0, SIZE)))
    assert sim.run(dt=0.05, max_time=sim.now + 60)
    assert sim.written == rs((0, SIZE))


def test_steals_and_duplicates_stay_within_availability() -> None:
    """A fast holder of the first half only never steals from or duplicates the slow origin's
    pieces in the second half, but does within the first half."""
    sim = SimSwarm(SIZE, CONFIG)
    sim.add("origin", rate=128 * KiB, slots=2)
    add_holder(sim, "h", rate=32 * MiB, available=rs((0, SIZE // 2)))
    for _ in range(400):
        if sim.scheduler.is_complete():
            break
        sim.step(0.05)
        leases_within_availability(sim)
        sim.scheduler.check_invariants()
    assert sim.scheduler.contributors(ByteRange(SIZE // 2, SIZE)).keys() <= {"origin"}
    assert sim.scheduler.contributors(ByteRange(0, SIZE // 2)).get("h", 0) > SIZE // 4


def test_re_adding_a_gone_holder_replaces_its_availability() -> None:
    sched = Scheduler(SIZE, CONFIG)
    sched.add_source("h", 1, 0.0, available=rs((0, 1 * MiB)))
    sched.add_source("h", 1, 0.0, available=rs((2 * MiB, 3 * MiB)))  # live: grows
    assert sched.availability("h") == rs((0, 1 * MiB), (2 * MiB, 3 * MiB))
    sched.remove_source("h", 1.0)
    sched.add_source("h", 1, 2.0, available=rs((3 * MiB, SIZE)))  # gone: replaced
    assert sched.availability("h") == rs((3 * MiB, SIZE))


def test_ordinary_sources_serve_anything_and_do_not_grow() -> None:
    sched = Scheduler(SIZE, CONFIG)
    sched.add_source("origin", 1, 0.0)
    sched.availability_grew("origin", rs((0, 10)), 0.0)
    assert sched.availability("origin") is None


# --- bad input ----------------------------------------------------------------------------------


def test_bad_availability_input_is_refused() -> None:
    sched = Scheduler(SIZE, CONFIG)
    with pytest.raises(ValueError, match="unknown source 'x'"):
        sched.availability_grew("x", rs((0, 1)), 0.0)
    with pytest.raises(ValueError, match="unknown source"):
        sched.availability("x")
    with pytest.raises(ValueError, match="beyond the file"):
        sched.add_source("h", 1, 0.0, available=rs((0, SIZE + 1)))
    sched.add_source("h", 1, 0.0, available=RangeSet())
    with pytest.raises(ValueError, match="beyond the file"):
        sched.availability_grew("h", rs((SIZE - 1, SIZE + 5)), 0.0)
