"""A node that moves to another replica keys its session there with its first heartbeat
(issue #17: what a move costs the survivor, bench/README "Moves").

The hubs are real aiohttp servers on 127.0.0.1 sharing one in-memory registry (as replicas
share one database), each with its own sessions (as replicas key separately); clients are
real ``HubPool`` / ``HubClient`` objects over real sockets, and the requests each hub gets
are counted on the client's session (aiohttp tracing). Before, a move was two requests (a
heartbeat signed with the node key, then ``POST /v1/nodes/{id}/session``): now one. The
rules: only a heartbeat signed with the node key may ask for a session (403 otherwise), a
node the registry does not know gets no session (404), a malformed key is a 400; a hub that
answers no session (older) is still asked with the re-key route.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from swarmget.core.session_auth import (
    EphemeralKey,
    SessionKey,
    accept_session,
    decode_public_key,
    session_signed_headers,
)
from swarmget.hub.app import make_hub_app
from swarmget.net.hub_client import HubClient, HubPool, Registration
from swarmget.net.signing import json_body, new_nonce, signed_headers
from swarmget.testing.fakes import MemoryRegistryStore, identity_for

SECRET = b"move-session-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)


@dataclass
class Hubs:
    stack: AsyncExitStack
    session: aiohttp.ClientSession
    #: (method, URL) of every request the client session sent, in order
    sent: list[tuple[str, URL]]
    store: MemoryRegistryStore = field(default_factory=MemoryRegistryStore)

    async def start(self, app: web.Application | None = None) -> str:
        app = app or make_hub_app(self.store, SECRET, ttl=15.0, nonces=self.store)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def sent_to(self, url: str) -> list[tuple[str, str]]:
        """(method, path) of the API requests sent to ``url`` (not ``/metrics``); forgets
        them."""
        base = URL(url)
        out = [
            (m, u.path)
            for m, u in self.sent
            if (u.host, u.port) == (base.host, base.port) and u.path.startswith("/v1/")
        ]
        self.sent.clear()
        return out

    async def metric(self, url: str, name: str) -> float:
        async with self.session.get(url + "/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


@pytest.fixture
async def hubs() -> AsyncIterator[Hubs]:
    sent: list[tuple[str, URL]] = []

    async def on_start(_s: Any, _ctx: SimpleNamespace, params: Any) -> None:
        sent.append((params.method, params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession(trace_configs=[trace]))
        yield Hubs(stack, session, sent)


def _beat_path(node_id: str) -> str:
    return f"/v1/nodes/{node_id}/heartbeat"


async def test_a_moving_node_keys_its_session_with_its_first_heartbeat(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    pool = HubPool(hubs.session, [a, b], SECRET, identity_for("mover"))
    await pool.register(REG)
    watched = pool.watched()
    assert watched is not None
    hubs.sent.clear()

    assert pool.replica_gone(watched[0], watched[1], told_by=1)  # as a replica watch does
    answer = await pool.heartbeat({"slots": 2})
    assert answer.ok
    assert hubs.sent_to(b) == [("POST", _beat_path(pool.node_id))]  # one request, no re-key
    assert pool.clients[1].session is not None
    assert await hubs.metric(b, "swarmget_hub_sessions_agreed_total") == 1

    await pool.heartbeat({"slots": 2})  # signed with the session agreed by the move
    assert await hubs.metric(b, "swarmget_hub_session_requests_total") == 1
    assert hubs.sent_to(b) == [("POST", _beat_path(pool.node_id))]


async def test_a_refused_session_is_replaced_by_the_heartbeat_sent_again(hubs: Hubs) -> None:
    url = await hubs.start()
    client = HubClient(hubs.session, url, SECRET, identity_for("stale"))
    await client.register(REG)
    stale = SessionKey("A" * 22, b"k" * 32)
    client.session = stale  # as after the hub restarted
    hubs.sent.clear()
    assert (await client.heartbeat()).ok
    path = _beat_path(client.node_id)
    assert hubs.sent_to(url) == [("POST", path), ("POST", path)]  # refused, then the node key
    assert client.session is not None
    assert client.session.session_id != stale.session_id
    assert await hubs.metric(url, "swarmget_hub_sessions_agreed_total") == 2


async def _beat(
    hubs: Hubs, url: str, name: str, body: dict[str, Any], session: SessionKey | None = None
) -> tuple[int, dict[str, Any]]:
    """A heartbeat of ``identity_for(name)`` with ``body``, signed with its node key (or
    ``session``)."""
    ident = identity_for(name)
    path = _beat_path(ident.node_id)
    raw = json_body(body)
    if session is None:
        headers = signed_headers(SECRET, ident, "POST", URL(url + path), raw)
    else:
        headers = session_signed_headers(
            SECRET, session, node_id=ident.node_id, method="POST", path=path, body=raw,
            now=time.time(), nonce=new_nonce(),
        )  # fmt: skip
    headers["Content-Type"] = "application/json"
    async with hubs.session.post(url + path, data=raw, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_only_a_heartbeat_signed_with_the_node_key_gets_a_session(hubs: Hubs) -> None:
    url = await hubs.start()
    await HubClient(hubs.session, url, SECRET, identity_for("asker"), sessions=False).register(REG)
    ident, mine = identity_for("asker"), EphemeralKey()
    status, answer = await _beat(hubs, url, "asker", {"stats": {}, "session_key": mine.public_b64})
    assert status == 200
    hub_key = decode_public_key(answer["session"]["hub_key"])
    assert hub_key is not None
    session = mine.agree(
        hub_key, node_id=ident.node_id, session_id=answer["session"]["session_id"],
        node_public=mine.public,
    )  # fmt: skip
    status, answer = await _beat(hubs, url, "asker", {"stats": {}}, session)
    assert (status, "session" in answer) == (200, False)

    # a session-signed heartbeat may not ask for a new session
    body = {"stats": {}, "session_key": EphemeralKey().public_b64}
    status, answer = await _beat(hubs, url, "asker", body, session)
    assert (status, answer["code"]) == (403, "forbidden")
    # a node the registry does not know: 404, and no session agreed
    status, answer = await _beat(hubs, url, "stranger", body)
    assert (status, answer["code"]) == (404, "unknown_node")
    # a malformed key
    status, answer = await _beat(hubs, url, "asker", {"stats": {}, "session_key": "nope"})
    assert (status, answer["code"]) == (400, "bad_request")
    assert await hubs.metric(url, "swarmget_hub_sessions_agreed_total") == 1


def _older_hub() -> tuple[web.Application, list[str]]:
    """A hub older than sessions agreed by heartbeats (signatures not checked: a fake): its
    heartbeat answers no session whatever the body; it keys with the re-key route."""
    keyed: list[str] = []

    async def beat(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "ttl": 15.0, "heartbeat_interval": 5.0})

    async def rekey(request: web.Request) -> web.Response:
        node_id = request.match_info["node_id"]
        public = decode_public_key((await request.json())["session_key"])
        assert public is not None
        hub_key, session = accept_session(node_id, public)
        keyed.append(session.session_id)
        return web.json_response({"session_id": session.session_id, "hub_key": hub_key})

    app = web.Application()
    app.router.add_post("/v1/nodes/{node_id}/heartbeat", beat)
    app.router.add_post("/v1/nodes/{node_id}/session", rekey)
    return app, keyed


async def test_a_hub_that_answers_no_session_is_asked_with_the_rekey_route(
    hubs: Hubs,
) -> None:
    app, keyed = _older_hub()
    url = await hubs.start(app)
    client = HubClient(hubs.session, url, SECRET, identity_for("old-hub"))
    assert (await client.heartbeat()).ok
    assert client.session is not None
    assert [client.session.session_id] == keyed
    assert [m for m, _ in hubs.sent_to(url)] == ["POST", "POST"]
