"""A node reads what a hub answers as untrusted input: a hub on 127.0.0.1 (a plain aiohttp app
standing in for an older or broken hub) lists malformed peers, too many peers, or far too
many bytes; the node keeps the valid entries and reads a bounded amount."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.errors import HubUnavailable
from swarmget.net.hub_client import HubClient
from swarmget.protocol.hub import MAX_HUB_ANSWER_BYTES, MAX_PEERS_PER_ANSWER
from swarmget.testing.fakes import identity_for, nid

SECRET = b"hub-answers-secret-0123456789"


def peer(node_id: str, **change: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "node_id": node_id,
        "address": "127.0.0.3",
        "port": 7401,
        "url": "http://127.0.0.3:7401",
        "version": "0.1.0",
        "slots": 3,
        "group": "127.0.0.0/16",
        "wan_rate": None,
        "quota_left": None,
        "registered_at": 1.0,
        "last_seen": 2.0,
        "stats": {"bytes_served": 5, "active_streams": 1},
    }
    return entry | change


@pytest.fixture
async def hub_answering() -> AsyncIterator[Callable[[bytes], Any]]:
    """``await hub_answering(body)``: a HubClient of a hub whose ``/v1/peers`` is ``body``."""
    async with aiohttp.ClientSession() as session:
        runners: list[web.AppRunner] = []

        async def start(body: bytes) -> HubClient:
            async def peers(request: web.Request) -> web.Response:
                return web.Response(body=body, content_type="application/json")

            app = web.Application()
            app.router.add_get("/v1/peers", peers)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            return HubClient(
                session, f"http://{host}:{port}", SECRET, identity_for("node-a"), timeout=10
            )

        try:
            yield start
        finally:
            for runner in runners:
                await runner.cleanup()


def answer(peers: list[Any]) -> bytes:
    return json.dumps({"group": "127.0.0.0/16", "peers": peers}).encode()


async def test_malformed_peers_are_skipped_and_the_valid_ones_kept(hub_answering: Any) -> None:
    peers = [
        peer(nid("good-1")),
        peer(nid("bad-stats"), stats={"bytes_served": "x"}),
        peer(nid("bad-port"), port="7401"),
        peer(nid("bad-url"), url="file:///etc/passwd"),
        peer(nid("elsewhere"), url="http://10.9.9.9:7401"),
        peer(nid("bad-address"), address="localhost", url="http://localhost:7401"),
        peer("bad id with spaces"),
        peer(nid("bad-slots"), slots=-1),
        peer(nid("bad-time"), last_seen="yesterday"),
        peer(nid("bad-version"), version=""),
        peer(nid("markup-version"), version="[/bold]"),
        peer(nid("bad-group"), group="<script>"),
        "not even an object",
        None,
        peer(nid("good-2"), stats={"bytes_served": 9, "unknown": "dropped"}),
    ]
    client = await hub_answering(answer(peers))
    listed = await client.peers()
    assert [p.node_id for p in listed] == [nid("good-1"), nid("good-2")]
    assert listed[1].stats.as_json() == {"bytes_served": 9}


async def test_a_hub_listing_too_many_peers_gives_a_bounded_sample(hub_answering: Any) -> None:
    peers = [peer(nid(f"n{i:04d}")) for i in range(1000)]
    client = await hub_answering(answer(peers))
    listed = await client.peers()
    assert len(listed) == MAX_PEERS_PER_ANSWER
    assert len({p.node_id for p in listed}) == MAX_PEERS_PER_ANSWER


async def test_an_answer_over_the_byte_cap_is_not_read(hub_answering: Any) -> None:
    bloated = peer(nid("big"), stats={"padding": "x" * (MAX_HUB_ANSWER_BYTES + 1)})
    client = await hub_answering(answer([peer(nid("good-1")), bloated]))
    with pytest.raises(HubUnavailable, match="longer than"):
        await client.peers()
