"""A strained hub sheds with 503 ``overloaded`` + Retry-After and stretches the heartbeat
interval and TTL, and never lets a node expire because it was slow (issue #17).

The strain is a number the test sets (``Admission(probe=...)``) and time is a clock the test
moves: a real hub app on 127.0.0.1 and signed clients, nothing sleeps or measures speed."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.errors import HubUnavailable
from swarmget.core.session_auth import EphemeralKey, SessionKey
from swarmget.hub.admission import MAX_SLOWDOWN, Admission, RequestKind
from swarmget.hub.app import make_hub_app
from swarmget.hub.store import NodeRecord
from swarmget.net.hub_client import HubClient, Registration
from swarmget.protocol.errors import HUB_ERRORS
from swarmget.protocol.hub import session_path
from swarmget.testing.fakes import MemoryRegistryStore, identity_of, nid

SECRET = b"hub-admission-secret-0123456789"
T0 = 1_700_000_000.0
TTL = 15.0
REG = Registration(port=7500, version="0.1.0", slots=4)


@dataclass
class Strain:
    """The hub's clock and load, as the test sets them."""

    now: float = T0
    load: float = 0.0

    def clock(self) -> float:
        return self.now

    def probe(self) -> float:
        return self.load


@dataclass
class Hub:
    url: str
    store: MemoryRegistryStore
    strain: Strain
    session: aiohttp.ClientSession

    def client(self, name: str) -> HubClient:
        return HubClient(
            self.session, self.url, SECRET, identity_of(nid(name)), clock=self.strain.clock
        )


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    strain, store = Strain(), MemoryRegistryStore()
    admission = Admission(ttl=TTL, clock=strain.clock, probe=strain.probe)
    app = make_hub_app(
        store, SECRET, ttl=TTL, clock=strain.clock, rng=random.Random(1), admission=admission
    )
    async with AsyncExitStack() as stack:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Hub(f"http://{host}:{port}", store, strain, session)


async def test_a_relaxed_hub_asks_for_the_base_interval(hub: Hub) -> None:
    registered = await hub.client("a").register(REG)
    assert (registered.ttl, registered.heartbeat_interval) == (TTL, TTL / 3)
    answer = await hub.client("a").heartbeat()
    assert (answer.ttl, answer.heartbeat_interval) == (TTL, TTL / 3)


async def test_a_strained_hub_sheds_registrations_and_peers_with_retry_after(hub: Hub) -> None:
    await hub.client("a").register(REG)
    hub.strain.load = 1.0
    with pytest.raises(HubUnavailable) as info:
        await hub.client("b").register(REG)
    assert info.value.status == HUB_ERRORS.row("overloaded").status == 503
    assert info.value.retry_after == 2 * TTL / 3  # the stretched heartbeat interval
    with pytest.raises(HubUnavailable) as info:
        await hub.client("a").peers()
    assert info.value.retry_after is not None
    # heartbeats still get through, told to come back less often
    answer = await hub.client("a").heartbeat()
    assert (answer.ttl, answer.heartbeat_interval) == (2 * TTL, 2 * TTL / 3)
    health = await hub.session.get(hub.url + "/v1/health")
    assert (health.status, (await health.json())["nodes"]) == (200, 1)  # never shed


async def test_the_overloaded_answer_is_json_with_the_code(hub: Hub) -> None:
    hub.strain.load = 1.5
    async with hub.session.post(hub.url + "/v1/nodes/register", data=b"{}") as resp:
        body = json.loads(await resp.read())
        assert (resp.status, body["code"]) == (503, "overloaded")
        assert resp.headers["Retry-After"] == "10"  # shed before the (missing) signature


async def test_heartbeats_are_never_shed(hub: Hub) -> None:
    await hub.client("a").register(REG)
    hub.strain.load = 100.0
    answer = await hub.client("a").heartbeat()
    assert answer.heartbeat_interval == 2 * TTL / 3


async def test_a_node_that_heartbeats_as_told_never_expires_while_the_hub_is_slow(
    hub: Hub,
) -> None:
    """Strain doubles the slowdown once per base interval up to MAX_SLOWDOWN; the node waits
    what it is told each time; once calm, the slowdown halves one step per interval."""
    node = hub.client("a")
    await node.register(REG)
    hub.strain.load = 1.0
    intervals = []
    for _ in range(6):
        answer = await node.heartbeat()
        intervals.append(answer.heartbeat_interval)
        hub.strain.now += answer.heartbeat_interval  # heartbeats exactly as late as allowed
    assert intervals == [TTL / 3 * s for s in (2, 4, 8, MAX_SLOWDOWN, MAX_SLOWDOWN, 8)]
    hub.strain.load = 0.0
    for _ in range(8):
        answer = await node.heartbeat()  # 404 (UnknownNode) if it had expired
        intervals.append(answer.heartbeat_interval)
        hub.strain.now += answer.heartbeat_interval
    assert intervals[-1] == TTL / 3
    assert intervals[6:] == sorted(intervals[6:], reverse=True)


def test_the_latency_signal_fades_when_nothing_finishes() -> None:
    """Without a probe the load is the requests' average duration over the target; a hub
    that sheds everything does not stay "slow" on the memory of its last requests."""
    strain = Strain()
    admission = Admission(ttl=TTL, clock=strain.clock, target_latency=0.25)
    for _ in range(200):
        admission.finished(1.0)
    assert admission.load() > 1.0
    strain.now += 10.0
    assert admission.load() < 0.01


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Admission(ttl=0)


class GatedStore(MemoryRegistryStore):
    """Registrations wait for ``gate`` (the test opens it)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def upsert_node(self, record: NodeRecord, now: float) -> NodeRecord:
        self.waiting += 1
        await self.gate.wait()
        return await super().upsert_node(record, now)


async def test_registrations_beyond_the_waiting_room_are_shed_at_any_load() -> None:
    strain, store = Strain(), GatedStore()
    admission = Admission(ttl=TTL, clock=strain.clock, probe=strain.probe, max_registering=1)
    app = make_hub_app(store, SECRET, ttl=TTL, clock=strain.clock, admission=admission)
    async with AsyncExitStack() as stack:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        session = await stack.enter_async_context(aiohttp.ClientSession())
        hub = Hub(f"http://{host}:{port}", store, strain, session)
        async with asyncio.TaskGroup() as tg:
            first = tg.create_task(hub.client("a").register(REG))
            async with asyncio.timeout(5):
                while store.waiting == 0:
                    await asyncio.sleep(0.01)
            with pytest.raises(HubUnavailable) as info:
                await hub.client("b").register(REG)
            assert info.value.retry_after == TTL / 3  # not strained: the base interval
            store.gate.set()
        assert first.result().node_id == nid("a")
        await hub.client("b").register(REG)  # room again


async def test_a_strained_hub_sheds_rekeys_but_keys_a_node_by_its_heartbeat(hub: Hub) -> None:
    """A re-key request (``POST /v1/nodes/{id}/session``: what older nodes send) costs the
    hub what a registration does: shed under strain (503 + Retry-After). A heartbeat signed
    with the node key that asks for a session (a node that moved here, or whose session the
    hub lost) gets it whatever the load: heartbeats are never shed, and the session saves
    the hub an Ed25519 check on each later heartbeat (before 2026-12-07 the node re-keyed
    with its own request, shed here, and signed with its node key for ``REKEY_BACKOFF``)."""
    node = hub.client("a")
    await node.register(REG)
    assert node.session is not None
    hub.strain.load = 1.0
    rekey = {"session_key": EphemeralKey().public_b64}
    with pytest.raises(HubUnavailable) as info:
        await node.call("POST", session_path(node.node_id), rekey)
    assert info.value.retry_after is not None
    stale = SessionKey(secrets.token_urlsafe(16), secrets.token_bytes(32))  # unknown here
    node.session = stale
    assert (await node.heartbeat()).ok  # refused session -> node key, asking for a session
    assert node.session is not None
    assert node.session.session_id != stale.session_id
    assert (await node.heartbeat()).ok  # signed with it, still strained


def test_rekeys_wait_in_the_registrations_room() -> None:
    admission = Admission(ttl=TTL, clock=lambda: T0, probe=lambda: 0.0, max_registering=1)
    assert admission.admit(RequestKind.SESSION) is None
    admission.registering = 1  # one registration (or re-key) in progress
    assert admission.admit(RequestKind.SESSION) == TTL / 3
    assert admission.admit(RequestKind.REGISTER) == TTL / 3
    assert admission.admit(RequestKind.HEARTBEAT) is None
