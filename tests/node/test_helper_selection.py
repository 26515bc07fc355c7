"""How many peers a requester contacts, and how many it uses (issue #12: thousands of fake
registrations made a requester open 1,600+ sockets). Real sockets on 127.0.0.1: "black hole"
peers that accept a connection and never answer (each check holds a socket until its
timeout), helpers that answer ``/v1/health``, and a stand-in hub listing them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.net.hub_client import HubClient
from swarmget.net.peer_client import (
    MAX_HEALTH_CHECKS_IN_FLIGHT,
    MAX_HELPER_SLOTS,
    PeerAddress,
    check_health,
)
from swarmget.node.helper_search import (
    MAX_HELPERS_PER_DOWNLOAD,
    SwarmContext,
    find_helpers,
    wait_for_hub,
)
from swarmget.protocol.hub import MAX_PEERS_PER_ANSWER
from swarmget.testing.fakes import identity_for, nid

SECRET = b"helper-selection-secret-0123"
ME = identity_for("me")
REQUESTER = identity_for("requester")


@dataclass
class BlackHole:
    """A TCP server that never answers; counts connections open at once (peak) and in all."""

    port: int = 0
    open_now: int = 0
    peak: int = 0
    total: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_now += 1
        self.total += 1
        self.peak = max(self.peak, self.open_now)
        try:
            while await reader.read(65536):  # until the requester gives up and closes
                pass
        except OSError:
            pass
        finally:
            self.open_now -= 1
            writer.close()


@dataclass
class Helpers:
    """``/v1/health`` answered on one port per helper (the node id follows from the port).
    Node ids are those of the helpers' names (``nid``)."""

    by_port: dict[int, str] = field(default_factory=dict)
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    async def health(self, request: web.Request) -> web.Response:
        port = request.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        node_id = self.by_port[port]
        self.checked.append(node_id)
        body = {"node_id": node_id, "slots": 3} | self.claims.get(node_id, {})
        return web.json_response(body)


@dataclass
class Lan:
    stack: AsyncExitStack
    session: aiohttp.ClientSession
    hole: BlackHole
    helpers: Helpers

    async def start_helpers(self, names: list[str]) -> list[PeerAddress]:
        """One helper per name, answering as ``nid(name)``."""
        app = web.Application()
        app.router.add_get("/v1/health", self.helpers.health)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        for _ in names:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        ports = [address[1] for address in runner.addresses]
        node_ids = [nid(name) for name in names]
        self.helpers.by_port.update(zip(ports, node_ids, strict=True))
        return [_address(node_id, port) for node_id, port in zip(node_ids, ports, strict=True)]

    def holes(self, count: int) -> list[PeerAddress]:
        return [_address(nid(f"hole-{i:04d}"), self.hole.port) for i in range(count)]

    async def hub_listing(self, peers: list[PeerAddress]) -> HubClient:
        """A stand-in hub whose ``/v1/peers`` lists ``peers`` in this order."""
        body = json.dumps({"group": "g", "peers": [_entry(p) for p in peers]}).encode()

        async def answer(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/v1/peers", answer)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return HubClient(self.session, url, SECRET, REQUESTER)


def _address(node_id: str, port: int) -> PeerAddress:
    return PeerAddress(node_id=node_id, url=f"http://127.0.0.1:{port}", slots=3)


def _entry(p: PeerAddress) -> dict[str, Any]:
    port = int(p.url.rsplit(":", 1)[1])
    return {"node_id": p.node_id, "address": "127.0.0.1", "port": port, "url": p.url,
            "version": "0.1.0", "slots": 3, "group": "g", "stats": {}}  # fmt: skip


@pytest.fixture
async def lan() -> AsyncIterator[Lan]:
    hole = BlackHole()
    server = await asyncio.start_server(hole.handle, "127.0.0.1", 0)
    hole.port = server.sockets[0].getsockname()[1]
    async with AsyncExitStack() as stack:
        # like the node daemon's peer session: no connection limit of its own
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        stack.push_async_callback(session.close)
        try:
            yield Lan(stack, session, hole, Helpers())
        finally:
            server.close()
            await server.wait_closed()


async def test_health_checks_hold_a_bounded_number_of_sockets(lan: Lan) -> None:
    """200 listed peers that never answer: the requester never has more than
    MAX_HEALTH_CHECKS_IN_FLIGHT connections to them open at once."""
    healthy = await check_health(lan.session, lan.holes(200), SECRET, ME, health_timeout=0.3)
    assert healthy == []
    assert lan.hole.total == 200  # every candidate was tried ...
    assert 0 < lan.hole.peak <= MAX_HEALTH_CHECKS_IN_FLIGHT  # ... a bounded number at once


#: a bound below the default (as many as the hub may list), so 30 good helpers exceed it
BOUND = 16


def test_a_requester_uses_as_many_helpers_as_the_hub_may_list() -> None:
    assert MAX_HELPERS_PER_DOWNLOAD == MAX_PEERS_PER_ANSWER
    assert SwarmContext.__dataclass_fields__["max_helpers"].default == MAX_PEERS_PER_ANSWER


async def test_a_download_checks_and_uses_a_bounded_number_of_helpers(lan: Lan) -> None:
    good = await lan.start_helpers([f"good-{i:02d}" for i in range(30)])
    listed = [p for pair in zip(good, lan.holes(30), strict=True) for p in pair]
    swarm = SwarmContext(
        identity=REQUESTER,
        secret=SECRET,
        peer_session=lan.session,
        hub=await lan.hub_listing(listed),
        health_timeout=0.5,
        max_helpers=BOUND,
    )
    helpers = await find_helpers(swarm)
    assert len(helpers) == BOUND
    # the first that answered, in the hub's order (best first)
    assert [h.node_id for h in helpers] == [p.node_id for p in good[:BOUND]]
    assert lan.hole.peak <= MAX_HEALTH_CHECKS_IN_FLIGHT
    assert len(lan.helpers.checked) + lan.hole.total < len(listed)  # stopped early


async def test_only_helpers_still_filters_before_the_bounds(lan: Lan) -> None:
    good = await lan.start_helpers(["a", "b", "c"])
    swarm = SwarmContext(
        identity=REQUESTER,
        secret=SECRET,
        peer_session=lan.session,
        hub=await lan.hub_listing([*lan.holes(50), *good]),
        health_timeout=0.3,
    )
    helpers = await find_helpers(swarm, [nid("c"), nid("a")])
    assert [h.node_id for h in helpers] == [nid("a"), nid("c")]
    assert lan.hole.total == 0


async def test_the_listed_helpers_slots_are_told_before_any_check(lan: Lan) -> None:
    """``on_listed`` hears the slots of the candidates the hub listed (those of
    ``only_helpers``), before their checks: the download sizes its first pieces for them."""
    good = await lan.start_helpers(["a", "b"])
    swarm = SwarmContext(
        identity=REQUESTER,
        secret=SECRET,
        peer_session=lan.session,
        hub=await lan.hub_listing([*good, *lan.holes(3)]),
        health_timeout=0.3,
    )
    told: list[tuple[int, int]] = []
    helpers = await find_helpers(
        swarm, on_listed=lambda slots: told.append((slots, len(lan.helpers.checked)))
    )
    assert told == [(5 * 3, 0)]  # every candidate's 3 slots, before a check
    assert len(helpers) == 2
    told.clear()
    await find_helpers(swarm, [nid("b")], on_listed=lambda slots: told.append((slots, 0)))
    assert told == [(3, 0)]


async def test_a_helper_s_claimed_slots_are_capped(lan: Lan) -> None:
    peers = await lan.start_helpers(["greedy", "modest"])
    lan.helpers.claims[nid("greedy")] = {"slots": 10**9}
    healthy = await check_health(lan.session, peers, SECRET, ME, health_timeout=2)
    assert [(h.node_id, h.slots) for h in healthy] == [
        (nid("greedy"), MAX_HELPER_SLOTS),
        (nid("modest"), 3),
    ]


@pytest.mark.parametrize(
    "claim",
    [
        {"slots": "3"},
        {"slots": True},
        {"slots": 0},
        {"node_id": nid("someone-else")},
        {"padding": "x" * 100_000},  # an answer that long is not a health answer
    ],
)
async def test_a_helper_answering_health_wrongly_is_not_used(
    lan: Lan, claim: dict[str, Any]
) -> None:
    peers = await lan.start_helpers(["odd", "fine"])
    lan.helpers.claims[nid("odd")] = claim
    healthy = await check_health(lan.session, peers, SECRET, ME, health_timeout=2)
    assert [h.node_id for h in healthy] == [nid("fine")]


async def test_the_hub_is_asked_once_the_node_s_registration_ended(lan: Lan) -> None:
    """A download that starts with the node (resumed) waits for the node's first attempt
    to register before it asks the hub for peers: asked before, the hub would refuse a
    node it does not know yet and the download would run alone to its end."""
    good = await lan.start_helpers(["a"])
    ready = asyncio.Event()
    swarm = SwarmContext(
        identity=REQUESTER,
        secret=SECRET,
        peer_session=lan.session,
        hub=await lan.hub_listing(good),
        health_timeout=0.5,
        hub_ready=ready,
    )
    heard: list[float] = []
    loop = asyncio.get_running_loop()
    finding = asyncio.create_task(find_helpers(swarm, on_hub=lambda _: heard.append(loop.time())))
    await asyncio.sleep(0.2)
    assert heard == []  # (not asked yet)
    assert not finding.done()
    set_at = loop.time()
    ready.set()
    assert [h.node_id for h in await finding] == [nid("a")]
    assert len(heard) == 1
    assert heard[0] >= set_at
    # a registration that never ends is waited for a bounded time only
    stuck = SwarmContext(
        identity=REQUESTER, secret=SECRET, peer_session=lan.session, hub=swarm.hub,
        hub_ready=asyncio.Event(),
    )  # fmt: skip
    async with asyncio.timeout(2):
        await wait_for_hub(stuck, limit=0.1)
