"""Expiries are logged and counted when they happen (issue #16, "the hub logs registrations,
expiries ..."): a node that stops heartbeating is named in the hub's log and counted in
``swarmget_hub_expiries_total`` once its TTL ran out, by the hub's own sweep, with no other
request needed; a node that left is not an expiry; the store's window query on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.identity import NodeIdentity
from swarmget.hub.service import RunningHub, open_hub
from swarmget.hub.store import NodeRecord, open_registry_store
from swarmget.net.hub_client import HubClient, Registration

SECRET = b"expiry-sweep-test-secret-0123456"
REG = Registration(port=7500, version="0.1.0", slots=4)
TTL = 0.9


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    db = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    async with open_hub(host="127.0.0.1", port=0, db_url=db, secret=SECRET, ttl=TTL) as h:
        yield h


async def _expiries(session: aiohttp.ClientSession, hub: RunningHub) -> float:
    async with session.get(f"{hub.url}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("swarmget_hub_expiries_total "):
                return float(line.split()[1])
    raise AssertionError("no swarmget_hub_expiries_total")


async def test_a_silent_node_is_logged_and_counted_when_its_ttl_runs_out(
    hub: RunningHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="swarmget.hub.app")
    async with aiohttp.ClientSession() as session:
        silent = HubClient(session, hub.url, SECRET, NodeIdentity.generate())
        leaving = HubClient(session, hub.url, SECRET, NodeIdentity.generate())
        await silent.register(REG)
        await leaving.register(REG)
        await leaving.leave()  # a departure, never an expiry
        async with asyncio.timeout(10):
            while await _expiries(session, hub) < 1:
                await asyncio.sleep(0.1)
        await asyncio.sleep(TTL)  # a few more sweeps: nothing is counted twice
        assert await _expiries(session, hub) == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("expired ")]
    assert len(lines) == 1
    assert silent.node_id in lines[0]
    assert leaving.node_id not in lines[0]


def _node(node_id: str, seen: float) -> NodeRecord:
    return NodeRecord(
        node_id=node_id, address="10.0.0.1", port=7401, group="g", url="http://10.0.0.1:7401",
        version="0.1.0", slots=2, last_seen=seen,
    )  # fmt: skip


async def test_the_store_names_the_nodes_that_fell_silent_in_a_window(tmp_path: Path) -> None:
    async with open_registry_store(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}") as store:
        for i, seen in enumerate((100.0, 105.0, 110.0, 120.0)):
            await store.upsert_node(_node(f"n{i}", seen), seen)
        assert await store.fell_silent(100.0, 120.0, limit=10) == ["n2", "n1", "n0"]
        assert await store.fell_silent(101.0, 111.0, limit=1) == ["n2"]  # newest first
        assert await store.fell_silent(121.0, 130.0, limit=10) == []
