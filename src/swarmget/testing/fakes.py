"""In-memory fakes of swarmget's narrow I/O interfaces, for tests and demos.

* ``MemoryRegistryStore``: the hub's ``RegistryStore`` in a dict. It behaves like
  ``SqlRegistryStore`` (same liveness rule, same return values), and ``closed`` tells a
  test whether its owner closed it. It also keeps seen request nonces
  (``remember_nonce``, a ``swarmget.net.auth.SharedNonces``): hubs given the same instance
  share them, as replicas on one database do.
* ``identity_for(name)``: a node identity made deterministically from a name, so that a test
  can speak of "node-a" and get the same key (and node id, ``nid``) every time; and
  ``identity_of(node_id)``, the identity ``identity_for`` made with that id. Test keys only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swarmget.core.identity import NodeIdentity
from swarmget.hub.batched_writes import Beat, Nonce
from swarmget.hub.store import NodeRecord

__all__ = ["MemoryRegistryStore", "identity_for", "identity_of", "nid"]

_MADE: dict[str, NodeIdentity] = {}  # node id -> identity_for's identity


def identity_for(name: str) -> NodeIdentity:
    """The test identity of ``name`` (its seed is sha256 of the name: never use for real)."""
    seed = hashlib.sha256(b"swarmget-test-identity\n" + name.encode()).digest()
    identity = NodeIdentity.from_seed(seed)
    _MADE[identity.node_id] = identity
    return identity


def nid(name: str) -> str:
    """The node id of ``identity_for(name)``."""
    return identity_for(name).node_id


def identity_of(node_id_or_name: str) -> NodeIdentity:
    """The identity ``identity_for`` made with this node id, else ``identity_for`` it."""
    made = _MADE.get(node_id_or_name)
    return made if made is not None else identity_for(node_id_or_name)


class MemoryRegistryStore:
    """``swarmget.hub.store.RegistryStore`` kept in memory."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeRecord] = {}
        self._nonces: dict[tuple[str, str], float] = {}
        self._replicas: dict[str, int] = {}
        self.closed = False

    async def remember_nonce(
        self, node_id: str, nonce: str, *, expires_at: float, now: float
    ) -> bool:
        self._nonces = {k: t for k, t in self._nonces.items() if t >= now}
        if (node_id, nonce) in self._nonces:
            return False
        self._nonces[node_id, nonce] = expires_at
        return True

    async def record_nonces(self, items: Sequence[Nonce], now: float) -> list[bool]:
        out = []
        for item in items:
            expires_at = item.expires_at
            out.append(
                await self.remember_nonce(item.node_id, item.nonce, expires_at=expires_at, now=now)
            )
        return out

    async def upsert_node(self, record: NodeRecord, now: float) -> NodeRecord:
        stored = dataclasses.replace(
            record, registered_at=now, last_seen=now, stats=dict(record.stats)
        )
        self._nodes[record.node_id] = stored
        return stored

    async def heartbeat(
        self, node_id: str, stats: Mapping[str, Any], now: float, *, ttl: float | None = None
    ) -> bool:
        record = self._nodes.get(node_id)
        if record is None or (ttl is not None and not record.is_live(now, ttl)):
            return False
        self._nodes[node_id] = dataclasses.replace(record, last_seen=now, stats=dict(stats))
        return True

    async def record_seen(self, seen: Sequence[Beat]) -> set[str]:
        gone = set()
        for beat in seen:
            record = self._nodes.get(beat.node_id)
            if record is None:
                gone.add(beat.node_id)
                continue
            last = max(record.last_seen, beat.now)
            self._nodes[beat.node_id] = dataclasses.replace(
                record, last_seen=last, stats=dict(beat.stats)
            )
        return gone

    async def remove(self, node_id: str) -> bool:
        return self._nodes.pop(node_id, None) is not None

    async def live_nodes(self, now: float, ttl: float) -> list[NodeRecord]:
        return [r for _, r in sorted(self._nodes.items()) if r.is_live(now, ttl)]

    async def count_live_at(self, address: str, now: float, ttl: float, *, other_than: str) -> int:
        return sum(
            1
            for r in self._nodes.values()
            if r.address == address and r.node_id != other_than and r.is_live(now, ttl)
        )

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        return [r for r in await self.live_nodes(now, ttl) if r.group == group]

    async def live_node(self, node_id: str, now: float, ttl: float) -> NodeRecord | None:
        record = self._nodes.get(node_id)
        return record if record is not None and record.is_live(now, ttl) else None

    async def count_live(self, now: float, ttl: float) -> int:
        return sum(1 for r in self._nodes.values() if r.is_live(now, ttl))

    async def fell_silent(self, since: float, before: float, *, limit: int) -> list[str]:
        silent = [r for r in self._nodes.values() if since <= r.last_seen < before]
        silent.sort(key=lambda r: r.last_seen, reverse=True)
        return [r.node_id for r in silent[:limit]]

    async def prune(self, before: float) -> int:
        dead = [node_id for node_id, r in self._nodes.items() if r.last_seen < before]
        for node_id in dead:
            del self._nodes[node_id]
        return len(dead)

    async def beat_replica(self, replica: str) -> dict[str, int]:
        self._replicas[replica] = self._replicas.get(replica, 0) + 1
        return dict(self._replicas)

    async def replica_beats(self) -> dict[str, int]:
        return dict(self._replicas)

    async def forget_replicas(self, gone: Iterable[str]) -> None:
        for replica in gone:
            self._replicas.pop(replica, None)

    async def close(self) -> None:
        self.closed = True
