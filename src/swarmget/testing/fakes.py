"""In-memory fakes of swarmget's narrow I/O interfaces, for tests and demos.

* ``MemoryRegistryStore``: the hub's ``RegistryStore`` in a dict. It behaves like
  ``SqlRegistryStore`` (same liveness rule, same return values), and ``closed`` tells a
  test whether its owner closed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from swarmget.hub.store import NodeRecord

__all__ = ["MemoryRegistryStore"]


class MemoryRegistryStore:
    """``swarmget.hub.store.RegistryStore`` kept in memory."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeRecord] = {}
        self.closed = False

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

    async def prune(self, before: float) -> int:
        dead = [node_id for node_id, r in self._nodes.items() if r.last_seen < before]
        for node_id in dead:
            del self._nodes[node_id]
        return len(dead)

    async def close(self) -> None:
        self.closed = True
