"""The registry stores (SQL on SQLite and PostgreSQL, with the native and the portable
upsert; in memory) against one contract.

Time is whatever ``now`` the test passes: nothing here sleeps. The PostgreSQL cases need
``SWARMGET_TEST_PG`` (see ``conftest.py``); concurrency is in ``test_store_concurrency.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from swarmget.core.errors import StorageError, UsageError
from swarmget.hub.store import NodeRecord, RegistryStore, SqlRegistryStore, open_registry_store
from swarmget.net.auth import SharedNonces
from swarmget.testing.fakes import MemoryRegistryStore

T0 = 1_700_000_000.0
TTL = 15.0
PgDatabase = Callable[[], AbstractAsyncContextManager[str]]


def _node(node_id: str, **kw: object) -> NodeRecord:
    fields: dict[str, object] = {
        "node_id": node_id,
        "address": "10.0.0.1",
        "port": 7500,
        "url": "http://10.0.0.1:7500",
        "version": "0.1.0",
        "slots": 4,
        "group": "10.0.0.0/16",
    }
    fields.update(kw)
    return NodeRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "sqlite-portable", "postgres", "postgres-portable", "memory"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: PgDatabase
) -> AsyncIterator[RegistryStore]:
    if request.param == "memory":
        yield MemoryRegistryStore()
        return
    on_conflict = not request.param.endswith("-portable")
    if request.param.startswith("postgres"):
        async with pg_database() as url, _started(url, on_conflict) as sql:
            yield sql
        return
    async with _started(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", on_conflict) as sql:
        yield sql


@asynccontextmanager
async def _started(url: str, on_conflict: bool) -> AsyncIterator[SqlRegistryStore]:
    store = SqlRegistryStore(url, on_conflict=on_conflict)
    try:
        await store.start()
        yield store
    finally:
        await store.close()


async def test_upsert_then_live(store: RegistryStore) -> None:
    stored = await store.upsert_node(_node("a", wan_rate=10_000, quota_left=None), T0)
    assert (stored.registered_at, stored.last_seen) == (T0, T0)
    [live] = await store.live_nodes(T0 + 1, TTL)
    assert live == stored
    assert live.wan_rate == 10_000
    assert live.quota_left is None


async def test_count_live_at_an_address(store: RegistryStore) -> None:
    await store.upsert_node(_node("a"), T0)
    await store.upsert_node(_node("b"), T0 + 10)
    await store.upsert_node(_node("c", address="10.0.0.2"), T0 + 10)
    assert await store.count_live_at("10.0.0.1", T0 + 10, TTL, other_than="x") == 2
    assert await store.count_live_at("10.0.0.1", T0 + 10, TTL, other_than="a") == 1
    assert await store.count_live_at("10.0.0.1", T0 + TTL + 1, TTL, other_than="x") == 1
    assert await store.count_live_at("10.0.0.3", T0 + 10, TTL, other_than="x") == 0


async def test_ttl_expiry_is_decided_by_now(store: RegistryStore) -> None:
    await store.upsert_node(_node("a"), T0)
    assert [n.node_id for n in await store.live_nodes(T0 + TTL, TTL)] == ["a"]
    assert await store.live_nodes(T0 + TTL + 0.5, TTL) == []


async def test_heartbeat_keeps_alive_and_stores_stats(store: RegistryStore) -> None:
    await store.upsert_node(_node("a"), T0)
    assert await store.heartbeat("a", {"bytes_served": 123, "busy": True}, T0 + 10, ttl=TTL)
    [live] = await store.live_nodes(T0 + 20, TTL)
    assert live.last_seen == T0 + 10
    assert live.registered_at == T0
    assert dict(live.stats) == {"bytes_served": 123, "busy": True}


async def test_heartbeat_of_unknown_node_is_false(store: RegistryStore) -> None:
    assert not await store.heartbeat("ghost", {}, T0)
    assert await store.live_nodes(T0, TTL) == []


async def test_heartbeat_of_expired_node_is_false_and_does_not_revive(
    store: RegistryStore,
) -> None:
    await store.upsert_node(_node("a"), T0)
    assert not await store.heartbeat("a", {}, T0 + TTL + 1, ttl=TTL)
    assert await store.live_nodes(T0 + TTL + 1, TTL) == []
    assert await store.heartbeat("a", {}, T0 + TTL + 1)  # without ttl: any known node


async def test_reregister_replaces_the_record(store: RegistryStore) -> None:
    await store.upsert_node(_node("a", port=1, stats={"old": 1}), T0)
    await store.upsert_node(_node("a", port=2, address="10.0.0.9"), T0 + 5)
    [live] = await store.live_nodes(T0 + 5, TTL)
    assert (live.port, live.address, live.registered_at) == (2, "10.0.0.9", T0 + 5)
    assert dict(live.stats) == {}


async def test_remove(store: RegistryStore) -> None:
    await store.upsert_node(_node("a"), T0)
    assert await store.remove("a")
    assert not await store.remove("a")
    assert await store.live_nodes(T0, TTL) == []


async def test_live_nodes_are_ordered_by_id(store: RegistryStore) -> None:
    for node_id in ["c", "a", "b"]:
        await store.upsert_node(_node(node_id), T0)
    assert [n.node_id for n in await store.live_nodes(T0, TTL)] == ["a", "b", "c"]


async def test_prune_forgets_long_dead_nodes(store: RegistryStore) -> None:
    await store.upsert_node(_node("old"), T0)
    await store.upsert_node(_node("new"), T0 + 100)
    assert await store.prune(before=T0 + 50) == 1
    assert not await store.heartbeat("old", {}, T0 + 100)
    assert await store.heartbeat("new", {}, T0 + 100)


async def test_close_is_safe(store: RegistryStore) -> None:
    await store.close()  # the fixture closes (again) afterwards


# --- SQL only -------------------------------------------------------------------------------------


# --- seen request nonces (shared by hub replicas) ---------------------------------------------


async def test_a_nonce_is_accepted_once(store: RegistryStore) -> None:
    nonces: SharedNonces = store  # type: ignore[assignment]
    assert await nonces.remember_nonce("a", "nonce-0000000001", expires_at=T0 + 30, now=T0)
    assert not await nonces.remember_nonce("a", "nonce-0000000001", expires_at=T0 + 31, now=T0 + 1)
    # another node's nonce, and another nonce of the same node, are not replays
    assert await nonces.remember_nonce("b", "nonce-0000000001", expires_at=T0 + 30, now=T0)
    assert await nonces.remember_nonce("a", "nonce-0000000002", expires_at=T0 + 30, now=T0)


async def test_expired_nonces_are_swept(tmp_path: Path) -> None:
    async with open_registry_store(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}") as sql:
        for i in range(5):
            await sql.remember_nonce("a", f"nonce-{i:010d}", expires_at=T0 + 30, now=T0)
        await sql.remember_nonce("a", "nonce-later-000001", expires_at=T0 + 60, now=T0 + 30)
        assert await sql.count_nonces() == 6
        await sql.remember_nonce("b", "nonce-after-000001", expires_at=T0 + 70, now=T0 + 40)
        assert await sql.count_nonces() == 2  # T0 + 30's are gone, the others stay


async def test_nonces_survive_reopening(tmp_path: Path) -> None:
    """A hub restarted on its database still refuses a request its previous run accepted."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    async with open_registry_store(url) as sql:
        assert await sql.remember_nonce("a", "nonce-0000000001", expires_at=T0 + 30, now=T0)
    async with open_registry_store(url) as sql:
        assert not await sql.remember_nonce("a", "nonce-0000000001", expires_at=T0 + 30, now=T0)


async def test_sqlite_registry_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    async with open_registry_store(url) as first:
        await first.upsert_node(_node("a", stats={"x": [1, 2]}), T0)
    async with open_registry_store(url) as second:
        [live] = await second.live_nodes(T0 + 1, TTL)
    assert live.node_id == "a"
    assert dict(live.stats) == {"x": [1, 2]}


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    async with open_registry_store(f"sqlite+aiosqlite:///{path}"):
        pass
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
    finally:
        await engine.dispose()
    assert mode == "wal"


async def test_in_memory_sqlite_works() -> None:
    async with open_registry_store("sqlite+aiosqlite://") as store:
        await store.upsert_node(_node("a"), T0)
        assert len(await store.live_nodes(T0, TTL)) == 1


async def test_unusable_database_is_a_storage_error(tmp_path: Path) -> None:
    store = SqlRegistryStore(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'hub.db'}")
    try:
        with pytest.raises(StorageError, match="cannot open the hub database"):
            await store.start()
    finally:
        await store.close()


async def test_database_failure_later_is_a_storage_error(tmp_path: Path) -> None:
    async with open_registry_store(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}") as store:
        engine = store._engine
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE hub_nodes"))
        with pytest.raises(StorageError, match="hub database"):
            await store.live_nodes(T0, TTL)


async def test_bad_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unusable hub database URL"):
        SqlRegistryStore("nosuchdialect+nodriver:///x")


async def test_password_is_hidden_in_messages() -> None:
    url = "postgresql+asyncpg://user:hunter2@127.0.0.1:1/db"
    with pytest.raises((UsageError, StorageError)) as info:  # asyncpg missing / refused
        async with open_registry_store(url):
            pass
    assert "hunter2" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


async def test_replica_counters(store: RegistryStore) -> None:
    """Each hub process's counter (``swarmget.hub.replicas``): made on the first raise,
    raised by one each time (the raise answers everyone's counters), deleted when
    forgotten (unknown ids are no error)."""
    assert await store.replica_beats() == {}
    assert await store.beat_replica("aaaaaaaaaaaaaaaa") == {"aaaaaaaaaaaaaaaa": 1}
    await store.beat_replica("aaaaaaaaaaaaaaaa")
    both = {"aaaaaaaaaaaaaaaa": 2, "bbbbbbbbbbbbbbbb": 1}
    assert await store.beat_replica("bbbbbbbbbbbbbbbb") == both
    assert await store.replica_beats() == both
    await store.forget_replicas(["aaaaaaaaaaaaaaaa", "cccccccccccccccc"])
    await store.forget_replicas([])
    assert await store.replica_beats() == {"bbbbbbbbbbbbbbbb": 1}
    await store.beat_replica("aaaaaaaaaaaaaaaa")  # forgotten while stopped, then resumed
    assert await store.replica_beats() == {"aaaaaaaaaaaaaaaa": 1, "bbbbbbbbbbbbbbbb": 1}
