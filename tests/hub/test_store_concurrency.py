"""Two hubs' stores on one PostgreSQL database, written to at the same time.

Each store has its own engine and connection pool, as two hub processes would. Every call
is fired at once (``asyncio.gather``), so the database sees many transactions on the same
rows in flight together: registers of the same new node from both hubs, heartbeats,
prunes, reads. Nothing may fail, and afterwards both stores give the same answer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from swarmget.hub.store import NodeRecord, SqlRegistryStore

T0 = 1_700_000_000.0
TTL = 15.0
NODES = 24
ROUNDS = 6


def _node(node_id: str, port: int) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        address="10.0.0.1",
        port=port,
        url=f"http://10.0.0.1:{port}",
        version="0.1.0",
        slots=4,
        group="10.0.0.0/16",
    )


@pytest.fixture(params=["on-conflict", "portable"])
async def two_stores(
    request: pytest.FixtureRequest, pg_url: str
) -> AsyncIterator[tuple[SqlRegistryStore, SqlRegistryStore]]:
    on_conflict = request.param == "on-conflict"
    async with AsyncExitStack() as stack:
        a = SqlRegistryStore(pg_url, on_conflict=on_conflict)
        stack.push_async_callback(a.close)
        b = SqlRegistryStore(pg_url, on_conflict=on_conflict)
        stack.push_async_callback(b.close)
        await asyncio.gather(a.start(), b.start())  # both create the table at once
        yield a, b


async def test_two_hubs_start_at_once_on_an_empty_database(pg_url: str) -> None:
    stores = [SqlRegistryStore(pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        await stores[0].upsert_node(_node("a", 1), T0)
        assert [n.node_id for n in await stores[3].live_nodes(T0, TTL)] == ["a"]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_registers_heartbeats_and_prunes_from_two_hubs(
    two_stores: tuple[SqlRegistryStore, SqlRegistryStore],
) -> None:
    a, b = two_stores
    rng = random.Random(7)
    written: dict[str, set[int]] = {f"n{i:02}": set() for i in range(NODES)}
    calls: list[Awaitable[Any]] = []
    for r in range(ROUNDS):
        now = T0 + r
        for node_id, ports in written.items():
            for store in (a, b):  # the same node registered through both hubs at once
                port = rng.randrange(1, 65536)
                ports.add(port)
                calls.append(store.upsert_node(_node(node_id, port), now))
            hub = rng.choice((a, b))
            calls.append(hub.heartbeat(node_id, {"round": r}, now, ttl=TTL))
        calls += [a.prune(before=T0 - 100), b.prune(before=T0 - 100)]
        calls += [a.live_nodes(now, TTL), b.live_nodes(now, TTL)]
    rng.shuffle(calls)

    await asyncio.gather(*calls)

    seen_by_a = await a.live_nodes(T0 + ROUNDS, TTL)
    assert seen_by_a == await b.live_nodes(T0 + ROUNDS, TTL)
    assert [n.node_id for n in seen_by_a] == sorted(written)
    for record in seen_by_a:
        assert record.port in written[record.node_id]
        assert record.url == f"http://10.0.0.1:{record.port}"  # one write's row, not a mix


async def test_the_same_new_node_registered_by_many_hubs_at_once(
    two_stores: tuple[SqlRegistryStore, SqlRegistryStore],
) -> None:
    a, b = two_stores
    stored = await asyncio.gather(
        *(store.upsert_node(_node("new", port), T0) for port in range(1, 41) for store in (a, b))
    )
    assert len(stored) == 80
    [live] = await a.live_nodes(T0, TTL)
    assert live.node_id == "new"
    assert 1 <= live.port <= 40


async def test_heartbeats_through_either_hub_keep_a_node_alive(
    two_stores: tuple[SqlRegistryStore, SqlRegistryStore],
) -> None:
    a, b = two_stores
    await a.upsert_node(_node("x", 1), T0)
    for step in range(1, 6):  # alternate hubs; each heartbeat within the TTL of the last
        hub = (a, b)[step % 2]
        assert await hub.heartbeat("x", {"step": step}, T0 + step * 10, ttl=TTL)
    [live] = await a.live_nodes(T0 + 50, TTL)
    assert (live.last_seen, dict(live.stats)) == (T0 + 50, {"step": 5})
    assert await b.live_nodes(T0 + 50 + TTL + 1, TTL) == []  # expiry read from the database
    assert not await a.heartbeat("x", {}, T0 + 50 + TTL + 1, ttl=TTL)


async def test_a_nonce_sent_to_both_hubs_at_once_is_accepted_exactly_once(
    two_stores: tuple[SqlRegistryStore, SqlRegistryStore],
) -> None:
    """A replayed request racing the original to the other replica: one of them wins."""
    a, b = two_stores
    nonces = [f"nonce-{i:012d}" for i in range(20)]
    calls = [
        store.remember_nonce("n", nonce, expires_at=T0 + 30, now=T0 + sweep)
        for nonce in nonces
        for sweep in (0, 10)  # the second of each pair also sweeps expired rows meanwhile
        for store in (a, b)
    ]
    accepted = await asyncio.gather(*calls)
    assert sum(accepted) == len(nonces)
    for i in range(len(nonces)):
        assert sum(accepted[4 * i : 4 * i + 4]) == 1
    assert await a.count_nonces() == len(nonces)
