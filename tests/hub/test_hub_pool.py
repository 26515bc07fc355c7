"""``HubPool``: one node, several hubs sharing one registry, failover when a hub dies.

The hubs are real aiohttp servers on 127.0.0.1 sharing one in-memory store (as replicated
hubs share one database); "killing" a hub stops its server, so its port refuses
connections. A dead URL is a port that was bound and released.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from swarmget.cli import parse_hub_urls
from swarmget.core.errors import HubRejected, HubUnavailable, InvalidURL, StorageError, UnknownNode
from swarmget.hub.app import make_hub_app
from swarmget.hub.store import NodeRecord
from swarmget.net.hub_client import HubPool, HubSwitched, Registration
from swarmget.net.membership import MembershipState, run_membership
from swarmget.node.daemon import NodeConfig
from swarmget.testing.fakes import MemoryRegistryStore, identity_of, nid

SECRET = b"pool-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)


class _DownStore(MemoryRegistryStore):
    """A registry whose database is down: every write fails (the hub answers 503)."""

    async def upsert_node(self, record: NodeRecord, now: float) -> NodeRecord:
        raise StorageError("database down")


@dataclass
class Hub:
    url: str
    runner: web.AppRunner

    async def kill(self) -> None:
        await self.runner.cleanup()


@dataclass
class Hubs:
    stack: AsyncExitStack
    session: aiohttp.ClientSession
    store: MemoryRegistryStore = field(default_factory=MemoryRegistryStore)

    async def start(
        self, *, store: MemoryRegistryStore | None = None, secret: bytes = SECRET
    ) -> Hub:
        shared = store or self.store  # replicas share the registry and the seen nonces
        app = make_hub_app(shared, secret, ttl=15.0, nonces=shared)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return Hub(f"http://{host}:{port}", runner)

    def pool(self, node_id: str, *urls: str) -> HubPool:
        return HubPool(self.session, urls, SECRET, identity_of(node_id), timeout=2.0)

    def known(self) -> set[str]:
        return set(self.store._nodes)


@pytest.fixture
async def hubs() -> AsyncIterator[Hubs]:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Hubs(stack, session)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_register_skips_a_dead_hub_and_stays_with_the_one_that_answered(
    hubs: Hubs,
) -> None:
    a, b = await hubs.start(), await hubs.start()
    pool = hubs.pool(nid("node-a"), dead_url(), a.url, b.url)
    await pool.register(REG)
    assert pool.hub_url == a.url
    await pool.heartbeat({"n": 1})
    assert await pool.peers() == []
    assert hubs.known() == {nid("node-a")}


async def test_a_node_registered_through_one_hub_is_listed_by_the_other(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    helper = hubs.pool(nid("helper"), a.url, b.url)
    requester = hubs.pool(nid("requester"), b.url, a.url)
    await helper.register(REG)
    await requester.register(REG)
    assert (helper.hub_url, requester.hub_url) == (a.url, b.url)
    assert [p.node_id for p in await requester.peers()] == [nid("helper")]


async def test_a_failed_heartbeat_moves_to_a_replica_that_knows_the_node(hubs: Hubs) -> None:
    """Replicas share the registry: the node moves with one heartbeat, no registration."""
    a, b = await hubs.start(), await hubs.start()
    pool = hubs.pool(nid("node-a"), a.url, b.url)
    await pool.register(REG)
    registered = hubs.store._nodes[nid("node-a")].registered_at
    await a.kill()
    await pool.heartbeat()  # answered by b
    assert pool.hub_url == b.url
    assert hubs.store._nodes[nid("node-a")].registered_at == registered  # not registered again
    await pool.heartbeat()


async def test_a_failed_heartbeat_asks_to_register_at_a_hub_that_does_not_know(
    hubs: Hubs,
) -> None:
    """A fallback hub with its own registry answers the moved heartbeat 404: register."""
    a, b = await hubs.start(), await hubs.start(store=MemoryRegistryStore())
    pool = hubs.pool(nid("node-a"), a.url, b.url)
    await pool.register(REG)
    await a.kill()
    with pytest.raises(HubSwitched, match=b.url) as info:
        await pool.heartbeat()
    assert isinstance(info.value, UnknownNode)  # "register again", for run_membership
    assert isinstance(info.value.__cause__, UnknownNode)
    assert pool.hub_url == b.url
    await pool.register(REG)
    await pool.heartbeat()


async def test_peers_fail_over_then_the_heartbeat_follows(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    helper = hubs.pool(nid("helper"), b.url)
    await helper.register(REG)
    pool = hubs.pool(nid("node-a"), a.url, b.url)
    await pool.register(REG)
    await a.kill()
    assert [p.node_id for p in await pool.peers()] == [nid("helper")]  # answered by b
    assert pool.hub_url == b.url
    await pool.heartbeat()  # registered through a; b shares the registry and knows it
    assert pool.hub_url == b.url


async def test_the_pool_does_not_move_back_by_itself(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    pool = hubs.pool(nid("node-a"), dead_url(), a.url, b.url)
    await pool.register(REG)
    await pool.peers()
    await pool.register(REG)
    assert pool.hub_url == a.url


async def test_concurrent_failures_move_the_pool_once(hubs: Hubs) -> None:
    a, b, c = await hubs.start(), await hubs.start(), await hubs.start()
    pool = hubs.pool(nid("node-a"), a.url, b.url, c.url)
    await pool.register(REG)
    await a.kill()
    await asyncio.gather(pool.peers(), pool.peers(), pool.peers())
    assert pool.hub_url == b.url


async def test_a_hub_whose_database_is_down_is_skipped(hubs: Hubs) -> None:
    broken = await hubs.start(store=_DownStore())
    good = await hubs.start()
    pool = hubs.pool(nid("node-a"), broken.url, good.url)
    await pool.register(REG)
    assert pool.hub_url == good.url


async def test_when_no_hub_answers_the_last_failure_is_raised(hubs: Hubs) -> None:
    pool = hubs.pool(nid("node-a"), dead_url(), dead_url())
    with pytest.raises(HubUnavailable):
        await pool.register(REG)
    with pytest.raises(HubUnavailable):
        await pool.peers()


async def test_rejections_and_unknown_node_do_not_fail_over(hubs: Hubs) -> None:
    other_swarm = await hubs.start(secret=b"another-secret-0123456789")
    a = await hubs.start()
    pool = hubs.pool(nid("node-a"), other_swarm.url, a.url)
    with pytest.raises(HubRejected):
        await pool.register(REG)  # our configuration is wrong: retrying elsewhere hides it
    assert pool.hub_url == other_swarm.url

    pool = hubs.pool(nid("node-b"), a.url, dead_url())
    with pytest.raises(UnknownNode) as info:
        await pool.peers()
    assert not isinstance(info.value, HubSwitched)
    assert pool.hub_url == a.url


async def test_a_pool_of_one_hub_behaves_like_its_client(hubs: Hubs) -> None:
    a = await hubs.start()
    pool = hubs.pool(nid("node-a"), a.url)
    await pool.register(REG)
    await a.kill()
    with pytest.raises(HubUnavailable) as info:
        await pool.heartbeat()
    assert not isinstance(info.value, HubSwitched)
    assert pool.hub_url == a.url


async def test_a_pool_needs_a_hub(hubs: Hubs) -> None:
    with pytest.raises(ValueError, match="at least one"):
        HubPool(hubs.session, [], SECRET, identity_of(nid("node-a")))


# --- membership through a pool --------------------------------------------------------------


async def _run_member(
    pool: HubPool, states: list[MembershipState], until: Callable[[], Awaitable[None]]
) -> None:
    async with asyncio.TaskGroup() as tg:
        member = tg.create_task(
            run_membership(
                pool,
                REG,
                dict,
                interval=0.05,
                backoff_initial=0.05,
                backoff_max=0.2,
                on_state=states.append,
            )
        )
        await until()
        member.cancel()


async def test_membership_fails_over_to_the_next_hub_at_once(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    pool = hubs.pool(nid("node-a"), a.url, b.url)
    states: list[MembershipState] = []

    async def scenario() -> None:
        await _until(lambda: bool(states) and states[-1].registered is not None)
        assert states[-1].hub_url == a.url
        registered = hubs.store._nodes[nid("node-a")].registered_at
        await a.kill()
        killed_at = len(states)
        await _until(lambda: states[-1].hub_url == b.url and states[-1].registered is not None)
        assert all(s.failures == 0 for s in states[killed_at:])  # no back-off on the way
        assert hubs.known() == {nid("node-a")}
        # b shares the registry: the node moved with a heartbeat, not a registration
        assert hubs.store._nodes[nid("node-a")].registered_at == registered

    await _run_member(pool, states, scenario)
    assert hubs.known() == set()  # left through b when cancelled


async def test_membership_backs_off_when_no_hub_answers(hubs: Hubs) -> None:
    pool = hubs.pool(nid("node-a"), dead_url(), dead_url())
    states: list[MembershipState] = []

    async def three_failures() -> None:
        await _until(lambda: len(states) >= 3)

    await _run_member(pool, states, three_failures)
    assert [s.failures for s in states[:3]] == [1, 2, 3]
    assert all(s.registered is None for s in states)


# --- configuration --------------------------------------------------------------------------


def test_hub_lists_from_the_command_line() -> None:
    given = ("http://a:7400", "http://b:7400/, http://c:7400", "http://a:7400", " ")
    assert parse_hub_urls(given) == ("http://a:7400", "http://b:7400", "http://c:7400")
    assert parse_hub_urls(()) == ()
    with pytest.raises(InvalidURL):
        parse_hub_urls(("http://a:7400,ftp://b",))


def test_node_config_keeps_hub_url_working(tmp_path: Path) -> None:
    config = NodeConfig(secret=SECRET, state_dir=tmp_path, download_dir=tmp_path)
    assert config.hubs() == ()
    assert dataclasses.replace(config, hub_url="http://a:1/").hubs() == ("http://a:1",)
    both = dataclasses.replace(config, hub_url="http://a:1", hub_urls=("http://b:2", "http://a:1"))
    assert both.hubs() == ("http://a:1", "http://b:2")
