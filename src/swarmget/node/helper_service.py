"""Admission, throttling and accounting for the streams a node serves on its peer API.

``HelperService`` is what a helper's ``/v1/range`` streams (``node.helper``) and a holder's
``/v1/content-range`` streams (``node.holder``) share: ``slots`` concurrent streams, shared
fairly between requesters; a bandwidth cap over all streams (``throttle``); and, for origin
bytes only, the daily data quota persisted across restarts, reserved ``QUOTA_STEP`` at a time
as a stream goes on (``charge``: never a whole range up front, so a stream that goes nowhere
holds at most one step). A request over a limit is refused with a ``Refusal`` (429 with
Retry-After, or 503 while draining or paused). Plain ``def``: nothing here blocks.

A requester asks for its next range shortly before a stream ends (pipelining, see
``core.scheduler``): a stream of that requester with at most ``LEND_SECONDS`` of its bytes
left (at its own pace so far, or ``LEND_LEAST`` bytes) lends its slot to the one new stream
over the limits, so the two overlap for a moment. A stream lends to one stream at a time
(again once that one ended: the successor may end first), as the requester's scheduler
counts: a requester holds at most twice its share of slots, and only while half of them
are about to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from swarmget import __version__
from swarmget.core.ranges import Chunk
from swarmget.core.ratelimit import TokenBucket
from swarmget.net.origin import OriginClient
from swarmget.node.quota import DailyQuota, utc_day
from swarmget.node.range_stream import Refusal

__all__ = [
    "PACE",
    "PACE_MOST",
    "QUOTA_STEP",
    "ChunkFilter",
    "HelperLimits",
    "HelperService",
    "HelperStats",
    "LEND_LEAST",
    "LEND_SECONDS",
    "StreamBudget",
]


@dataclass(frozen=True, kw_only=True)
class HelperLimits:
    slots: int = 3
    rate_limit: float | None = None  # bytes/s over all streams
    retry_after_busy: float = 1.0
    #: close a stream whose requester took no byte for this many seconds
    write_stall_timeout: float = 20.0

    def __post_init__(self) -> None:
        if self.slots < 1 or self.write_stall_timeout <= 0:
            raise ValueError("need slots >= 1 and write_stall_timeout > 0")


@dataclass
class HelperStats:
    streams_served: int = 0
    bytes_served: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # by reason (the answer's code)
    stalled: int = 0  # streams closed because their requester stopped reading
    quota_cut: int = 0  # streams cut because the daily quota ran out mid-stream
    lent: int = 0  # streams admitted over the limits on a slot lent by one about to end
    active_by_requester: dict[str, int] = field(default_factory=dict)
    sent_day: str = ""  # the UTC day ``sent_today`` counts
    sent_today: int = 0  # bytes streamed to requesters on that day
    # origin connections opened ahead of a first range (``node.helper_warm``, issue #14)
    warm_started: int = 0
    warm_done: int = 0  # the connection opened (held for a range, see warm_unused)
    warm_failed: int = 0  # timed out, failed, or refused by the SSRF guard
    warm_refused: int = 0  # of those, refused by the SSRF guard
    warm_unused: int = 0  # opened, but no range claimed it in time: closed
    warm_spares: int = 0  # more connections opened beside a warm-up's (its other streams)
    warm_spares_used: int = 0  # ... that a range request took
    warm_spares_unused: int = 0  # ... not taken in time: closed
    lead_started: int = 0  # a warm-up that also asked the origin for the told first range
    lead_used: int = 0  # ... whose answer a range request served
    lead_unfit: int = 0  # ... claimed, but not what the range request pinned: closed
    lead_unused: int = 0  # ... answered, but not asked for in time: closed
    lead_unusable: int = 0  # ... not answered with a 206

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())

    def refuse(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


@dataclass
class StreamBudget:
    """One stream's share of the daily quota: reserved a step at a time, charged as used."""

    length: int  # the most the stream will fetch
    reserved: int = 0  # set aside and not fetched yet
    #: fetched from the origin so far (a LAN holder's stream: read from disk and sent)
    used: int = 0
    started: float = 0.0  # when it was admitted (the service's clock)
    #: it lends its slot to a stream still running (see the module docstring)
    lent: bool = False
    #: the stream that lent this one its slot (None: admitted within the limits)
    lender: StreamBudget | None = None


#: a stream with at most this many seconds of its bytes left (at its pace so far), or at
#: most ``LEND_LEAST`` bytes, lends its slot to its requester's next stream
LEND_SECONDS = 1.0
LEND_LEAST = 256 * 1024


#: about the longest a capped stream waits between two bursts, and the most bytes a burst
#: is (``HelperService.paced_step``)
PACE = 1.0
PACE_MOST = 1024 * 1024

QUOTA_STEP = 1024 * 1024  # quota is reserved this much at a time as a stream goes on

#: A transform every chunk a helper streams passes through (``HelperService(chunk_filter=)``):
#: only the integrity tests' lying helper (``swarmget.testing.evil_node``) gives one.
ChunkFilter = Callable[[Chunk], Chunk]


class HelperService:
    """Admission (slots, fairness, quota), throttling and accounting for helper streams."""

    def __init__(
        self,
        origin: OriginClient,
        limits: HelperLimits,
        *,
        quota: DailyQuota | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        chunk_filter: ChunkFilter | None = None,
    ) -> None:
        self.origin = origin
        self.limits = limits
        self.quota = quota
        self._clock = clock
        self._bucket = TokenBucket(limits.rate_limit) if limits.rate_limit else None
        self.stats = HelperStats()
        self.draining = False
        #: its owner paused helping (``node.settings``): new streams are refused with
        #: ``helping_paused`` (503) and health checks too, so requesters pass it by; the
        #: node stays registered with its hub, and streams in flight go on
        self.paused = False
        self.chunk_filter = chunk_filter
        self._wall = wall_clock
        #: the streams admitted and not released, by requester (the lenders to look at)
        self._budgets: dict[str, list[StreamBudget]] = {}

    def set_slots(self, slots: int) -> None:
        """New streams see ``slots`` at once; streams in flight keep their slots."""
        self.limits = dataclasses.replace(self.limits, slots=slots)

    def set_rate_limit(self, rate: float | None) -> None:
        """A new cap (bytes/s over all streams), in force at once for running streams too
        (they take their tokens from the same bucket); None lifts it."""
        self.limits = dataclasses.replace(self.limits, rate_limit=rate)
        if rate is None:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(rate)
        else:
            self._bucket.rate = rate
            self._bucket.burst = TokenBucket(rate).burst

    def count_sent(self, n: int) -> None:
        day = utc_day(self._wall())
        if day != self.stats.sent_day:
            self.stats.sent_day, self.stats.sent_today = day, 0
        self.stats.sent_today += n
        self.stats.bytes_served += n

    def sent_today(self) -> int:
        return self.stats.sent_today if self.stats.sent_day == utc_day(self._wall()) else 0

    def active(self) -> int:
        return sum(self.stats.active_by_requester.values())

    def statistics(self) -> dict[str, Any]:
        return {
            "slots": self.limits.slots,
            "active_streams": self.active(),
            "streams_served": self.stats.streams_served,
            "bytes_served": self.stats.bytes_served,
            "refused": self.stats.refused,
            "quota_left": self.quota.left() if self.quota is not None else None,
            "rate_limit": self.limits.rate_limit,
            "daily_quota": self.quota.limit if self.quota is not None else None,
            "helping_paused": self.paused,
            "version": __version__,
        }

    def admit(self, requester: str, length: int, *, origin: bool = True) -> StreamBudget:
        """Take a slot and a first quota step for ``requester`` or raise ``Refusal`` (429/503).
        ``origin=False``: a LAN holder stream (``node.holder``), served from this node's
        disk: it takes a slot but no quota (``--daily-quota`` counts origin bytes only)."""
        active = self.stats.active_by_requester
        if self.draining:
            raise Refusal("draining", "this node is shutting down", 5.0)
        if self.paused:
            raise Refusal("helping_paused", "helping is paused on this node by its owner", 60.0)
        others = {r for r, n in active.items() if n and r != requester}
        fair = math.ceil(self.limits.slots / (len(others) + 1))
        busy = self.active() >= self.limits.slots or active.get(requester, 0) >= fair
        now = self._clock()
        lender = self._lender(requester, now) if busy else None
        if busy and lender is None:
            raise Refusal("busy", "all slots busy", self.limits.retry_after_busy)
        budget = StreamBudget(length, started=now)
        if origin and not self._quota_covers(budget):
            assert self.quota is not None
            raise Refusal("quota", "daily quota used up", self.quota.retry_after())
        if lender is not None:
            lender.lent, budget.lender = True, lender
            self.stats.lent += 1
        active[requester] = active.get(requester, 0) + 1
        self._budgets.setdefault(requester, []).append(budget)
        return budget

    def _lender(self, requester: str, now: float) -> StreamBudget | None:
        """A stream of ``requester`` about to end that has not lent its slot yet."""
        for budget in self._budgets.get(requester, ()):
            if budget.lent or not budget.used:
                continue
            pace = budget.used / max(now - budget.started, 1e-3)
            if budget.length - budget.used <= max(LEND_LEAST, pace * LEND_SECONDS):
                return budget
        return None

    def progress(self, budget: StreamBudget, n: int) -> None:
        """``n`` more bytes of ``budget``'s stream went out (a stream without origin
        quota: a LAN holder's; ``charge`` counts a helper's)."""
        budget.used += n

    @contextlib.contextmanager
    def slot(self, requester: str, length: int, *, origin: bool = True) -> Iterator[StreamBudget]:
        """``admit`` a stream for the length of the block, ``release`` it however it ends."""
        budget = self.admit(requester, length, origin=origin)
        try:
            yield budget
        finally:
            self.release(requester, budget)

    def charge(self, budget: StreamBudget, n: int) -> bool:
        """``n`` more bytes came from the origin for ``budget``'s stream: count them against
        the quota. False when the quota cannot cover the stream's next bytes (stop it)."""
        budget.used += n
        if self.quota is None:
            return True
        taken = min(n, budget.reserved)
        budget.reserved -= taken
        self.quota.settle(taken, n)
        return budget.reserved > 0 or budget.used >= budget.length or self._reserve_step(budget)

    def release(self, requester: str, budget: StreamBudget) -> None:
        """The stream ended: free its slot and give back the quota it did not use."""
        active = self.stats.active_by_requester
        active[requester] -= 1
        if not active[requester]:
            del active[requester]
        if budget.lender is not None:
            budget.lender.lent = False  # its slot is its own again: it may lend it again
        budgets = self._budgets[requester]
        budgets[:] = [b for b in budgets if b is not budget]
        if not budgets:
            del self._budgets[requester]
        if self.quota is not None:
            self.quota.settle(budget.reserved, 0)
        budget.reserved = 0

    def _quota_covers(self, budget: StreamBudget) -> bool:
        if self.quota is not None and self.quota.left() < budget.length:
            return False
        return self._reserve_step(budget)

    def _reserve_step(self, budget: StreamBudget) -> bool:
        step = min(QUOTA_STEP, budget.length - budget.used - budget.reserved)
        if self.quota is None or step <= 0:
            return True
        if not self.quota.try_reserve(step):
            return False
        budget.reserved += step
        return True

    def paced_step(self, least: int) -> int:
        """Bytes a stream sends per wait of the bandwidth cap (``least`` without one). Each
        send costs the machine about the same CPU whatever its size (the wake-ups, the
        kernel's work per burst: bench/send_cpu.py), so a capped stream goes out in bursts
        as large as keeps each stream's gap between bursts about ``PACE`` seconds (the
        streams share the rate), from ``least`` to ``PACE_MOST`` bytes."""
        rate = self.limits.rate_limit
        if rate is None:
            return least
        share = rate * PACE / max(1, self.active())
        return max(least, min(PACE_MOST, int(share)))

    async def throttle(self, n: int) -> None:
        if self._bucket is not None:
            delay = self._bucket.reserve(n, self._clock())
            if delay > 0:
                await asyncio.sleep(delay)
