"""A peers answer lists at most ``peers_limit`` members and says how many there are; one
group's read of the registry is shared for a second (issue #17). A real hub app on
127.0.0.1, signed clients on 127.0.x.y, the hub's clock moved by the test."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pydantic
import pytest
from aiohttp import web

from swarmget.config import HubSettings
from swarmget.defaults import DEFAULT_PEERS_LIMIT
from swarmget.hub.app import make_hub_app
from swarmget.hub.store import NodeRecord
from swarmget.net.auth import signed_headers
from swarmget.net.hub_client import HubClient, Registration
from swarmget.protocol.hub import MAX_PEERS_PER_ANSWER, PeersAnswer
from swarmget.testing.fakes import MemoryRegistryStore, identity_of, nid

SECRET = b"hub-peers-limit-secret-0123456789"
T0 = 1_700_000_000.0
REG = Registration(port=7500, version="0.1.0", slots=4)


class CountingStore(MemoryRegistryStore):
    """Counts the group reads the hub makes."""

    def __init__(self) -> None:
        super().__init__()
        self.group_reads = 0

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        self.group_reads += 1
        return await super().live_in_group(group, now, ttl)


@dataclass
class Hub:
    url: str
    store: CountingStore
    stack: AsyncExitStack
    now: float = T0
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    def clock(self) -> float:
        return self.now

    def client(self, name: str, ip: str) -> HubClient:
        if ip not in self.sessions:
            connector = aiohttp.TCPConnector(local_addr=(ip, 0))
            self.sessions[ip] = aiohttp.ClientSession(connector=connector)
            self.stack.push_async_callback(self.sessions[ip].close)
        return HubClient(
            self.sessions[ip], self.url, SECRET, identity_of(nid(name)), clock=self.clock
        )

    async def answer(self, name: str, ip: str) -> PeersAnswer:
        """The raw ``GET /v1/peers`` answer (the client keeps only the entries)."""
        url = self.url + "/v1/peers"
        headers = signed_headers(SECRET, identity_of(nid(name)), "GET", url, now=self.now)
        async with self.sessions[ip].get(url, headers=headers) as resp:
            assert resp.status == 200
            return PeersAnswer.model_validate_json(await resp.read())


async def _hub(stack: AsyncExitStack, **options: object) -> Hub:
    hub = Hub(url="", store=CountingStore(), stack=stack)
    app = make_hub_app(hub.store, SECRET, clock=hub.clock, rng=random.Random(3), **options)  # type: ignore[arg-type]
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    hub.url = f"http://{host}:{port}"
    return hub


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as opened:
        yield opened


async def _register_group(hub: Hub, count: int) -> None:
    """``count`` nodes n-00 … of group 127.0.0.0/16, 4 per address 127.0.4.x."""
    for i in range(count):
        await hub.client(f"n-{i:02d}", f"127.0.4.{i // 4 + 1}").register(REG)


async def test_an_answer_lists_at_most_the_limit_and_the_total(stack: AsyncExitStack) -> None:
    hub = await _hub(stack, peers_limit=5)
    await _register_group(hub, 12)
    answer = await hub.answer("n-00", "127.0.4.1")
    assert len(answer.peers) == 5
    assert answer.total == 11  # everyone of the group but the asker
    listed = await hub.client("n-00", "127.0.4.1").peers()
    assert len(listed) == 5
    assert nid("n-00") not in {p.node_id for p in listed}


async def test_the_default_limit_is_32(stack: AsyncExitStack) -> None:
    hub = await _hub(stack)
    await _register_group(hub, 40)
    answer = await hub.answer("n-00", "127.0.4.1")
    assert (len(answer.peers), answer.total) == (DEFAULT_PEERS_LIMIT, 39) == (32, 39)


async def test_a_group_read_is_shared_for_a_second(stack: AsyncExitStack) -> None:
    hub = await _hub(stack)
    await _register_group(hub, 3)
    for name in ("n-00", "n-01", "n-02"):
        await hub.answer(name, "127.0.4.1")
    assert hub.store.group_reads == 1
    # a node registered through another replica (straight into the shared registry)
    await hub.store.upsert_node(_record("late", "127.0.0.0/16"), hub.now)
    assert (await hub.answer("n-00", "127.0.4.1")).total == 2  # not read again yet
    hub.now += 1.0  # a second old: still answered from at once, while it is read again
    assert (await hub.answer("n-00", "127.0.4.1")).total == 2
    async with asyncio.timeout(5):
        while hub.store.group_reads < 2:
            await asyncio.sleep(0.01)
    assert (await hub.answer("n-00", "127.0.4.1")).total == 3
    assert hub.store.group_reads == 2
    hub.now += 10.0  # too old to answer from: the asker waits for a read
    await hub.store.upsert_node(_record("later", "127.0.0.0/16"), hub.now)
    assert (await hub.answer("n-00", "127.0.4.1")).total == 4
    assert hub.store.group_reads == 3


async def test_joining_and_leaving_through_this_hub_show_at_once(stack: AsyncExitStack) -> None:
    hub = await _hub(stack)
    await _register_group(hub, 3)
    assert (await hub.answer("n-00", "127.0.4.1")).total == 2
    await hub.client("late", "127.0.4.2").register(REG)
    assert (await hub.answer("n-00", "127.0.4.1")).total == 3
    await hub.client("late", "127.0.4.2").leave()
    await hub.client("n-01", "127.0.4.1").leave()
    assert (await hub.answer("n-00", "127.0.4.1")).total == 1


def _record(name: str, group: str) -> NodeRecord:
    return NodeRecord(
        node_id=nid(name),
        address="127.0.9.1",
        port=7500,
        url="http://127.0.9.1:7500",
        version="0.1.0",
        slots=4,
        group=group,
    )


async def test_no_cache_reads_every_time(stack: AsyncExitStack) -> None:
    hub = await _hub(stack, group_max_age=0.0)
    await _register_group(hub, 2)
    await hub.answer("n-00", "127.0.4.1")
    await hub.answer("n-01", "127.0.4.1")
    assert hub.store.group_reads == 2


@pytest.mark.parametrize("limit", [0, MAX_PEERS_PER_ANSWER + 1])
def test_a_limit_out_of_bounds_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="peers_limit must be 1-64"):
        make_hub_app(MemoryRegistryStore(), SECRET, peers_limit=limit)
    with pytest.raises(pydantic.ValidationError, match="peers_limit"):
        HubSettings(peers_limit=limit)


def test_the_hub_process_refuses_a_bad_limit(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    db = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    args = ["--host", "127.0.0.1", "--port", "0", "--db", db, "--secret-file", str(secret)]
    done = subprocess.run(
        [sys.executable, "-m", "swarmget.hub", *args, "--peers-limit", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "peers_limit must be 1-64" in done.stderr
