"""One group's live nodes, read from the registry at most once per ``max_age`` seconds.

Nodes ask for their peers about once a minute each; a group of 50 asks almost once a second.
Every answer lists a fresh random choice of the group (``swarmget.hub.selection``), but the
group itself may be a second old (``max_age + stale_grace`` at most, see below).
Registrations and departures through this hub process drop the reads they change
(``forget``), so they show at once here; through another replica, a node that registered
since the read is listed from the next read on, one that left may still be listed (a
requester health-checks every peer before use; a node past its TTL is never listed).
Concurrent askers of one group share one read. At most ``max_groups`` groups are kept (stale
ones are dropped first; then everything), so the cache stays bounded. ``max_age`` 0 reads
the registry every time.

Askers never wait for a read that is merely old: once a read is ``max_age`` old it is still
answered from, for up to ``stale_grace`` seconds more, while ``refresh_forever`` (a task the
app owns) reads the group again in the background, one group at a time. The registry's
single SQLite connection is busy with the liveness flush's transactions (20-30 ms each at
5,000 nodes), and a peers answer that waited behind one was the tail of the hub's latency
(issue #17). A group nobody asked about for longer, one whose read was dropped (``forget``),
and every read when no refresher runs, are read while the asker waits, as before.

Answers list a read's nodes that are live *now* by the ``last_seen`` of the read, which
is older than the nodes' real one: a node that heartbeated since the read looks older than
it is. So no read older than ``READ_AGE_SHARE`` of the TTL is answered from (both limits
above are capped by it): at the default TTL (15 s) that is the 3 s above, unchanged; with a
short TTL (the local demo swarm's 3 s) a 1-3 s old read would have listed none of a group
whose nodes all heartbeat on time (their last_seen in it up to ~1.5 s old already), and
the download ran without helpers (seen in tests/hub/test_replicated_hub.py under load).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from swarmget.hub.store import NodeRecord, RegistryStore

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_STALE_GRACE", "GroupCache"]

log = logging.getLogger(__name__)

#: Seconds a group's read is reused.
DEFAULT_MAX_AGE = 1.0
#: Seconds past ``max_age`` an old read is still answered from while it is read again.
DEFAULT_STALE_GRACE = 2.0
#: No read older than this share of the TTL is answered from (see the module doc).
READ_AGE_SHARE = 0.2
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
        stale_grace: float = DEFAULT_STALE_GRACE,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_age = max_age
        self._max_groups = max_groups
        self._stale_grace = stale_grace
        self._reads: dict[str, _Read] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: groups to read again in the background (in order), while ``refresh_forever`` runs
        self._due: dict[str, None] = {}
        self._wake: asyncio.Event | None = None
        #: reads answered while old (a refresh asked for), and refreshes made
        self.stale_answers = 0
        self.refreshes = 0

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        """The group's live nodes as of at most ``max_age`` seconds ago (see module doc)."""
        if self._max_age <= 0:
            return await self._store.live_in_group(group, now, ttl)
        fresh, stale = self._limits(ttl)
        read = self._reads.get(group)
        if read is not None and read.ttl == ttl and self._wake is not None:
            age = now - read.at
            if fresh <= age < stale:
                self._due[group] = None  # (once, however many ask meanwhile)
                self._wake.set()
                self.stale_answers += 1
                return [r for r in read.records if r.is_live(now, ttl)]
        lock = self._locks.setdefault(group, asyncio.Lock())
        try:
            async with lock:
                read = self._reads.get(group)
                if read is None or read.ttl != ttl or not 0 <= now - read.at < fresh:
                    read = _Read(now, ttl, await self._store.live_in_group(group, now, ttl))
                    self._keep(group, read)
        finally:
            if not lock.locked() and self._locks.get(group) is lock:
                del self._locks[group]
        return [r for r in read.records if r.is_live(now, ttl)]

    def _limits(self, ttl: float) -> tuple[float, float]:
        """How old a read may be to answer from without a refresh, and (with one under
        way) at all: ``max_age`` and ``max_age + stale_grace``, at most ``READ_AGE_SHARE``
        of the TTL both (see the module doc)."""
        most = ttl * READ_AGE_SHARE
        return min(self._max_age, most), min(self._max_age + self._stale_grace, most)

    async def refresh_forever(self) -> None:
        """Read again, one at a time, the groups whose old reads were answered from (see
        the module docstring); the app runs it as a task it owns. A read that fails is
        dropped, so that the next asker reads (and meets the error) itself."""
        self._wake = wake = asyncio.Event()
        try:
            while True:
                await wake.wait()
                wake.clear()
                while self._due:
                    group = next(iter(self._due))
                    del self._due[group]
                    await self._refresh(group)
        finally:
            self._wake = None
            self._due.clear()

    async def _refresh(self, group: str) -> None:
        old = self._reads.get(group)
        if old is None or 0 <= self._clock() - old.at < self._max_age:
            return  # forgotten meanwhile (its next asker reads), or read again already
        lock = self._locks.setdefault(group, asyncio.Lock())
        try:
            async with lock:
                if self._reads.get(group) is not old:
                    return  # read meanwhile (by an asker), or forgotten
                now = self._clock()
                try:
                    records = await self._store.live_in_group(group, now, old.ttl)
                except Exception as exc:  # (the store's errors: the next asker meets them)
                    log.warning("reading group %s again failed: %s", group, exc)
                    self._reads.pop(group, None)
                    return
                if self._reads.get(group) is old:  # (not forgotten while it read)
                    self._keep(group, _Read(now, old.ttl, records))
                    self.refreshes += 1
        finally:
            if not lock.locked() and self._locks.get(group) is lock:
                del self._locks[group]

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
