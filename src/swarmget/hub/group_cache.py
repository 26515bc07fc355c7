"""One group's live nodes, read from the registry at most once per ``max_age`` seconds.

Nodes ask for their peers about once a minute each; a group of 50 asks almost once a second.
Every answer lists a fresh random choice of the group (``swarmget.hub.selection``), but the
group itself may be a second old. Registrations and departures through this hub process drop
the reads they change (``forget``), so they show at once here; through another replica, a
node that registered within that second is listed from the next read on, one that left may
still be listed (a requester health-checks every peer before use). Concurrent askers of
one group share one read. At most ``max_groups`` groups are kept (stale ones are dropped
first; then everything), so the cache stays bounded. ``max_age`` 0 reads the registry every
time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from swarmget.hub.store import NodeRecord, RegistryStore

__all__ = ["DEFAULT_MAX_AGE", "GroupCache"]

#: Seconds a group's read is reused.
DEFAULT_MAX_AGE = 1.0
MAX_GROUPS = 10_000


@dataclass(frozen=True, slots=True)
class _Read:
    at: float
    ttl: float
    records: list[NodeRecord]


class GroupCache:
    """Reads of ``store.live_in_group`` shared for ``max_age`` seconds of ``clock``."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        clock: Callable[[], float],
        max_age: float = DEFAULT_MAX_AGE,
        max_groups: int = MAX_GROUPS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_age = max_age
        self._max_groups = max_groups
        self._reads: dict[str, _Read] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        """The group's live nodes as of at most ``max_age`` seconds ago (see module doc)."""
        if self._max_age <= 0:
            return await self._store.live_in_group(group, now, ttl)
        lock = self._locks.setdefault(group, asyncio.Lock())
        try:
            async with lock:
                read = self._reads.get(group)
                if read is None or read.ttl != ttl or not 0 <= now - read.at < self._max_age:
                    read = _Read(now, ttl, await self._store.live_in_group(group, now, ttl))
                    self._keep(group, read)
        finally:
            if not lock.locked() and self._locks.get(group) is lock:
                del self._locks[group]
        return [r for r in read.records if r.is_live(now, ttl)]

    def forget(self, group: str | None = None) -> None:
        """Drop ``group``'s read (None: every group's), so the next answer reads again."""
        if group is None:
            self._reads.clear()
        else:
            self._reads.pop(group, None)

    def _keep(self, group: str, read: _Read) -> None:
        if len(self._reads) >= self._max_groups:
            fresh = {g: r for g, r in self._reads.items() if read.at - r.at < self._max_age}
            self._reads = fresh if len(fresh) < self._max_groups else {}
        self._reads[group] = read
