"""A node stays registered when its hub is strained (issue #17): a failed or slow heartbeat
never makes it register again (only a 404 does), Retry-After and the hub's heartbeat
interval are honoured, and bounded.

The hub is a scripted aiohttp server on 127.0.0.3 answering each call as the test says (no
signature check: the client's side is under test); waits come from the answers, small."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.errors import HubUnavailable
from swarmget.net.hub_client import MAX_HUB_WAIT, HubClient, HubPool, Registration
from swarmget.net.membership import MembershipState, run_membership
from swarmget.testing.fakes import identity_of, nid

SECRET = b"membership-strain-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=4)
HOST = "127.0.0.3"

Reply = Callable[[], web.StreamResponse]


def ok(interval: float) -> web.Response:
    return web.json_response({"ok": True, "ttl": 3 * interval, "heartbeat_interval": interval})


def overloaded(seconds: int) -> web.Response:
    body = {"error": "the hub is overloaded", "code": "overloaded"}
    return web.json_response(body, status=503, headers={"Retry-After": str(seconds)})


@dataclass
class ScriptedHub:
    """Answers heartbeats from ``script`` in order (None: hang); counts registrations."""

    script: list[web.Response | None]
    url: str = ""
    registrations: int = 0
    heartbeats: int = 0
    interval: float = 1.0
    hanging: list[asyncio.Event] = field(default_factory=list)

    async def register(self, request: web.Request) -> web.Response:
        self.registrations += 1
        node_id = json.loads(await request.read())["node_id"]
        return web.json_response(
            {
                "node_id": node_id,
                "address": HOST,
                "group": "127.0.0.0/16",
                "url": f"http://{HOST}:7500",
                "ttl": 3 * self.interval,
                "heartbeat_interval": self.interval,
            }
        )

    async def heartbeat(self, request: web.Request) -> web.StreamResponse:
        self.heartbeats += 1
        reply = self.script.pop(0) if self.script else ok(self.interval)
        if reply is None:
            gate = asyncio.Event()
            self.hanging.append(gate)
            await gate.wait()  # until the test ends
            return ok(self.interval)
        return reply


async def _serve(stack: AsyncExitStack, hub: ScriptedHub) -> ScriptedHub:
    app = web.Application()
    app.router.add_post("/v1/nodes/register", hub.register)
    app.router.add_post("/v1/nodes/{node_id}/heartbeat", hub.heartbeat)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    stack.callback(lambda: [gate.set() for gate in hub.hanging])
    await web.TCPSite(runner, HOST, 0).start()
    port = runner.addresses[0][1]
    hub.url = f"http://{HOST}:{port}"
    return hub


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as opened:
        yield opened


async def _states_until(
    client: HubClient | HubPool, count: int, limit: float = 20.0
) -> list[MembershipState]:
    """Run the membership loop until it reported ``count`` states; then stop it."""
    states: list[MembershipState] = []
    done = asyncio.Event()

    def heard(state: MembershipState) -> None:
        states.append(state)
        if len(states) >= count:
            done.set()

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(
            run_membership(
                client, REG, dict, backoff_initial=0.02, backoff_max=0.05,
                leave_timeout=0.1, on_state=heard,
            )
        )  # fmt: skip
        try:
            async with asyncio.timeout(limit):
                await done.wait()
        finally:
            task.cancel()
    return states[:count]


async def test_shed_and_slow_heartbeats_keep_the_registration(stack: AsyncExitStack) -> None:
    hub = await _serve(stack, ScriptedHub(script=[overloaded(1), None, ok(1.0), ok(1e6)]))
    session = await stack.enter_async_context(aiohttp.ClientSession())
    client = HubClient(session, hub.url, SECRET, identity_of(nid("node-a")), timeout=0.3)
    states = await _states_until(client, 5)
    registered, shed, timed_out, fine, huge = states
    assert registered.next_in == 1.0  # the hub's interval
    assert shed.registered is not None
    assert shed.error is not None
    assert shed.next_in is not None
    assert 1.0 <= shed.next_in <= 1.5  # Retry-After, plus up to half of it
    assert timed_out.registered is not None
    assert timed_out.failures == 2
    assert fine.error is None
    assert fine.failures == 0
    assert huge.next_in == MAX_HUB_WAIT  # a hub cannot park a node for ever
    assert (hub.registrations, hub.heartbeats) == (1, 4)


async def test_an_unknown_node_registers_again(stack: AsyncExitStack) -> None:
    gone = web.json_response({"error": "who?", "code": "unknown_node"}, status=404)
    hub = await _serve(stack, ScriptedHub(script=[gone]))
    session = await stack.enter_async_context(aiohttp.ClientSession())
    client = HubClient(session, hub.url, SECRET, identity_of(nid("node-a")))
    states = await _states_until(client, 3)
    assert states[1].registered is None
    assert states[1].next_in == 0.0
    assert hub.registrations == 2


async def test_retry_after_is_read_and_bounded(stack: AsyncExitStack) -> None:
    hub = await _serve(stack, ScriptedHub(script=[overloaded(3), overloaded(100_000)]))
    session = await stack.enter_async_context(aiohttp.ClientSession())
    client = HubClient(session, hub.url, SECRET, identity_of(nid("node-a")))
    await client.register(REG)
    for expected in (3.0, MAX_HUB_WAIT):
        with pytest.raises(HubUnavailable) as info:
            await client.heartbeat()
        assert info.value.retry_after == expected
        assert info.value.status == 503


async def test_a_pool_stays_with_an_overloaded_hub(stack: AsyncExitStack) -> None:
    """An overloaded replica is not left: the others share its load (a dead one is)."""
    a = await _serve(stack, ScriptedHub(script=[overloaded(2)]))
    b = await _serve(stack, ScriptedHub(script=[]))
    session = await stack.enter_async_context(aiohttp.ClientSession())
    pool = HubPool(session, [a.url, b.url], SECRET, identity_of(nid("node-a")))
    await pool.register(REG)
    with pytest.raises(HubUnavailable) as info:
        await pool.heartbeat()
    assert type(info.value) is HubUnavailable
    assert pool.hub_url == a.url
    answer: Any = await pool.heartbeat()
    assert answer.heartbeat_interval == 1.0


async def test_a_spread_pool_shares_the_replicas(stack: AsyncExitStack) -> None:
    """With ``spread`` nodes start on the replica their id picks (the same every run), not
    all on the first; without it, on the first."""
    hubs = [await _serve(stack, ScriptedHub(script=[])) for _ in range(3)]
    urls = [hub.url for hub in hubs]
    session = await stack.enter_async_context(aiohttp.ClientSession())
    names = [f"node-{i}" for i in range(30)]
    for name in names:
        pool = HubPool(session, urls, SECRET, identity_of(nid(name)), spread=True)
        await pool.register(REG)
        again = HubPool(session, urls, SECRET, identity_of(nid(name)), spread=True)
        assert again.hub_url == pool.hub_url
    assert sum(hub.registrations for hub in hubs) == len(names)
    assert all(hub.registrations >= 3 for hub in hubs)  # 30 nodes over 3 replicas
    plain = HubPool(session, urls, SECRET, identity_of(nid("node-0")))
    assert plain.hub_url == urls[0]
