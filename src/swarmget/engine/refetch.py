"""Telling which bytes go back to be fetched again when leases are lost.

The scheduler gives a lost lease's unclaimed bytes (its piece's ``[frontier, end)``) back
to ``missing`` unless another lease (an endgame copy) still works on the piece. The engine
does not see ``missing``; it compares the leases held before and after the scheduler was
told (a failure, a stall, a ban) and tells the difference as a ``Refetched`` event.
"""

from __future__ import annotations

from collections.abc import Mapping

from swarmget.core import events as ev
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import LeaseInfo, Scheduler


def holding(scheduler: Scheduler) -> dict[int, LeaseInfo]:
    """The leases in flight now, by id."""
    return {lease.lease_id: lease for lease in scheduler.leases()}


def given_back(
    before: Mapping[int, LeaseInfo], after: Mapping[int, LeaseInfo], at: float
) -> ev.Refetched | None:
    """The ranges that the leases held ``before`` and gone ``after`` gave back (None: none)."""
    held = {lease.range for lease in after.values()}
    lost = [
        lease
        for lease_id, lease in before.items()
        if lease_id not in after and lease.range.length and lease.range not in held
    ]
    if not lost:
        return None
    return ev.Refetched(
        at=at,
        ranges=tuple(RangeSet(lease.range for lease in lost)),
        source_ids=tuple(dict.fromkeys(lease.source_id for lease in lost)),
        cause=ev.RefetchCause.LOST_LEASE,
    )


def bad_data(ranges: tuple[ByteRange, ...], source_ids: tuple[str, ...], at: float) -> ev.Refetched:
    """Bytes that failed a check, sent back (``source_ids``: who had delivered them)."""
    return ev.Refetched(
        at=at,
        ranges=tuple(RangeSet(ranges)),
        source_ids=source_ids,
        cause=ev.RefetchCause.BAD_DATA,
    )
