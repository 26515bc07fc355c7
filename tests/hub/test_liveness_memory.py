"""Liveness kept in memory (``swarmget.hub.liveness``), with real ``python -m swarmget.hub``
processes: on a SQLite file, a silent node still expires after its TTL and a heartbeating one
stays (its liveness reaches the database by the flushes); two replicas on one PostgreSQL
database see each other's heartbeating nodes live (replays: ``test_nonce_log.py``);
``/metrics`` has the write histograms, counting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.errors import UnknownNode
from swarmget.hub.liveness import Liveness
from swarmget.hub.store import NodeRecord
from swarmget.net.hub_client import HubClient, Registration
from swarmget.testing.fakes import MemoryRegistryStore, identity_for, nid
from swarmget.testing.swarm import HubProcs, open_hubs

SECRET = b"liveness-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)
TTL = 2.0  # flushes every TTL/6


class Hubs:
    def __init__(self, hubs: HubProcs) -> None:
        self.hubs = hubs

    async def start(self, db_url: str) -> str:
        return str((await self.hubs.start(db_url, ttl=TTL)).info["url"])


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[Hubs]:
    async with open_hubs(tmp_path, SECRET.decode()) as started:
        yield Hubs(started)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _health(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/v1/health") as resp:
        return int((await resp.json())["nodes"])


async def _beating(client: HubClient, seconds: float) -> None:
    """Heartbeat every TTL/5 for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await client.heartbeat({"bytes_served": 1})
        await asyncio.sleep(TTL / 5)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_a_silent_node_expires_and_a_heartbeating_one_stays(
    hubs: Hubs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    silent = HubClient(session, url, SECRET, identity_for("silent"))
    beating = HubClient(session, url, SECRET, identity_for("beating"))
    await silent.register(REG)
    await beating.register(REG)
    await silent.heartbeat()  # answered from memory: the node is still live
    await _beating(beating, 2.5 * TTL)
    with pytest.raises(UnknownNode):
        await silent.heartbeat()  # silent for over its TTL: must register again
    await beating.heartbeat()
    # the database, which health counts from, got the heartbeats (not only the register)
    assert await _health(session, url) == 1
    assert [p.node_id for p in await beating.peers()] == []
    await silent.register(REG)
    assert [p.node_id for p in await beating.peers()] == [nid("silent")]


async def test_replicas_see_each_others_nodes_live(
    hubs: Hubs, session: aiohttp.ClientSession, pg_url: str
) -> None:
    first, second = await hubs.start(pg_url), await hubs.start(pg_url)
    a = HubClient(session, first, SECRET, identity_for("node-a"))
    b = HubClient(session, second, SECRET, identity_for("node-b"))
    await a.register(REG)
    await b.register(REG)
    async with asyncio.TaskGroup() as tg:  # each heartbeats only to its own replica
        tg.create_task(_beating(a, 2.5 * TTL))
        tg.create_task(_beating(b, 2.5 * TTL))
    assert [p.node_id for p in await b.peers()] == [nid("node-a")]
    assert [p.node_id for p in await a.peers()] == [nid("node-b")]
    assert await _health(session, first) == await _health(session, second) == 2
    # a fails over: the other replica, which never saw its heartbeats, knows it is live
    a_elsewhere = HubClient(session, second, SECRET, identity_for("node-a"))
    await a_elsewhere.heartbeat()


async def test_metrics_count_the_writes(
    hubs: Hubs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    client = HubClient(session, url, SECRET, identity_for("node-a"))
    await client.register(REG)
    await client.heartbeat()

    async def counted() -> bool:
        async with session.get(url + "/metrics") as resp:
            lines = (await resp.text()).splitlines()
        counts = {
            line.split(" ")[0]: float(line.split(" ")[1]) for line in lines if "_count{" in line
        }
        wanted = [
            'swarmget_hub_write_batch_size_count{kind="liveness"}',
            'swarmget_hub_write_batch_size_count{kind="nonces"}',
            'swarmget_hub_write_wait_seconds_count{kind="nonces"}',
            'swarmget_hub_write_transaction_seconds_count{kind="liveness"}',
            'swarmget_hub_write_transaction_seconds_count{kind="register"}',
        ]
        return all(counts.get(name, 0) >= 1 for name in wanted)

    await _until(counted)


async def test_memory_follows_the_registry() -> None:
    """With the in-memory registry: heartbeats move memory only until a flush writes them;
    a node the registry lost is dropped at the flush, and its next heartbeat is refused."""
    store = MemoryRegistryStore()
    record = NodeRecord(
        node_id=nid("a"), address="10.0.0.1", port=1, url="http://10.0.0.1:1",
        version="1", slots=1, group="10.0.0.0/16",
    )  # fmt: skip
    await store.upsert_node(record, now=100.0)
    liveness = Liveness(store)
    liveness.saw(nid("a"), 100.0, {}, "g")
    assert await liveness.heartbeat(nid("a"), {"bytes_served": 5}, 101.0, TTL)
    [before] = await store.live_nodes(101.0, TTL)
    assert before.last_seen == 100.0  # not written yet
    assert await liveness.flush(101.5, TTL) == 1
    [after] = await store.live_nodes(101.5, TTL)
    assert (after.last_seen, dict(after.stats)) == (101.0, {"bytes_served": 5})
    await store.remove(nid("a"))  # e.g. it left through another replica
    assert await liveness.heartbeat(nid("a"), {}, 102.0, TTL)  # memory still has it
    await liveness.flush(102.0, TTL)
    assert len(liveness) == 0
    assert not await liveness.heartbeat(nid("a"), {}, 102.5, TTL)  # the registry decides
