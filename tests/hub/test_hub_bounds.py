"""What members send the hub is validated and bounded (issue #12): a real hub on 127.0.0.1,
signed clients on 127.0.x.y sending malformed or bloated registrations and heartbeats, and
thousands of registrations. The hub's clock is a field the test moves; nothing sleeps."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.errors import HubUnavailable
from swarmget.hub.app import DEFAULT_PEERS_LIMIT, MAX_NODES_PER_ADDRESS, make_hub_app
from swarmget.net.auth import json_body, signed_headers
from swarmget.net.hub_client import HubClient, Registration
from swarmget.testing.fakes import MemoryRegistryStore, identity_of, nid

SECRET = b"hub-bounds-secret-0123456789"
T0 = 1_700_000_000.0
TTL = 15.0
REG = Registration(port=7500, version="0.1.0", slots=4)
#: A whole answer of DEFAULT_PEERS_LIMIT peers with full stats stays well under this.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass
class Hub:
    url: str
    store: MemoryRegistryStore
    now: float = T0

    def clock(self) -> float:
        return self.now


@dataclass
class Members:
    """Signed clients of one hub from many loopback addresses; all closed at the end."""

    stack: AsyncExitStack
    hub: Hub
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    def session(self, ip: str) -> aiohttp.ClientSession:
        if ip not in self.sessions:
            connector = aiohttp.TCPConnector(local_addr=(ip, 0), limit=4)
            self.sessions[ip] = aiohttp.ClientSession(connector=connector)
            self.stack.push_async_callback(self.sessions[ip].close)
        return self.sessions[ip]

    def client(self, node_id: str, ip: str = "127.0.0.2") -> HubClient:
        return HubClient(
            self.session(ip), self.hub.url, SECRET, identity_of(node_id), clock=self.hub.clock
        )

    async def raw(
        self, method: str, path: str, payload: Any, *, node_id: str, ip: str = "127.0.0.2"
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """A hand-made signed request (any JSON body, however wrong)."""
        url = self.hub.url + path
        body = b"" if payload is None else json_body(payload)
        headers = signed_headers(SECRET, identity_of(node_id), method, url, body, now=self.hub.now)
        headers["Content-Type"] = "application/json"
        async with self.session(ip).request(method, url, data=body, headers=headers) as resp:
            return resp.status, json.loads(await resp.read()), dict(resp.headers)

    async def peers_answer(self, node_id: str, ip: str) -> tuple[int, dict[str, Any]]:
        """``GET /v1/peers`` as raw bytes: (size of the body, parsed body)."""
        url = self.hub.url + "/v1/peers"
        headers = signed_headers(SECRET, identity_of(node_id), "GET", url, b"", now=self.hub.now)
        async with self.session(ip).get(url, headers=headers) as resp:
            assert resp.status == 200
            body = await resp.read()
        return len(body), json.loads(body)


@pytest.fixture
async def members() -> AsyncIterator[Members]:
    async with AsyncExitStack() as stack:
        hub = Hub(url="", store=MemoryRegistryStore())
        # heartbeats written through: these tests read the store right after one
        app = make_hub_app(
            hub.store,
            SECRET,
            ttl=TTL,
            clock=hub.clock,
            rng=random.Random(7),
            liveness_in_memory=False,
        )
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        hub.url = f"http://{host}:{port}"
        yield Members(stack, hub)


# --- malformed heartbeats and registrations ------------------------------------------------


@pytest.mark.parametrize(
    "stats",
    [
        {"bytes_served": "x"},
        {"bytes_served": -1},
        {"bytes_served": 2**64},
        {"bytes_served": 1.5},
        {"streams_served": True},
        {"slots": 10**6},
        {"active_streams": [1, 2]},
        {"quota_left": {"left": 1}},
        {"rate_limit": "fast"},
        {"version": "1.0 with spaces"},
    ],
)
async def test_a_malformed_heartbeat_is_400_and_changes_nothing(
    members: Members, stats: dict[str, Any]
) -> None:
    await members.client(nid("node-b"), "127.0.0.3").register(REG)
    await members.client(nid("node-b"), "127.0.0.3").heartbeat({"bytes_served": 10})
    members.hub.now = T0 + 5
    path = f"/v1/nodes/{nid('node-b')}/heartbeat"
    status, answer, _ = await members.raw(
        "POST", path, {"stats": stats}, node_id=nid("node-b"), ip="127.0.0.3"
    )
    assert (status, answer["code"]) == (400, "bad_request")
    assert answer["error"].startswith("stats.")  # names the field at fault
    [record] = await members.hub.store.live_nodes(members.hub.now, TTL)
    assert (dict(record.stats), record.last_seen) == ({"bytes_served": 10}, T0)


async def test_a_heartbeat_body_over_the_cap_is_413(members: Members) -> None:
    await members.client(nid("node-b")).register(REG)
    stats = {"padding": "x" * 5000}
    status, answer, _ = await members.raw(
        "POST", f"/v1/nodes/{nid('node-b')}/heartbeat", {"stats": stats}, node_id=nid("node-b")
    )
    assert (status, answer["code"]) == (413, "too_large")
    [record] = await members.hub.store.live_nodes(T0, TTL)
    assert dict(record.stats) == {}


async def test_only_whitelisted_stats_are_kept_and_listed(members: Members) -> None:
    b = members.client(nid("node-b"), "127.0.0.3")
    await b.register(REG)
    bloat = {f"junk-{i:02d}": "y" * 40 for i in range(60)}  # ~3.6 KiB: under the body cap
    await b.heartbeat({"bytes_served": 7, "version": "0.1.0", **bloat})
    [record] = await members.hub.store.live_nodes(T0, TTL)
    assert dict(record.stats) == {"bytes_served": 7, "version": "0.1.0"}
    await members.client(nid("node-a"), "127.0.0.2").register(REG)
    [peer] = await members.client(nid("node-a"), "127.0.0.2").peers()
    assert peer.stats.as_json() == {"bytes_served": 7, "version": "0.1.0"}


async def test_stats_stored_before_validation_are_not_listed(members: Members) -> None:
    """A registry written by an older hub may hold anything in stats: it is never listed."""
    await members.client(nid("node-b"), "127.0.0.3").register(REG)
    await members.hub.store.heartbeat(nid("node-b"), {"bytes_served": "x", "big": "z" * 10**6}, T0)
    await members.client(nid("node-a"), "127.0.0.2").register(REG)
    size, answer = await members.peers_answer(nid("node-a"), "127.0.0.2")
    assert [p["stats"] for p in answer["peers"]] == [{}]
    assert size < 2048


@pytest.mark.parametrize(
    "change",
    [
        {"port": "7500"},
        {"slots": True},
        {"slots": 4.0},
        {"wan_rate": 2**64},
        {"quota_left": -5},
        {"version": "x" * 65},
        {"version": "[/bold]"},  # rich markup: `swarmget peers` would fail on every node
    ],
)
async def test_a_registration_with_wrong_types_or_bounds_is_400(
    members: Members, change: dict[str, Any]
) -> None:
    payload = REG.as_json(nid("node-a")) | change
    status, answer, _ = await members.raw(
        "POST", "/v1/nodes/register", payload, node_id=nid("node-a")
    )
    assert (status, answer["code"]) == (400, "bad_request")
    assert await members.hub.store.live_nodes(T0, TTL) == []


# --- how many nodes, how many peers ---------------------------------------------------------


async def test_one_address_registers_a_bounded_number_of_live_nodes(members: Members) -> None:
    for i in range(MAX_NODES_PER_ADDRESS):
        await members.client(nid(f"node-{i}")).register(REG)
    payload = REG.as_json(nid("node-extra"))
    status, answer, headers = await members.raw(
        "POST", "/v1/nodes/register", payload, node_id=nid("node-extra")
    )
    assert (status, answer["code"]) == (429, "too_many_nodes")
    assert int(headers["Retry-After"]) > 0
    with pytest.raises(HubUnavailable) as info:  # a node backs off and registers again later
        await members.client(nid("node-extra")).register(REG)
    assert info.value.status == 429
    # a node already registered may register again; another address is not affected
    await members.client(nid("node-0")).register(REG)
    await members.client(nid("node-elsewhere"), "127.0.0.9").register(REG)
    # once the others expired, there is room again
    members.hub.now = T0 + TTL + 1
    await members.client(nid("node-extra")).register(REG)
    live = await members.hub.store.live_nodes(members.hub.now, TTL)
    assert [r.node_id for r in live] == [nid("node-extra")]


async def test_thousands_of_registrations_give_bounded_answers(members: Members) -> None:
    """2,000 registration attempts from 250 addresses (127.0.1.x): the registry keeps at most
    MAX_NODES_PER_ADDRESS per address, a peer list is capped in count and bytes, and real
    nodes that heartbeat are listed although fake ones outnumber them 100 to 1."""
    accepted = refused = 0
    for i in range(2000):
        ip = f"127.0.1.{i % 250 + 1}"
        try:
            await members.client(nid(f"fake-{i:04d}"), ip).register(REG)
            accepted += 1
        except HubUnavailable:
            refused += 1
    assert accepted == 250 * MAX_NODES_PER_ADDRESS
    assert refused == 2000 - accepted
    for i in range(1, 11):
        await members.client(nid(f"real-{i}"), f"127.0.2.{i}").register(REG)
    members.hub.now = T0 + 11  # the fakes have not been heard of for 11 s: still live
    for i in range(1, 11):
        await members.client(nid(f"real-{i}"), f"127.0.2.{i}").heartbeat({"bytes_served": i})
    size, answer = await members.peers_answer(nid("real-1"), "127.0.2.1")
    listed = [p["node_id"] for p in answer["peers"]]
    assert len(listed) == DEFAULT_PEERS_LIMIT
    assert answer["total"] == accepted + 9  # every other live node of the group
    assert size < MAX_ANSWER_BYTES
    assert {nid(f"real-{i}") for i in range(2, 11)} == set(listed[:9])
    fakes = {nid(f"fake-{i:04d}") for i in range(2000)}
    assert all(node_id in fakes for node_id in listed[9:])


async def test_chosen_helpers_are_listed_however_big_the_group(members: Members) -> None:
    """The user's "only these helpers" are found among more nodes than an answer lists."""
    for i in range(100):
        await members.client(nid(f"n-{i:03d}"), f"127.0.3.{i // 8 + 1}").register(REG)
    asker = members.client(nid("n-000"), "127.0.3.1")
    assert len(await asker.peers()) == DEFAULT_PEERS_LIMIT
    chosen = await asker.peers([nid("n-099"), nid("n-042"), nid("n-000"), nid("not-registered")])
    assert sorted(p.node_id for p in chosen) == sorted([nid("n-042"), nid("n-099")])


@pytest.mark.parametrize("query", ["node=bad%20id", "&".join([f"node={nid('n')}"] * 65)])
async def test_a_bad_choice_of_peers_is_400(members: Members, query: str) -> None:
    await members.client(nid("node-a")).register(REG)
    status, answer, _ = await members.raw("GET", f"/v1/peers?{query}", None, node_id=nid("node-a"))
    assert (status, answer["code"]) == (400, "bad_request")


async def test_the_per_address_cap_is_a_parameter() -> None:
    store = MemoryRegistryStore()
    with pytest.raises(ValueError, match="max_nodes_per_address"):
        make_hub_app(store, SECRET, max_nodes_per_address=0)
    app = make_hub_app(store, SECRET, clock=lambda: T0, max_nodes_per_address=1)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        async with AsyncExitStack() as stack:
            members = Members(
                stack, Hub(url=f"http://127.0.0.1:{runner.addresses[0][1]}", store=store)
            )
            await members.client(nid("first")).register(REG)
            with pytest.raises(HubUnavailable):
                await members.client(nid("second")).register(REG)
    finally:
        await runner.cleanup()
