"""Liveness in memory: a hub answers heartbeats from what it saw, and writes it on a timer.

Theory of operation. Every live node heartbeats every TTL/3; writing each heartbeat to the
registry (one row, one transaction per batch) is most of the hub's database work, and each
heartbeat's answer waited for it. ``Liveness`` keeps, per node this process has heard from,
when it was last seen and its latest stats:

* a heartbeat from a node seen here within the TTL is answered from memory (its entry moves
  on and is marked to write); the TTL check is the same one the registry makes, on the same
  times, so a node that stops heartbeating expires after its TTL as before;
* a heartbeat from a node not seen here (registered at another replica, or this hub
  restarted), or seen longer ago than the TTL, asks the registry (``RegistryStore.heartbeat``
  with the TTL: the one source of truth), and its entry starts from the answer: a node expired
  everywhere is told to register again;
* a peers query from a node seen here within the TTL takes its group from memory (known
  from its registration here, or from the registry's answer to its first query);
* ``flush`` writes every entry that moved since the last flush (``RegistryStore.record_seen``:
  per up to 500 nodes one transaction of one SELECT and one executemany UPDATE, rows in id
  order), and
  drops the entries of nodes the registry no longer has (they left or were pruned: their next
  heartbeat asks the registry, which answers 404) and of nodes silent for longer than the TTL.

The app flushes every ``flush_every`` seconds (``swarmget.hub.app``; by default the smaller
of 1 s and TTL/6). Replicas read the registry, so they see a node's ``last_seen`` at most
``flush_every`` (plus a write) late: with heartbeats every TTL/3 that still leaves more than a
heartbeat interval of margin before another replica would count a heartbeating node as
expired, and expiry sweeps and peers answers (which read the registry) lag by the same.
A hub that dies loses at most ``flush_every`` of heartbeats: its nodes move to another
replica well within their TTL. ``register`` and ``leave`` write through at once (``saw`` and
``forget`` keep the memory in step).

Memory: one small entry per node heard from within a TTL (a few hundred bytes each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from swarmget.core.errors import StorageError
from swarmget.hub.batched_writes import Beat
from swarmget.hub.store import RegistryStore

__all__ = ["MAX_FLUSH_EVERY", "Liveness", "flush_interval", "keep_flushing"]

log = logging.getLogger(__name__)

#: Seconds between flushes at most (smaller for short TTLs: ``flush_interval``).
MAX_FLUSH_EVERY = 1.0
#: Flushes per TTL at least.
FLUSHES_PER_TTL = 6


def flush_interval(ttl: float) -> float:
    """How often a hub with this (base) TTL writes its liveness (see module doc)."""
    return min(MAX_FLUSH_EVERY, ttl / FLUSHES_PER_TTL)


@dataclass(slots=True)
class _Seen:
    at: float
    stats: Mapping[str, Any]
    dirty: bool
    group: str | None = None  # known from its registration here, or a read of the registry


class Liveness:
    """When this process last saw each node (see module doc). Not thread-safe (one loop)."""

    def __init__(self, store: RegistryStore, *, in_memory: bool = True) -> None:
        """``in_memory`` False: every heartbeat is written through to ``store`` at once (and
        nothing is kept), as before this module."""
        self._store = store
        self._in_memory = in_memory
        self._seen: dict[str, _Seen] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def saw(self, node_id: str, now: float, stats: Mapping[str, Any], group: str) -> None:
        """The node registered here at ``now`` in ``group`` (already written)."""
        if self._in_memory:
            self._seen[node_id] = _Seen(now, stats, dirty=False, group=group)

    def knows(self, node_id: str, now: float, ttl: float) -> bool:
        """Whether this process saw the node within ``ttl`` (it registers or heartbeats
        here)."""
        entry = self._seen.get(node_id)
        return entry is not None and now - entry.at <= ttl

    def live_group(self, node_id: str, now: float, ttl: float) -> str | None:
        """The group of a node seen here within ``ttl`` (None: not seen, or its group not
        known here: ask the registry, then ``note_group``)."""
        entry = self._seen.get(node_id)
        if entry is None or not now - entry.at <= ttl:
            return None
        return entry.group

    def note_group(self, node_id: str, group: str) -> None:
        """The registry says ``node_id`` is in ``group`` (kept while the entry lives: a
        node's group changes only by registering again, which ``saw`` records)."""
        entry = self._seen.get(node_id)
        if entry is not None:
            entry.group = group

    def forget(self, node_id: str) -> None:
        """The node left: its next heartbeat asks the registry."""
        self._seen.pop(node_id, None)

    async def heartbeat(
        self, node_id: str, stats: Mapping[str, Any], now: float, ttl: float
    ) -> bool:
        """Like ``RegistryStore.heartbeat(..., ttl=ttl)``, from memory when it can."""
        if not self._in_memory:
            return await self._store.heartbeat(node_id, stats, now, ttl=ttl)
        entry = self._seen.get(node_id)
        if entry is not None and now - entry.at <= ttl:
            entry.at, entry.stats, entry.dirty = max(entry.at, now), stats, True
            return True
        group = entry.group if entry is not None else None
        known = await self._store.heartbeat(node_id, stats, now, ttl=ttl)
        if known:
            self._seen[node_id] = _Seen(now, stats, dirty=False, group=group)
        else:
            self._seen.pop(node_id, None)
        return known

    async def flush(self, now: float, ttl: float) -> int:
        """Write what moved since the last flush (see module doc); returns how many entries.
        On a failure (``StorageError``) the entries stay marked, for the next flush."""
        moved = [(node_id, e) for node_id, e in self._seen.items() if e.dirty]
        for _, entry in moved:
            entry.dirty = False
        try:
            gone = await self._store.record_seen(
                [Beat(node_id, e.stats, e.at, None) for node_id, e in moved]
            )
        except BaseException:
            for _, entry in moved:
                entry.dirty = True
            raise
        for node_id in gone:
            self._seen.pop(node_id, None)
        silent = [n for n, e in self._seen.items() if now - e.at > ttl and not e.dirty]
        for node_id in silent:
            del self._seen[node_id]
        return len(moved)


class Flushed(Protocol):
    """Something else written on the same timer (the hub's ``NonceLog``)."""

    async def flush(self, now: float) -> int: ...


async def keep_flushing(
    liveness: Liveness,
    *,
    every: float,
    clock: Callable[[], float],
    ttl: Callable[[], float],
    also: Flushed | None = None,
) -> None:
    """``liveness.flush`` (and ``also.flush``) every ``every`` seconds until cancelled,
    then once more (a hub stopping writes what it saw); a failing flush (the database
    away) is logged and retried by the next one."""
    try:
        while True:
            await asyncio.sleep(every)
            await _flush_logged(liveness, clock(), ttl(), also)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(_flush_logged(liveness, clock(), ttl(), also))


async def _flush_logged(
    liveness: Liveness, now: float, ttl: float, also: Flushed | None = None
) -> None:
    try:
        await liveness.flush(now, ttl)
        if also is not None:
            await also.flush(now)
    except StorageError as exc:
        log.warning("liveness flush failed (retried): %s", exc)
    except Exception:  # a bug: the hub goes on serving, the next flush tries again
        log.exception("liveness flush crashed")
