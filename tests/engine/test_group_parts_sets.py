"""``engine.group_parts``' counts of granted bytes and a holder's own bytes, worked out by
set differences, against the same counts byte by byte on a scheduler mid-download."""

from __future__ import annotations

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Assign, Scheduler, SchedulerConfig
from swarmget.engine.group_parts import link_left, link_unleased, only_at

KiB = 1024
SIZE = 512 * KiB


def _offsets(ranges: RangeSet | list[ByteRange]) -> set[int]:
    return {i for r in ranges for i in range(r.start, r.end)}


def _mid_download() -> Scheduler:
    config = SchedulerConfig(min_piece=32 * KiB, max_piece=32 * KiB, min_steal=16 * KiB)
    sched = Scheduler(SIZE, config)
    sched.add_source("link", 2, 0.0, available=RangeSet([ByteRange(0, 256 * KiB)]))
    sched.add_source("lan:a", 2, 0.0, available=RangeSet([ByteRange(64 * KiB, 400 * KiB)]))
    sched.add_source("lan:b", 2, 0.0, available=RangeSet([ByteRange(300 * KiB, SIZE)]))
    leases = [a for a in sched.poll(0.0) if isinstance(a, Assign)]
    for i, lease in enumerate(leases):
        if i % 2 == 0:  # half the streams delivered some of their bytes
            sched.on_data(lease.lease_id, 10 * KiB + i * KiB, 1.0)
    return sched


def test_granted_bytes_left_and_unleased_match_a_count_by_byte() -> None:
    sched = _mid_download()
    granted = RangeSet([ByteRange(0, 100 * KiB), ByteRange(150 * KiB, 260 * KiB)])
    done = _offsets(sched.done())
    leased = _offsets([lease.range for lease in sched.leases()])
    assert sched.done().total() > 0
    assert leased
    assert link_left(sched, granted) == len(_offsets(granted) - done)
    assert link_unleased(sched, granted) == len(_offsets(granted) - done - leased)


def test_only_at_is_what_one_holder_has_that_we_and_the_others_lack() -> None:
    sched = _mid_download()
    mine = _offsets(sched.availability("lan:a") or RangeSet())
    others = _offsets(sched.availability("lan:b") or RangeSet())
    got = only_at(sched, "lan:a", ["lan:b"])
    assert _offsets(got) == mine - _offsets(sched.done()) - others
