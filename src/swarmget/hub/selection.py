"""Which live peers one ``GET /v1/peers`` answer lists (pure: the caller gives time and dice).

A group may hold more live nodes than a requester can use, some of them fake (any holder of
the swarm secret can register). An answer lists at most ``limit`` of them, best first:

1. nodes that can serve: slots offered and quota not used up (by the registration or the
   latest heartbeat's stats);
2. among those, nodes heard from within ``fresh`` seconds (a node heartbeats every ttl/3);
3. among equals, a random order drawn anew for every answer, so that no set of nodes
   (e.g. fake ones with well-chosen ids) crowds the others out of every answer.

The requester health-checks them in this order and uses the first that answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from swarmget.hub.store import NodeRecord

__all__ = ["choose_peers"]


def choose_peers(
    candidates: Iterable[NodeRecord],
    *,
    limit: int,
    now: float,
    fresh: float,
    rng: random.Random,
) -> list[NodeRecord]:
    """At most ``limit`` of ``candidates``, best first (see module doc)."""

    def rank(record: NodeRecord) -> tuple[bool, bool, float]:
        idle = not _can_serve(record)
        stale = now - record.last_seen > fresh
        return idle, stale, rng.random()

    return sorted(candidates, key=rank)[:limit]


def _can_serve(record: NodeRecord) -> bool:
    quota = record.stats.get("quota_left", record.quota_left)
    return record.slots > 0 and quota != 0
