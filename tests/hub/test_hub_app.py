"""The hub app on a real aiohttp server on 127.0.0.1, driven by signed HubClients.

Clients bind to different loopback addresses (127.0.0.2, 127.0.1.2, ...) so the hub sees
different source IPs. The hub's clock is a field the test moves; nothing sleeps except the
membership tests, which use intervals of a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from swarmget.core.addresses import IPNetwork, parse_cidrs
from swarmget.core.errors import HubRejected, HubUnavailable, StorageError, UnknownNode
from swarmget.core.groups import GroupPolicy
from swarmget.core.replay import DEFAULT_SENDERS_PER_ORIGIN
from swarmget.hub.app import make_hub_app
from swarmget.hub.store import NodeRecord
from swarmget.net.auth import json_body, signed_headers
from swarmget.net.hub_client import HubClient, Registration
from swarmget.net.membership import MembershipState, membership_backoff, run_membership
from swarmget.testing.fakes import MemoryRegistryStore, identity_for, identity_of, nid

SECRET = b"hub-test-secret-0123456789"
T0 = 1_700_000_000.0
TTL = 15.0
REG = Registration(port=7500, version="0.1.0", slots=4)


@dataclass
class Hub:
    url: str
    store: MemoryRegistryStore
    now: float = T0
    real_clock: bool = False

    def clock(self) -> float:
        return time.time() if self.real_clock else self.now


@dataclass
class Swarm:
    """Starts hubs and makes clients; closes everything at the end of the test."""

    stack: AsyncExitStack
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    async def hub(
        self,
        *,
        group_prefix: int = 16,
        trusted_proxies: tuple[IPNetwork, ...] = (),
        store: MemoryRegistryStore | None = None,
        real_clock: bool = False,
        groups: list[str] | None = None,
    ) -> Hub:
        hub = Hub(url="", store=store or MemoryRegistryStore(), real_clock=real_clock)
        app = make_hub_app(
            hub.store,
            SECRET,
            ttl=TTL,
            group_prefix=group_prefix,
            trusted_proxies=trusted_proxies,
            clock=hub.clock,
            group_policy=GroupPolicy.parse(groups or []),
            nonces=hub.store,  # as open_hub does: replicas share nonces in their database
            # written through: these tests jump a fake clock and read the store right after
            # a heartbeat (liveness kept in memory: tests/hub/test_liveness_memory.py)
            liveness_in_memory=False,
        )
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        hub.url = f"http://{host}:{port}"
        return hub

    async def session(self, local_ip: str = "127.0.0.1") -> aiohttp.ClientSession:
        if local_ip not in self.sessions:
            connector = aiohttp.TCPConnector(local_addr=(local_ip, 0))
            s = aiohttp.ClientSession(connector=connector)
            self.stack.push_async_callback(s.close)
            self.sessions[local_ip] = s
        return self.sessions[local_ip]

    async def client(
        self, hub: Hub, node_id: str, local_ip: str = "127.0.0.1", secret: bytes = SECRET
    ) -> HubClient:
        session = await self.session(local_ip)
        return HubClient(
            session, hub.url, secret, identity_of(node_id), timeout=5.0, clock=hub.clock
        )


@pytest.fixture
async def swarm() -> AsyncIterator[Swarm]:
    async with AsyncExitStack() as stack:
        yield Swarm(stack)


async def _raw(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    payload: dict[str, Any] | None = None,
    *,
    node_id: str | None = nid("node-a"),
    headers: dict[str, str] | None = None,
    now: float = T0,
) -> tuple[int, dict[str, Any]]:
    """A hand-made request: signed as ``node_id`` (None: unsigned)."""
    body = json_body(payload) if payload is not None else b""
    all_headers = dict(headers or {})
    if node_id is not None:
        all_headers |= signed_headers(SECRET, identity_of(node_id), method, url, body, now=now)
    async with session.request(method, url, data=body or None, headers=all_headers) as resp:
        return resp.status, json.loads(await resp.read())


# --- register / heartbeat / leave ------------------------------------------------------------


async def test_register_reports_how_the_hub_sees_us(swarm: Swarm) -> None:
    hub = await swarm.hub()
    client = await swarm.client(hub, nid("node-a"), "127.0.0.2")
    registered = await client.register(REG)
    assert registered.node_id == nid("node-a")
    assert registered.address == "127.0.0.2"
    assert registered.group == "127.0.0.0/16"
    assert registered.url == "http://127.0.0.2:7500"
    assert (registered.ttl, registered.heartbeat_interval) == (TTL, TTL / 3)
    [record] = await hub.store.live_nodes(T0, TTL)
    assert (record.node_id, record.slots, record.version) == (nid("node-a"), 4, "0.1.0")
    assert record.registered_at == T0


async def test_claimed_address_is_ignored(swarm: Swarm) -> None:
    hub = await swarm.hub()
    session = await swarm.session("127.0.0.3")
    claim = REG.as_json(nid("node-a")) | {"address": "10.9.9.9", "url": "http://10.9.9.9:1"}
    status, answer = await _raw(session, "POST", hub.url + "/v1/nodes/register", claim)
    assert status == 200
    assert answer["address"] == "127.0.0.3"
    [record] = await hub.store.live_nodes(T0, TTL)
    assert (record.address, record.url) == ("127.0.0.3", "http://127.0.0.3:7500")


async def test_forwarded_for_is_used_only_behind_a_trusted_proxy(swarm: Swarm) -> None:
    xff = {"X-Forwarded-For": "10.1.2.3, 172.16.0.1"}
    session = await swarm.session()
    for trusted, expected in [((), "127.0.0.1"), (parse_cidrs("127.0.0.1"), "172.16.0.1")]:
        hub = await swarm.hub(trusted_proxies=trusted)
        url = hub.url + "/v1/nodes/register"
        status, answer = await _raw(session, "POST", url, REG.as_json(nid("node-a")), headers=xff)
        assert (status, answer["address"]) == (200, expected)


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # a client behind our proxy (127.0.0.1) forges a leftmost hop: the proxy's hop wins
        ("127.0.0.1", ["10.9.9.9, 10.1.2.3"], "10.1.2.3"),
        # two trusted proxies in a row: skip them, the first untrusted one from the right
        ("127.0.0.1", ["10.9.9.9, 10.1.2.3, 127.0.0.4"], "10.1.2.3"),
        # several header lines are one list
        ("127.0.0.1", ["10.9.9.9", "10.1.2.3"], "10.1.2.3"),
        # the connection does not come from a trusted proxy: the header is not read at all
        ("127.0.0.2", ["10.1.2.3"], "127.0.0.2"),
        ("127.0.0.2", ["not an address"], "127.0.0.2"),
    ],
)
async def test_forwarded_for_takes_the_hop_our_proxy_added(
    swarm: Swarm, peer: str, xff: list[str], expected: str
) -> None:
    hub = await swarm.hub(trusted_proxies=parse_cidrs("127.0.0.1, 127.0.0.4"))
    session = await swarm.session(peer)
    body = json_body(REG.as_json(nid("node-a")))
    url = hub.url + "/v1/nodes/register"
    headers = CIMultiDict(
        signed_headers(SECRET, identity_of(nid("node-a")), "POST", url, body, now=T0)
    )
    for value in xff:
        headers.add("X-Forwarded-For", value)
    async with session.post(url, data=body, headers=headers) as resp:
        assert (resp.status, (await resp.json())["address"]) == (200, expected)


async def test_garbage_written_by_a_trusted_proxy_is_refused(swarm: Swarm) -> None:
    hub = await swarm.hub(trusted_proxies=parse_cidrs("127.0.0.1"))
    session = await swarm.session()
    xff = {"X-Forwarded-For": "10.1.2.3, unknown"}
    url = hub.url + "/v1/nodes/register"
    status, answer = await _raw(session, "POST", url, REG.as_json(nid("node-a")), headers=xff)
    assert (status, answer["code"]) == (400, "bad_address")
    assert await hub.store.live_nodes(T0, TTL) == []


async def test_replay_cache_shares_go_by_the_forwarded_address_behind_a_proxy(
    swarm: Swarm,
) -> None:
    """Behind a trusted proxy every node comes from the proxy's address: shares of the
    replay cache go by the address the proxy forwards, so many nodes are not one sender."""
    session = await swarm.session()
    results = {}
    for trust in (False, True):
        hub = await swarm.hub(trusted_proxies=parse_cidrs("127.0.0.1") if trust else ())
        url = hub.url + "/v1/nodes/register"
        statuses = []
        for i in range(DEFAULT_SENDERS_PER_ORIGIN + 1):
            xff = {"X-Forwarded-For": f"10.1.2.{i + 1}"}
            payload = REG.as_json(nid(f"proxied-{i}"))
            status, _ = await _raw(
                session, "POST", url, payload, node_id=nid(f"proxied-{i}"), headers=xff
            )
            statuses.append(status)
        results[trust] = statuses
    assert results[False][-1] == 429  # one address, too many node ids: its own share is full
    assert set(results[True]) == {200}


async def test_heartbeat_keeps_the_node_live_and_stores_stats(swarm: Swarm) -> None:
    hub = await swarm.hub()
    a = await swarm.client(hub, nid("node-a"))
    await a.register(REG)
    hub.now = T0 + 10
    await a.heartbeat({"bytes_served": 1234, "active_streams": 2, "not_a_stat": "x" * 100})
    hub.now = T0 + 20  # 10 s after the heartbeat: still live
    [record] = await hub.store.live_nodes(hub.now, TTL)
    assert record.last_seen == T0 + 10
    # only the whitelisted stats are kept (swarmget.protocol.hub.PeerStats)
    assert dict(record.stats) == {"bytes_served": 1234, "active_streams": 2}


async def test_heartbeat_after_ttl_asks_to_register_again(swarm: Swarm) -> None:
    hub = await swarm.hub()
    a = await swarm.client(hub, nid("node-a"))
    await a.register(REG)
    hub.now = T0 + TTL + 1
    with pytest.raises(UnknownNode) as info:
        await a.heartbeat({})
    assert info.value.status == 404
    await a.register(REG)
    await a.heartbeat({})


async def test_heartbeat_of_a_node_the_hub_never_saw(swarm: Swarm) -> None:
    hub = await swarm.hub()
    with pytest.raises(UnknownNode):
        await (await swarm.client(hub, nid("node-a"))).heartbeat({})


async def test_leave_removes_the_node(swarm: Swarm) -> None:
    hub = await swarm.hub()
    a = await swarm.client(hub, nid("node-a"), "127.0.0.2")
    b = await swarm.client(hub, nid("node-b"), "127.0.0.3")
    await a.register(REG)
    await b.register(REG)
    await b.leave()
    assert await a.peers() == []
    await b.leave()  # leaving twice is harmless


async def test_register_prunes_long_dead_records(swarm: Swarm) -> None:
    hub = await swarm.hub()
    await (await swarm.client(hub, nid("node-old"))).register(REG)
    hub.now = T0 + 21 * TTL
    await (await swarm.client(hub, nid("node-new"))).register(REG)
    assert not await hub.store.heartbeat(nid("node-old"), {}, hub.now)


# --- peers and groups --------------------------------------------------------------------------


async def _register_all(swarm: Swarm, hub: Hub, nodes: dict[str, tuple[str, str | None]]) -> None:
    for node_id, (ip, group) in nodes.items():
        client = await swarm.client(hub, node_id, ip)
        await client.register(Registration(port=7500, version="0.1.0", slots=2, group=group))


async def _peer_ids(swarm: Swarm, hub: Hub, node_id: str, ip: str) -> list[str]:
    """Sorted: the hub lists equally good peers in a random order."""
    return sorted(p.node_id for p in await (await swarm.client(hub, node_id, ip)).peers())


async def _peer_ids(swarm: Swarm, hub: Hub, name: str, ip: str) -> list[str]:
    """The names (of ``identity_for``) of the peers ``name`` is given, sorted."""
    ids = {p.node_id for p in await (await swarm.client(hub, name, ip)).peers()}
    return sorted(n for n in "abcdefgh" if nid(n) in ids)


async def test_peers_are_the_asker_s_slash16_without_the_asker(swarm: Swarm) -> None:
    hub = await swarm.hub(group_prefix=16)
    nodes = {"a": ("127.0.0.2", None), "b": ("127.0.0.3", None), "c": ("127.0.1.2", None)}
    await _register_all(swarm, hub, nodes)
    assert await _peer_ids(swarm, hub, "a", "127.0.0.2") == ["b", "c"]
    assert await _peer_ids(swarm, hub, "c", "127.0.1.2") == ["a", "b"]


async def test_slash24_splits_the_groups(swarm: Swarm) -> None:
    hub = await swarm.hub(group_prefix=24)
    nodes = {"a": ("127.0.0.2", None), "b": ("127.0.0.3", None), "c": ("127.0.1.2", None)}
    await _register_all(swarm, hub, nodes)
    assert await _peer_ids(swarm, hub, "a", "127.0.0.2") == ["b"]
    assert await _peer_ids(swarm, hub, "c", "127.0.1.2") == []


async def test_explicit_group_overrides_the_address(swarm: Swarm) -> None:
    hub = await swarm.hub(group_prefix=24, groups=["lab=127.0.0.0/24", "lab=127.0.1.0/24"])
    nodes = {"a": ("127.0.0.2", "lab"), "b": ("127.0.1.2", "lab"), "c": ("127.0.0.3", None)}
    await _register_all(swarm, hub, nodes)
    assert await _peer_ids(swarm, hub, "a", "127.0.0.2") == ["b"]
    assert await _peer_ids(swarm, hub, "c", "127.0.0.3") == []


@pytest.mark.parametrize(
    ("groups", "declared"),
    [
        ([], "lab"),  # a name the hub was not told about
        (["lab=127.0.1.0/24"], "lab"),  # a name for another network
        (["lab=127.0.1.0/24"], "127.0.1.0/24"),  # another address group, by its name
    ],
)
async def test_a_member_cannot_declare_its_way_into_a_group(
    swarm: Swarm, groups: list[str], declared: str
) -> None:
    hub = await swarm.hub(group_prefix=24, groups=groups)
    await _register_all(swarm, hub, {"b": ("127.0.1.2", "lab")} if groups else {})
    intruder = await swarm.client(hub, nid("c"), "127.0.0.3")
    with pytest.raises(HubRejected) as info:
        await intruder.register(Registration(port=7500, version="1", slots=2, group=declared))
    assert info.value.status == 403
    assert [r.node_id for r in await hub.store.live_nodes(T0, TTL)] == (
        [nid("b")] if groups else []
    )


async def test_declaring_ones_own_address_group_is_allowed(swarm: Swarm) -> None:
    hub = await swarm.hub(group_prefix=24)
    nodes = {"a": ("127.0.0.2", "127.0.0.0/24"), "b": ("127.0.0.3", None)}
    await _register_all(swarm, hub, nodes)
    assert await _peer_ids(swarm, hub, "a", "127.0.0.2") == ["b"]


async def test_peer_info_carries_what_the_node_said(swarm: Swarm) -> None:
    hub = await swarm.hub()
    b = await swarm.client(hub, nid("node-b"), "127.0.0.3")
    reg = Registration(port=7600, version="0.2.0", slots=3, wan_rate=5_000_000, quota_left=10**9)
    await b.register(reg)
    await b.heartbeat({"bytes_served": 42})
    await (await swarm.client(hub, nid("node-a"), "127.0.0.2")).register(REG)
    [peer] = await (await swarm.client(hub, nid("node-a"), "127.0.0.2")).peers()
    assert (peer.address, peer.port, peer.url) == ("127.0.0.3", 7600, "http://127.0.0.3:7600")
    assert (peer.version, peer.slots, peer.wan_rate, peer.quota_left) == (
        "0.2.0",
        3,
        5_000_000,
        10**9,
    )
    assert peer.stats.as_json() == {"bytes_served": 42}  # PeerInfo is the protocol's PeerEntry
    assert peer.last_seen == T0


async def test_dead_peers_are_not_listed(swarm: Swarm) -> None:
    hub = await swarm.hub()
    await _register_all(swarm, hub, {"a": ("127.0.0.2", None), "b": ("127.0.0.3", None)})
    hub.now = T0 + 10
    await (await swarm.client(hub, "a", "127.0.0.2")).heartbeat({})
    hub.now = T0 + TTL + 1  # b's last sign of life was at T0
    assert await _peer_ids(swarm, hub, "a", "127.0.0.2") == []


async def test_peers_of_an_unregistered_node(swarm: Swarm) -> None:
    hub = await swarm.hub()
    with pytest.raises(UnknownNode):
        await (await swarm.client(hub, nid("node-a"))).peers()


# --- authentication and refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/nodes/register"),
        ("POST", f"/v1/nodes/{nid('node-a')}/heartbeat"),
        ("DELETE", f"/v1/nodes/{nid('node-a')}"),
        ("GET", "/v1/peers"),
    ],
)
async def test_unsigned_requests_are_401(swarm: Swarm, method: str, path: str) -> None:
    hub = await swarm.hub()
    status, answer = await _raw(await swarm.session(), method, hub.url + path, node_id=None)
    assert (status, answer["code"]) == (401, "auth")


async def test_health_needs_no_signature(swarm: Swarm) -> None:
    hub = await swarm.hub()
    await (await swarm.client(hub, nid("node-a"))).register(REG)
    status, answer = await _raw(await swarm.session(), "GET", hub.url + "/v1/health", node_id=None)
    assert (status, answer) == (200, {"ok": True, "nodes": 1})


async def test_wrong_secret_is_rejected(swarm: Swarm) -> None:
    hub = await swarm.hub()
    client = await swarm.client(hub, nid("node-a"), secret=b"not-the-swarm-secret")
    with pytest.raises(HubRejected, match="bad signature") as info:
        await client.register(REG)
    assert info.value.status == 401


async def test_a_node_cannot_register_as_another(swarm: Swarm) -> None:
    hub = await swarm.hub()
    url = hub.url + "/v1/nodes/register"
    payload = REG.as_json(nid("node-b"))
    status, answer = await _raw(await swarm.session(), "POST", url, payload, node_id=nid("node-a"))
    assert (status, answer["code"]) == (403, "forbidden")
    assert await hub.store.live_nodes(T0, TTL) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", f"/v1/nodes/{nid('node-b')}/heartbeat"), ("DELETE", f"/v1/nodes/{nid('node-b')}")],
)
async def test_a_node_cannot_act_for_another(swarm: Swarm, method: str, path: str) -> None:
    hub = await swarm.hub()
    await (await swarm.client(hub, nid("node-b"))).register(REG)
    payload = {"stats": {}} if method == "POST" else None
    status, answer = await _raw(await swarm.session(), method, hub.url + path, payload)
    assert (status, answer["code"]) == (403, "forbidden")
    assert len(await hub.store.live_nodes(T0, TTL)) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"node_id": nid("node-a"), "port": 0, "version": "1", "slots": 1},
        {"node_id": nid("node-a"), "port": 80, "version": "1"},
        {"node_id": nid("node-a"), "port": 80, "version": "1", "slots": 1, "group": "bad group"},
        {"node_id": nid("node-a"), "port": 80, "version": "1", "slots": 1, "scheme": "ftp"},
    ],
)
async def test_bad_registration_is_400(swarm: Swarm, payload: dict[str, Any]) -> None:
    hub = await swarm.hub()
    url = hub.url + "/v1/nodes/register"
    status, answer = await _raw(await swarm.session(), "POST", url, payload)
    assert (status, answer["code"]) == (400, "bad_request")


async def test_bad_registration_is_rejected_by_the_client(swarm: Swarm) -> None:
    hub = await swarm.hub()
    with pytest.raises(HubRejected, match="slots") as info:
        await (await swarm.client(hub, nid("node-a"))).register(
            Registration(port=7500, version="0.1.0", slots=-1)
        )
    assert info.value.status == 400


async def test_unknown_route_is_json(swarm: Swarm) -> None:
    hub = await swarm.hub()
    status, answer = await _raw(await swarm.session(), "GET", hub.url + "/v1/nope")
    assert (status, answer["code"]) == (404, "http")


class _BrokenStore(MemoryRegistryStore):
    async def live_node(self, node_id: str, now: float, ttl: float) -> NodeRecord | None:
        raise StorageError("disk on fire")


async def test_storage_failure_is_503_and_unavailable(swarm: Swarm) -> None:
    hub = await swarm.hub(store=_BrokenStore())
    with pytest.raises(HubUnavailable, match="disk on fire") as info:
        await (await swarm.client(hub, nid("node-a"))).peers()
    assert info.value.status == 503


async def test_unreachable_hub_is_unavailable(swarm: Swarm) -> None:
    hub = await swarm.hub()
    await swarm.stack.aclose()  # stops the hub (and the sessions)
    async with aiohttp.ClientSession() as session:
        client = HubClient(session, hub.url, SECRET, identity_for("node-a"), timeout=2.0)
        with pytest.raises(HubUnavailable, match="unreachable"):
            await client.register(REG)


# --- run_membership ----------------------------------------------------------------------------


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def _member(
    client: HubClient, states: list[MembershipState], leave_timeout: float = 2.0
) -> AsyncIterator[None]:
    """run_membership as a task owned by this block, with short timers."""
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(
            run_membership(
                client,
                REG,
                lambda: {"bytes_served": 7},
                interval=0.03,
                backoff_initial=0.02,
                backoff_max=0.05,
                leave_timeout=leave_timeout,
                on_state=states.append,
            )
        )
        try:
            yield
        finally:
            task.cancel()


async def _live_ids(hub: Hub) -> list[str]:
    return [r.node_id for r in await hub.store.live_nodes(time.time(), TTL)]


async def test_membership_registers_heartbeats_and_leaves(swarm: Swarm) -> None:
    hub = await swarm.hub(real_clock=True)
    states: list[MembershipState] = []

    async def stats_arrived() -> bool:
        records = await hub.store.live_nodes(time.time(), TTL)
        return bool(records) and dict(records[0].stats) == {"bytes_served": 7}

    async with _member(await swarm.client(hub, nid("node-a")), states):
        await _until(stats_arrived)
    assert await _live_ids(hub) == []  # it left when cancelled
    assert states[0].registered is not None
    assert states[0].registered.address == "127.0.0.1"
    assert all(s.error is None for s in states)


async def test_membership_registers_again_when_the_hub_forgets(swarm: Swarm) -> None:
    hub = await swarm.hub(real_clock=True)
    states: list[MembershipState] = []

    async def registered_twice() -> bool:
        return sum(1 for s in states if s.registered is None) >= 1 and bool(await _live_ids(hub))

    async with _member(await swarm.client(hub, nid("node-a")), states):
        await _until(lambda: _has(hub, nid("node-a")))
        await hub.store.remove(nid("node-a"))  # as if the hub restarted with an empty registry
        await _until(registered_twice)
    forgotten = next(s for s in states if s.registered is None)
    assert "not registered" in (forgotten.error or "")


async def _has(hub: Hub, node_id: str) -> bool:
    return node_id in await _live_ids(hub)


class _FlakyStore(MemoryRegistryStore):
    """Fails every call while ``down``; ``remove`` may hang forever."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.hang_on_remove = False

    async def upsert_node(self, record: NodeRecord, now: float) -> NodeRecord:
        if self.down:
            raise StorageError("database down")
        return await super().upsert_node(record, now)

    async def remove(self, node_id: str) -> bool:
        if self.hang_on_remove:
            await asyncio.Event().wait()
        return await super().remove(node_id)


async def test_membership_backs_off_while_the_hub_fails_then_recovers(swarm: Swarm) -> None:
    store = _FlakyStore()
    store.down = True
    hub = await swarm.hub(real_clock=True, store=store)
    states: list[MembershipState] = []

    async def failed_thrice() -> bool:
        return len(states) >= 3

    async with _member(await swarm.client(hub, nid("node-a")), states):
        await _until(failed_thrice)
        assert [s.failures for s in states[:3]] == [1, 2, 3]
        assert all(s.registered is None and "503" in (s.error or "") for s in states[:3])
        store.down = False
        await _until(lambda: _has(hub, nid("node-a")))
    assert states[-1].failures == 0


async def test_leaving_is_bounded_by_a_timeout(swarm: Swarm) -> None:
    store = _FlakyStore()
    store.hang_on_remove = True
    hub = await swarm.hub(real_clock=True, store=store)
    states: list[MembershipState] = []
    started = time.monotonic()
    async with _member(await swarm.client(hub, nid("node-a")), states, leave_timeout=0.2):
        await _until(lambda: _has(hub, nid("node-a")))
        started = time.monotonic()
    assert time.monotonic() - started < 1.5


def test_membership_backoff_doubles_up_to_the_cap() -> None:
    delays = [membership_backoff(n, initial=1.0, maximum=10.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert membership_backoff(3, initial=1.0, maximum=10.0, jitter=0.0) == 2.0


async def test_registrations_departures_and_expiries_are_logged_and_counted(
    swarm: Swarm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="swarmget.hub.app")
    hub = await swarm.hub()
    a = await swarm.client(hub, nid("node-a"), "127.0.0.2")
    b = await swarm.client(hub, nid("node-b"), "127.0.0.3")
    await a.register(REG)
    await b.register(REG)
    await a.leave()
    hub.now = T0 + 21 * TTL  # b was silent long enough to be forgotten
    with pytest.raises(UnknownNode):
        await b.heartbeat({})
    await (await swarm.client(hub, nid("node-c"), "127.0.0.4")).register(REG)
    messages = [r.getMessage() for r in caplog.records if r.name == "swarmget.hub.app"]
    assert sum(m.startswith("node registered: ") for m in messages) == 3
    assert f"node left: {a.node_id}" in messages
    assert any(m.startswith(f"heartbeat from {b.node_id}, not registered") for m in messages)
    assert any(m.startswith("expired 1 node(s)") for m in messages)
    session = await swarm.session()
    async with session.get(f"{hub.url}/metrics") as resp:
        text = await resp.text()
    assert "swarmget_hub_registrations_total 3.0" in text.splitlines()
    assert "swarmget_hub_departures_total 1.0" in text.splitlines()
    assert "swarmget_hub_expiries_total 1.0" in text.splitlines()
    assert "swarmget_hub_registered_nodes 1.0" in text.splitlines()
