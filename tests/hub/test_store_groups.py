"""The registry answers one group, one node and counts by index (issue #17): a real SQLite
file, time given as ``now``; and a database made before the indexes gets them on start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from swarmget.hub.store import NodeRecord, SqlRegistryStore, open_registry_store

T0 = 1_700_000_000.0
TTL = 15.0


def _node(node_id: str, group: str, address: str = "10.0.0.1") -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        address=address,
        port=7500,
        url=f"http://{address}:7500",
        version="0.1.0",
        slots=4,
        group=group,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlRegistryStore]:
    async with open_registry_store(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}") as opened:
        yield opened


async def _fill(store: SqlRegistryStore) -> None:
    """Groups a (3 nodes, one of them dead) and b (2 nodes)."""
    await store.upsert_node(_node("a-old", "a"), T0 - TTL - 1)
    for node_id, group in [("a-2", "a"), ("a-1", "a"), ("b-1", "b"), ("b-2", "b")]:
        await store.upsert_node(_node(node_id, group), T0)


async def test_live_in_group_lists_only_that_groups_live_nodes(store: SqlRegistryStore) -> None:
    await _fill(store)
    assert [r.node_id for r in await store.live_in_group("a", T0, TTL)] == ["a-1", "a-2"]
    assert [r.node_id for r in await store.live_in_group("b", T0, TTL)] == ["b-1", "b-2"]
    assert await store.live_in_group("c", T0, TTL) == []
    assert await store.live_in_group("a", T0 + TTL + 1, TTL) == []


async def test_live_node_is_none_when_dead_or_unknown(store: SqlRegistryStore) -> None:
    await _fill(store)
    found = await store.live_node("b-2", T0, TTL)
    assert found is not None
    assert (found.group, found.last_seen) == ("b", T0)
    assert await store.live_node("a-old", T0, TTL) is None
    assert await store.live_node("nobody", T0, TTL) is None


async def test_count_live_counts_without_listing(store: SqlRegistryStore) -> None:
    await _fill(store)
    assert await store.count_live(T0, TTL) == 4
    assert await store.count_live(T0 + TTL + 1, TTL) == 0


async def test_group_queries_use_the_group_index(store: SqlRegistryStore) -> None:
    await _fill(store)
    engine = create_async_engine(store._engine.url)  # a second connection to the same file
    try:
        async with engine.connect() as conn:
            query = (
                "EXPLAIN QUERY PLAN SELECT * FROM hub_nodes"
                " WHERE group_name = 'a' AND last_seen >= 0"
            )
            plan = " ".join(str(row[-1]) for row in (await conn.execute(sa.text(query))).all())
    finally:
        await engine.dispose()
    assert "ix_hub_nodes_group_seen" in plan


#: hub_nodes as the hub created it before issue #17: no group or address index.
OLD_SCHEMA = """
CREATE TABLE hub_nodes (
    node_id VARCHAR(128) NOT NULL PRIMARY KEY, address VARCHAR(64) NOT NULL,
    port INTEGER NOT NULL, url VARCHAR(300) NOT NULL, version VARCHAR(64) NOT NULL,
    slots INTEGER NOT NULL, group_name VARCHAR(128) NOT NULL, wan_rate BIGINT,
    quota_left BIGINT, registered_at FLOAT NOT NULL, last_seen FLOAT NOT NULL,
    stats JSON NOT NULL
)
"""


async def test_an_older_database_gets_the_indexes_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(OLD_SCHEMA))
            await conn.execute(
                sa.text(
                    "INSERT INTO hub_nodes VALUES ('n-1', '10.0.0.1', 7500, 'http://10.0.0.1:7500',"
                    " '0.1.0', 4, 'a', NULL, NULL, :t, :t, '{}')"
                ),
                {"t": T0},
            )
        async with open_registry_store(url) as store:
            assert [r.node_id for r in await store.live_in_group("a", T0, TTL)] == ["n-1"]
        async with engine.connect() as conn:
            names = await conn.run_sync(
                lambda sync: {ix["name"] for ix in sa.inspect(sync).get_indexes("hub_nodes")}
            )
    finally:
        await engine.dispose()
    assert {"ix_hub_nodes_group_seen", "ix_hub_nodes_address_seen"} <= names
