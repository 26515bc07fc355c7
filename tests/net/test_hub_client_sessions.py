"""A node's side of session keys against hubs that key none: an older hub (a plain aiohttp
app on 127.0.0.1 answering as hubs did before sessions) is never sent a session-signed
request or asked to re-key; a hub that fails the re-key is asked again only after
``REKEY_BACKOFF``. And the hub's session table is bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.session_auth import HEADER_SESSION, EphemeralKey
from swarmget.hub.sessions import HubSessions
from swarmget.net.hub_client import REKEY_BACKOFF, HubClient, Registration
from swarmget.testing.fakes import identity_for

SECRET = b"client-sessions-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)


@dataclass
class OldHub:
    url: str = ""
    session_signed: int = 0
    rekeys: int = 0
    seen_keys: list[object] = field(default_factory=list)


@pytest.fixture
async def old_hub() -> AsyncIterator[OldHub]:
    hub = OldHub()
    node = identity_for("old-hub-node").node_id

    async def register(request: web.Request) -> web.Response:
        hub.seen_keys.append((await request.json()).get("session_key"))
        answer = {"node_id": node, "address": "127.0.0.1", "group": "127.0.0.0/16"}
        answer |= {"url": "http://127.0.0.1:7500", "ttl": 15.0, "heartbeat_interval": 5.0}
        return web.json_response(answer)

    async def beat(request: web.Request) -> web.Response:
        hub.session_signed += HEADER_SESSION in request.headers
        return web.json_response({"ok": True, "ttl": 15.0, "heartbeat_interval": 5.0})

    async def rekey(request: web.Request) -> web.Response:
        hub.rekeys += 1
        return web.json_response({"error": "Not Found", "code": "http"}, status=404)

    app = web.Application()
    app.router.add_post("/v1/nodes/register", register)
    app.router.add_post("/v1/nodes/{node}/heartbeat", beat)
    app.router.add_post("/v1/nodes/{node}/session", rekey)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        hub.url = f"http://{host}:{port}"
        yield hub
    finally:
        await runner.cleanup()


async def test_an_older_hub_is_never_asked_for_sessions(old_hub: OldHub) -> None:
    async with aiohttp.ClientSession() as http:
        node = HubClient(http, old_hub.url, SECRET, identity_for("old-hub-node"))
        await node.register(REG)
        for _ in range(3):
            await node.heartbeat()
    assert old_hub.seen_keys != [None]  # the registration offered a key, the hub ignored it
    assert node.session is None
    assert (old_hub.session_signed, old_hub.rekeys) == (0, 0)


async def test_a_failed_rekey_waits_for_the_backoff(old_hub: OldHub) -> None:
    clock = [1000.0]
    async with aiohttp.ClientSession() as http:
        # never registered with this hub (a pool moved to it): it re-keys after a heartbeat
        node = HubClient(
            http, old_hub.url, SECRET, identity_for("old-hub-node"), clock=lambda: clock[0]
        )
        await node.heartbeat()
        await node.heartbeat()
        assert old_hub.rekeys == 1
        clock[0] += REKEY_BACKOFF + 1
        await node.heartbeat()
        assert old_hub.rekeys == 2
        assert node.session is None


def test_the_hub_session_table_is_bounded() -> None:
    sessions = HubSessions(max_sessions=2)
    grants = {name: sessions.grant(name, EphemeralKey().public_b64) for name in "abc"}
    assert len(sessions) == 2
    assert sessions.key_of("a", grants["a"].session_id) is None  # the oldest went
    assert sessions.key_of("c", grants["c"].session_id) is not None
    assert sessions.key_of("c", grants["b"].session_id) is None  # not c's session
    sessions.forget("c")
    assert sessions.key_of("c", grants["c"].session_id) is None
