"""Requester-only askers (``GET /v1/peers?requester=1``) on a real hub with SQLite.

The hub runs on 127.0.0.1 (``open_hub``, its real store and clock) grouping by /24; clients
bind to other loopback addresses so that it sees them come from different machines. The
registered "nodes" only register (nobody connects to their ports here).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from swarmget.core.errors import HubRejected, HubTooOld, UnknownNode
from swarmget.core.identity import NodeIdentity
from swarmget.hub.service import RunningHub, open_hub
from swarmget.net.hub_client import HubClient, HubPool, Registration, RequesterOnly
from swarmget.net.signing import signed_headers
from swarmget.protocol.hub import PEERS_PATH

SECRET = b"requester-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=4)

MakeClient = Callable[..., HubClient]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    db = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    async with open_hub(host="127.0.0.1", port=0, db_url=db, secret=SECRET, group_prefix=24) as h:
        yield h


@pytest.fixture
async def client(hub: RunningHub) -> AsyncIterator[MakeClient]:
    """``client(address, requester_only=..., secret=...)``: a hub client speaking from
    ``address`` with a new node identity."""
    async with AsyncExitStack() as stack:

        async def session_at(address: str) -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(local_addr=(address, 0))
            return await stack.enter_async_context(aiohttp.ClientSession(connector=connector))

        sessions: dict[str, aiohttp.ClientSession] = {}

        def make(
            address: str, *, requester_only: bool = False, secret: bytes = SECRET
        ) -> HubClient:
            session = sessions[address]
            return HubClient(
                session, hub.url, secret, NodeIdentity.generate(), requester_only=requester_only
            )

        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.9", "127.0.1.2", "127.0.1.9"):
            sessions[address] = await session_at(address)
        yield make


async def _register(make: MakeClient, *addresses: str) -> dict[str, str]:
    """Register a node at each address; {address: node id}."""
    ids = {}
    for address in addresses:
        node = make(address)
        await node.register(REG)
        ids[address] = node.node_id
    return ids


async def test_a_signed_unregistered_requester_gets_the_peers_of_its_group_only(
    client: MakeClient,
) -> None:
    ids = await _register(client, "127.0.0.2", "127.0.0.3", "127.0.1.2")

    here = client("127.0.0.9", requester_only=True)
    listed = await here.peers()
    assert sorted(p.node_id for p in listed) == sorted([ids["127.0.0.2"], ids["127.0.0.3"]])
    assert {p.group for p in listed} == {"127.0.0.0/24"}

    there = await client("127.0.1.9", requester_only=True).peers()
    assert [p.node_id for p in there] == [ids["127.0.1.2"]]

    # ?node= works for requesters too
    only = await here.peers([ids["127.0.0.3"], ids["127.0.1.2"]])
    assert [p.node_id for p in only] == [ids["127.0.0.3"]]


async def test_a_requester_is_not_registered_by_asking(client: MakeClient, hub: RunningHub) -> None:
    await _register(client, "127.0.0.2")
    asker = client("127.0.0.9", requester_only=True)
    await asker.peers()
    live = await hub.store.live_nodes(time.time(), ttl=3600)
    assert asker.node_id not in {r.node_id for r in live}


async def test_a_requester_query_must_be_signed(client: MakeClient, hub: RunningHub) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.url}{PEERS_PATH}?requester=1") as response:
            assert response.status == 401
            assert (await response.json())["code"] == "auth"
    with pytest.raises(HubRejected) as refused:
        await client("127.0.0.9", requester_only=True, secret=b"another-secret-0123456789").peers()
    assert refused.value.status == 401


async def test_a_signature_over_another_query_is_refused(hub: RunningHub) -> None:
    """The signature covers the query: a node's signed peers query cannot be replayed as a
    requester query (nor the other way round)."""
    identity = NodeIdentity.generate()
    signed_for = URL(f"{hub.url}{PEERS_PATH}")
    headers = signed_headers(SECRET, identity, "GET", signed_for, b"")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.url}{PEERS_PATH}?requester=1", headers=headers) as answer:
            assert answer.status == 401


@pytest.mark.parametrize("query", ["requester=0", "requester=yes", "requester=1&requester=1"])
async def test_a_malformed_requester_query_is_400(
    client: MakeClient, hub: RunningHub, query: str
) -> None:
    identity = NodeIdentity.generate()
    url = URL(f"{hub.url}{PEERS_PATH}?{query}", encoded=True)
    headers = signed_headers(SECRET, identity, "GET", url, b"")
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as answer:
            assert answer.status == 400
            assert (await answer.json())["code"] == "bad_request"


async def test_a_registered_node_s_query_is_unchanged(client: MakeClient) -> None:
    node = client("127.0.0.2")
    await node.register(REG)
    ids = await _register(client, "127.0.0.3", "127.0.1.2")
    assert [p.node_id for p in await node.peers()] == [ids["127.0.0.3"]]

    # an unregistered asker that does not say it is a requester only is not answered
    with pytest.raises(UnknownNode):
        await client("127.0.0.9").peers()


async def test_a_requester_only_client_never_registers(client: MakeClient) -> None:
    requester = client("127.0.0.9", requester_only=True)
    with pytest.raises(RequesterOnly):
        await requester.register(REG)
    with pytest.raises(RequesterOnly):
        await requester.heartbeat()


async def test_a_requester_only_pool_fails_over_to_the_next_hub(
    client: MakeClient, hub: RunningHub
) -> None:
    ids = await _register(client, "127.0.0.2")
    with socket.socket() as s:  # a port nobody listens on: the first hub is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=("127.0.0.9", 0))
    ) as session:
        pool = HubPool(
            session, [dead, hub.url], SECRET, NodeIdentity.generate(), requester_only=True
        )
        assert [p.node_id for p in await pool.peers()] == [ids["127.0.0.2"]]
        assert pool.hub_url == hub.url
        with pytest.raises(RequesterOnly):
            await pool.register(REG)


async def test_a_requester_only_pool_moves_on_from_a_hub_too_old(
    client: MakeClient, hub: RunningHub
) -> None:
    """During a rolling upgrade a replica may not know the query yet (it answers as an older
    hub does: 404 ``unknown_node``); the requester asks the next one."""

    async def old_hub(request: web.Request) -> web.Response:
        return web.json_response({"error": "not registered", "code": "unknown_node"}, status=404)

    app = web.Application()
    app.router.add_get(PEERS_PATH, old_hub)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        old = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ids = await _register(client, "127.0.0.2")
        async with aiohttp.ClientSession() as session:
            identity = NodeIdentity.generate()
            pool = HubPool(session, [old, hub.url], SECRET, identity, requester_only=True)
            assert [p.node_id for p in await pool.peers()] == [ids["127.0.0.2"]]
            only_old = HubPool(session, [old], SECRET, identity, requester_only=True)
            with pytest.raises(HubTooOld):
                await only_old.peers()
    finally:
        await runner.cleanup()
