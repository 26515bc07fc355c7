"""Session keys (issue #17, ``swarmget.core.session_auth``, ``swarmget.hub.sessions``):
a real hub process on SQLite and signed clients over real HTTP. A session-signed heartbeat
is accepted; a forged HMAC, a replay, a session of another node and a session the hub does
not hold are refused with their codes; a client whose session is refused goes on with its
node key and agrees on a new one; node-key heartbeats keep working."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from swarmget.core.session_auth import SessionKey, session_signed_headers
from swarmget.net.hub_client import HubClient, HubPool, Registration
from swarmget.net.membership import run_membership
from swarmget.net.signing import json_body, new_nonce, signed_headers
from swarmget.testing.fakes import identity_for
from swarmget.testing.swarm import HubProcs, Proc, open_hubs

SECRET = b"session-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)
BEAT = json_body({"stats": {"slots": 2}})


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[HubProcs]:
    async with open_hubs(tmp_path, SECRET.decode()) as procs:
        yield procs


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _hub(hubs: HubProcs, tmp_path: Path) -> str:
    proc: Proc = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", ttl=15)
    return str(proc.info["url"])


def _beat_path(node_id: str) -> str:
    return f"/v1/nodes/{node_id}/heartbeat"


async def _send(
    http: aiohttp.ClientSession, url: str, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    body = BEAT if method == "POST" else None
    sent = dict(headers) | ({"Content-Type": "application/json"} if body else {})
    async with http.request(method, url + path, data=body, headers=sent) as resp:
        return resp.status, await resp.json()


def _session_headers(
    session: SessionKey, node_id: str, method: str, path: str, *, nonce: str | None = None
) -> dict[str, str]:
    body = BEAT if method == "POST" else b""
    return session_signed_headers(
        SECRET,
        session,
        node_id=node_id,
        method=method,
        path=URL(path).raw_path_qs,
        body=body,
        now=time.time(),
        nonce=nonce or new_nonce(),
    )


async def test_session_heartbeats_and_refusals(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await _hub(hubs, tmp_path)
    a = HubClient(session, url, SECRET, identity_for("sess-a"))
    b = HubClient(session, url, SECRET, identity_for("sess-b"))
    await a.register(REG)
    await b.register(REG)
    assert a.session is not None
    assert b.session is not None
    assert a.session.session_id != b.session.session_id
    await a.heartbeat({"slots": 2})  # the client signs it with its session
    await a.peers()

    # a session-signed heartbeat, by hand: accepted
    path = _beat_path(a.node_id)
    headers = _session_headers(a.session, a.node_id, "POST", path)
    status, answer = await _send(session, url, "POST", path, headers)
    assert (status, answer["ok"]) == (200, True)
    # the same request again: a replay
    status, answer = await _send(session, url, "POST", path, headers)
    assert (status, answer["code"]) == (401, "replayed")

    # a forged HMAC (the right session id, a wrong key)
    forged = SessionKey(a.session.session_id, secrets.token_bytes(32))
    status, answer = await _send(
        session, url, "POST", path, _session_headers(forged, a.node_id, "POST", path)
    )
    assert (status, answer["code"]) == (401, "bad_identity")

    # b uses a's session (id and key) for its own heartbeat: not b's session
    b_path = _beat_path(b.node_id)
    status, answer = await _send(
        session, url, "POST", b_path, _session_headers(a.session, b.node_id, "POST", b_path)
    )
    assert (status, answer["code"]) == (401, "session_unknown")
    # b claims a's node id with its own session: the key is not a's
    status, answer = await _send(
        session, url, "POST", path, _session_headers(b.session, a.node_id, "POST", path)
    )
    assert (status, answer["code"]) in {(401, "session_unknown"), (401, "bad_identity")}

    # a session the hub never agreed
    unknown = SessionKey(secrets.token_urlsafe(16), secrets.token_bytes(32))
    status, answer = await _send(
        session, url, "POST", path, _session_headers(unknown, a.node_id, "POST", path)
    )
    assert (status, answer["code"]) == (401, "session_unknown")

    # a session signs only heartbeats and peers queries: not a departure
    gone = f"/v1/nodes/{a.node_id}"
    status, answer = await _send(
        session, url, "DELETE", gone, _session_headers(a.session, a.node_id, "DELETE", gone)
    )
    assert (status, answer["code"]) == (401, "auth")

    # node-key heartbeats still work, for a node holding a session too
    status, answer = await _send(
        session,
        url,
        "POST",
        path,
        signed_headers(SECRET, identity_for("sess-a"), "POST", path, BEAT),
    )
    assert status == 200


async def test_a_refused_session_is_replaced(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await _hub(hubs, tmp_path)
    a = HubClient(session, url, SECRET, identity_for("sess-c"))
    await a.register(REG)
    stale = SessionKey(secrets.token_urlsafe(16), secrets.token_bytes(32))
    a.session = stale  # as after a hub restart or a move to another replica
    answer = await a.heartbeat()  # refused session → node key → new session
    assert answer.ok
    assert a.session is not None
    assert a.session.session_id != stale.session_id
    path = _beat_path(a.node_id)
    status, _ = await _send(
        session, url, "POST", path, _session_headers(a.session, a.node_id, "POST", path)
    )
    assert status == 200
    a.session = stale  # a peers query recovers the same way
    await a.peers()
    assert a.session is None  # dropped; the next heartbeat re-keys
    await a.heartbeat()
    assert a.session is not None
    assert a.session.session_id != stale.session_id


async def test_restarted_hub_rekeys_the_node(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A hub that does not hold the node's session (here: a new process on the same
    registry, as a replica is) answers ``session_unknown``; the node goes on."""
    first = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}", ttl=15)
    a = HubClient(session, str(first.info["url"]), SECRET, identity_for("sess-d"))
    await a.register(REG)
    old = a.session
    assert old is not None
    first.signal(signal.SIGKILL)
    await first.process.wait()
    second = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}", ttl=15)
    a.hub_url = str(second.info["url"])
    answer = await a.heartbeat()  # no registration needed: the registry knows the node
    assert answer.ok
    assert a.session is not None
    assert a.session.session_id != old.session_id
    await a.heartbeat()
    assert a.session is not None


async def test_node_key_only_client_keeps_working(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await _hub(hubs, tmp_path)
    a = HubClient(session, url, SECRET, identity_for("sess-e"), sessions=False)
    registered = await a.register(REG)
    assert registered.session is None
    assert a.session is None
    for _ in range(3):
        assert (await a.heartbeat()).ok
    await a.peers()
    assert a.session is None


async def test_bad_session_key_in_registration(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await _hub(hubs, tmp_path)
    ident = identity_for("sess-f")
    body = json_body(REG.as_json(ident.node_id) | {"session_key": "not-a-key"})
    path = "/v1/nodes/register"
    headers = signed_headers(SECRET, ident, "POST", path, body)
    headers["Content-Type"] = "application/json"
    async with session.post(url + path, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "bad_request"


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_the_membership_loop_heartbeats_with_a_session(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A node's membership loop (``run_membership`` over a ``HubPool``, as the daemon
    runs it) signs its heartbeats with the session it agreed at registration."""
    proc = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", ttl=3)
    url = str(proc.info["url"])
    pool = HubPool(session, [url], SECRET, identity_for("sess-g"))
    task = asyncio.create_task(run_membership(pool, REG, lambda: {"slots": 2}))
    try:
        deadline = time.monotonic() + 20
        while await _metric(session, url, "swarmget_hub_session_requests_total") < 2:
            assert time.monotonic() < deadline, "no session-signed heartbeats within 20 s"
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert pool.clients[0].session is not None
    assert await _metric(session, url, "swarmget_hub_sessions_agreed_total") == 1
