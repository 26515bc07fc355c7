"""The registry's writes of many requests at once (``swarmget.hub.group_commit`` batches).

``write_beats``: heartbeats, one SELECT of the nodes' ``last_seen`` and one executemany
UPDATE of the live ones; a node unknown or no longer live (by each heartbeat's own ``now``
and ``ttl``) is answered False and left alone, as ``RegistryStore.heartbeat`` promises;
rows are updated in node id order, so that two hubs' batches never deadlock.
``write_nonces``: seen request nonces, one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
executed for all of them (PostgreSQL, SQLite ≥ 3.35; sent as multi-row VALUES); a nonce
already recorded, or repeated within the batch, is answered False (a replay) for every
occurrence but the first new one.
Both run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from swarmget.hub.schema import nodes, nonces

__all__ = ["Beat", "Nonce", "write_beats", "write_nonces"]


@dataclass(frozen=True, slots=True)
class Beat:
    node_id: str
    stats: Mapping[str, Any]
    now: float
    ttl: float | None


@dataclass(frozen=True, slots=True)
class Nonce:
    node_id: str
    nonce: str
    expires_at: float


_UPDATE_BEAT = (
    sa.update(nodes)
    .where(nodes.c.node_id == sa.bindparam("b_id"))
    .values(last_seen=sa.bindparam("b_now"), stats=sa.bindparam("b_stats", type_=sa.JSON))
)


async def write_beats(conn: AsyncConnection, beats: Sequence[Beat]) -> list[bool]:
    """Record ``beats``; for each, whether its node was known and live (see module doc)."""
    ids = sorted({beat.node_id for beat in beats})
    query = sa.select(nodes.c.node_id, nodes.c.last_seen).where(nodes.c.node_id.in_(ids))
    seen: dict[str, float] = {row[0]: row[1] for row in (await conn.execute(query)).all()}
    results: list[bool] = []
    updates: dict[str, dict[str, Any]] = {}
    for beat in beats:
        last = seen.get(beat.node_id)
        live = last is not None and (beat.ttl is None or last >= beat.now - beat.ttl)
        results.append(live)
        if live and last is not None:
            moved = max(last, beat.now)  # never back: another hub may have seen it later
            update = {"b_id": beat.node_id, "b_now": moved, "b_stats": dict(beat.stats)}
            updates[beat.node_id] = update
            seen[beat.node_id] = moved
    if updates:  # rows locked in node id order, as every batch does: no deadlock between hubs
        await conn.execute(_UPDATE_BEAT, [updates[node_id] for node_id in sorted(updates)])
    return results


def _insert_nonces(dialect: str) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` one row, for an executemany: built
    once per dialect, so its compiled form is cached and each batch is bound, not compiled
    (SQLAlchemy's "insertmanyvalues" sends it as multi-row VALUES pages). A statement with
    the batch's rows inlined (``.values([...])``) was compiled anew for every batch: 15-20
    ms of the hub's event loop per 400 nonces, the largest stall of a loaded hub's loop."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(nonces)
    return insert.on_conflict_do_nothing().returning(nonces.c.node_id, nonces.c.nonce)


_INSERT_NONCES = {dialect: _insert_nonces(dialect) for dialect in ("postgresql", "sqlite")}


async def write_nonces(conn: AsyncConnection, dialect: str, items: Sequence[Nonce]) -> list[bool]:
    """Record ``items``; for each, whether it was new (see module doc)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        row = {"node_id": item.node_id, "nonce": item.nonce, "expires_at": item.expires_at}
        rows.setdefault((item.node_id, item.nonce), row)
    stmt = _INSERT_NONCES[dialect]
    params = [rows[key] for key in sorted(rows)]  # in key order, as every batch
    inserted = {(row[0], row[1]) for row in (await conn.execute(stmt, params)).all()}
    results: list[bool] = []
    for item in items:
        key = (item.node_id, item.nonce)
        results.append(key in inserted)
        inserted.discard(key)  # a repeat within the batch is a replay
    return results
