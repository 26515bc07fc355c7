"""One bad peer never breaks a node's peers page (issue #12: a peer's malformed heartbeat stats
``{"bytes_served": "x"}`` made every node's ``/portal/peers`` answer 500). A real node
(in-process) with its portal, a real hub on 127.0.0.1, and a stand-in for an older or broken
hub that lists malformed peers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.hub.app import make_hub_app
from swarmget.net.auth import json_body, signed_headers
from swarmget.net.hub_client import HubClient, Registration
from swarmget.node.daemon import Node, NodeConfig
from swarmget.run.node import open_node  # the node with its portal
from swarmget.testing.fakes import MemoryRegistryStore, identity_for, nid
from swarmget.testing.silent import open_silent_server

SECRET = b"portal-peers-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def node_with_hub(tmp_path: Path, hub_url: str) -> AsyncIterator[Node]:
    config = NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "s",
        download_dir=tmp_path / "d",
        hub_url=hub_url,
        heartbeat_interval=0.2,
    )
    async with open_node(config) as node:
        yield node


async def peers_page(node: Node) -> tuple[int, str]:
    """Log in to the node's portal and fetch its peers page."""
    assert node.portal is not None
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(node.portal.login_url()) as resp:
            assert resp.status == 200
        async with s.get(f"{node.api_url}/portal/peers", allow_redirects=False) as resp:
            return resp.status, await resp.text()


def listed_nodes(html: str) -> set[str]:
    return set(re.findall(r'<tr class="peer" data-node="([^"]+)"', html))


async def test_a_peer_sending_malformed_stats_breaks_no_page(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        store = MemoryRegistryStore()
        # as open_hub does: seen nonces are kept in the registry (shared with replicas)
        hub_url = await stack.enter_async_context(serve(make_hub_app(store, SECRET, nonces=store)))
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
        )
        for name in ("good-peer", "bad-peer"):
            await HubClient(session, hub_url, SECRET, identity_for(name)).register(REG)
        good = HubClient(session, hub_url, SECRET, identity_for("good-peer"))
        await good.heartbeat({"bytes_served": 5})
        url = f"{hub_url}/v1/nodes/{nid('bad-peer')}/heartbeat"
        body = json_body({"stats": {"bytes_served": "x", "refused": "many"}})
        headers = signed_headers(SECRET, identity_for("bad-peer"), "POST", url, body)
        headers["Content-Type"] = "application/json"
        async with session.post(url, data=body, headers=headers) as resp:
            refused = resp.status, json.loads(await resp.read()).get("code")
        node = await stack.enter_async_context(node_with_hub(tmp_path, hub_url))
        assert await node.wait_registered(10)
        status, html = await peers_page(node)
    assert status == 200
    assert listed_nodes(html) == {nid("good-peer"), nid("bad-peer")}
    assert refused == (400, "bad_request")


def entry(node_id: str, **change: Any) -> dict[str, Any]:
    return {
        "node_id": node_id, "address": "127.0.0.3", "port": 7401,
        "url": "http://127.0.0.3:7401", "version": "0.1.0", "slots": 3,
        "group": "127.0.0.0/16", "last_seen": 1.0, "stats": {"bytes_served": 5},
    } | change  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        entry(nid("bad-stats"), stats={"bytes_served": "x"}),
        entry(nid("bad-seen"), last_seen="yesterday"),
        entry(nid("bad-port"), port="x"),
        {"node_id": nid("half")},
    ],
)
async def test_malformed_entries_of_the_hub_are_skipped(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    listing = json.dumps({"group": "127.0.0.0/16", "peers": [entry(nid("good-peer")), bad]})

    async def peers(request: web.Request) -> web.Response:
        return web.Response(text=listing, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/peers", peers)
    async with serve(app) as hub_url, node_with_hub(tmp_path, hub_url) as node:
        status, html = await peers_page(node)
    assert status == 200
    assert listed_nodes(html) == {nid("good-peer")}


async def test_this_nodes_row_says_it_is_still_registering(tmp_path: Path) -> None:
    """A real node whose hub has not answered its first registration yet: its own row says
    so, where it said "now" whatever the hub had answered (and no hub at all looked alike)."""
    async with open_silent_server() as silent:
        hub_url = silent.url
        async with node_with_hub(tmp_path, hub_url) as node:
            status, html = await peers_page(node)
    assert status == 200
    row = re.search(r'<tr class="self".*?</tr>', html, re.S)
    assert row is not None
    assert f"registering with {hub_url} (its first attempt is under way)" in row.group(0)
    assert "the hub cannot be reached" in html  # its peers query met the same silence
