"""Node identity and replays, against real processes: ``swarmget hub`` and ``swarmget node``
on 127.0.0.x, a SQLite registry file, a node restarted on its state directory.

An attacker here is a *member*: it holds the swarm secret. The tests sign their requests
through the library where they act as themselves, and forge the swarm HMAC by hand where
they claim someone else's node id (as any holder of the secret can), adding a key of their
own when the code under test knows node keys. So the same file runs against the code
before node keys, and fails there: that code let a member take over any id and accepted
replays at a second replica, after a hub restart and after a node restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import signal
import stat
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from swarmget.core import auth, replay
from swarmget.net.signing import signed_headers
from swarmget.testing.swarm import (
    LocalSwarm,
    NodeApi,
    hub_args,
    node_args,
    open_local_swarm,
    start_proc,
)

try:
    from swarmget.core.identity import NodeIdentity
except ImportError:  # before node keys (4925e3b): run, and fail on the assertions
    NodeIdentity = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.slow
ATTACKER = "127.0.0.9"
#: Signed health checks a flooding member sends (the default per-sender share, and one more).
FLOOD = replay.DEFAULT_PER_SENDER + 1


class Member:
    """A holder of the swarm secret speaking as itself."""

    def __init__(self, secret: bytes, name: str) -> None:
        self.secret = secret
        self.identity = NodeIdentity.generate() if NodeIdentity is not None else None
        self.node_id = self.identity.node_id if self.identity is not None else name

    def headers(self, method: str, url: str, body: bytes = b"") -> dict[str, str]:
        who: Any = self.identity if self.identity is not None else self.node_id
        return signed_headers(self.secret, who, method, url, body)


def forged_headers(
    secret: bytes, victim: str, method: str, url: str, body: bytes = b""
) -> dict[str, str]:
    """Headers claiming ``victim``'s node id: the swarm HMAC is right (the attacker holds
    the secret), the node key (if the code asks for one) is the attacker's own."""
    nonce, timestamp = secrets.token_urlsafe(18), int(time.time())
    canonical = auth.canonical_string(
        method=method,
        path=URL(url).raw_path_qs,
        digest=hashlib.sha256(body).hexdigest(),
        timestamp=timestamp,
        node_id=victim,
        nonce=nonce,
    )
    headers = {
        auth.HEADER_NODE: victim,
        auth.HEADER_TIME: str(timestamp),
        auth.HEADER_NONCE: nonce,
        auth.HEADER_SIGNATURE: hmac.new(secret, canonical, hashlib.sha256).hexdigest(),
    }
    if NodeIdentity is not None:
        own = NodeIdentity.generate()
        headers["X-Swarm-Key"] = _b64(own.public_key)
        headers["X-Swarm-Key-Signature"] = _b64(own.sign(canonical))
    return headers


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _register_body(node_id: str, port: int) -> bytes:
    return (
        f'{{"node_id":"{node_id}","port":{port},"version":"0.1.0","slots":2,'
        '"group":null,"wan_rate":null,"quota_left":null,"scheme":"http"}'
    ).encode()


@pytest.fixture
async def sessions() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """Client sessions speaking from given loopback addresses."""
    async with AsyncExitStack() as stack:

        class _Sessions(dict[str, aiohttp.ClientSession]):
            def __missing__(self, ip: str) -> aiohttp.ClientSession:
                connector = aiohttp.TCPConnector(local_addr=(ip, 0), limit=32)
                session = aiohttp.ClientSession(connector=connector)
                stack.push_async_callback(session.close)
                self[ip] = session
                return session

        yield _Sessions()


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, dict[str, Any]]:
    headers = headers | ({"Content-Type": "application/json"} if body else {})
    async with session.request(method, url, data=body or None, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _peers_of(session: aiohttp.ClientSession, swarm: LocalSwarm, i: int) -> list[Any]:
    return await NodeApi(session, swarm.node(i)).peers()


async def _until_listed(session: aiohttp.ClientSession, swarm: LocalSwarm) -> None:
    """Until node 1 sees node 0 (bounded: 15 s)."""
    async with asyncio.timeout(15):
        while not await _peers_of(session, swarm, 1):
            await asyncio.sleep(0.1)


async def _hub_state(session: aiohttp.ClientSession, swarm: LocalSwarm, i: int) -> Any:
    _, status = await NodeApi(session, swarm.node(i)).call("GET", "/v1/status")
    return status["hub"]


def _secret(swarm: LocalSwarm) -> bytes:
    return swarm.secret_file.read_bytes().strip()


# --- identity ----------------------------------------------------------------------------------


async def test_a_member_cannot_take_over_another_nodes_id(
    tmp_path: Path, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    async with open_local_swarm(tmp_path, 2, hub_ttl=10.0) as swarm:
        local = sessions["127.0.0.1"]
        await _until_listed(local, swarm)
        victim, hub = swarm.node(0).node_id, str(swarm.hub.info["url"])
        secret, attacker = _secret(swarm), sessions[ATTACKER]

        url, body = f"{hub}/v1/nodes/register", _register_body(victim, 9)
        status, answer = await _send(
            attacker, "POST", url, forged_headers(secret, victim, "POST", url, body), body
        )
        assert (status, answer.get("code")) == (401, "bad_identity")
        url = f"{hub}/v1/nodes/{victim}"
        status, answer = await _send(
            attacker, "DELETE", url, forged_headers(secret, victim, "DELETE", url)
        )
        assert (status, answer.get("code")) == (401, "bad_identity")

        [peer] = await _peers_of(local, swarm, 1)
        assert (peer["node_id"], peer["address"]) == (victim, swarm.node(0).address)
        assert peer["url"] == swarm.node(0).proc.info["peer_url"]


async def test_a_member_cannot_speak_to_a_helper_as_another_node(
    tmp_path: Path, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    async with open_local_swarm(tmp_path, 2) as swarm:
        other = swarm.node(1).node_id
        url = f"{swarm.node(0).proc.info['peer_url']}/v1/health"
        headers = forged_headers(_secret(swarm), other, "GET", url)
        status, answer = await _send(sessions[ATTACKER], "GET", url, headers)
        assert (status, answer.get("code")) == (401, "bad_identity")


async def test_a_declared_group_is_only_joined_from_the_networks_the_hub_lists(
    tmp_path: Path, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    extra = {0: ["--group", "lab"], 1: ["--group", "lab"], 2: ["--group", "lab"]}
    async with open_local_swarm(
        tmp_path, 3, node_extra=extra, hub_extra=["--group-cidr", "lab=127.0.0.2/31"]
    ) as swarm:
        local = sessions["127.0.0.1"]
        async with asyncio.timeout(15):  # nodes 0 and 1 (127.0.0.2, .3) see each other
            while not await _peers_of(local, swarm, 0):
                await asyncio.sleep(0.1)
        [peer] = await _peers_of(local, swarm, 0)
        assert (peer["node_id"], peer["group"]) == (swarm.node(1).node_id, "lab")
        async with asyncio.timeout(15):  # until node 2 (127.0.0.4) has tried to register
            # (its status says "registering" until its first attempt ends)
            while not (hub := await _hub_state(local, swarm, 2)).get("error"):
                await asyncio.sleep(0.1)
        assert hub["registered"] is False  # 127.0.0.4 may not declare "lab"
        assert hub["state"] == "not_registered"
        assert "403" in hub["error"]


# --- replays -----------------------------------------------------------------------------------


async def test_a_register_is_accepted_once_by_all_replicas_and_across_a_hub_restart(
    tmp_path: Path, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    async with open_local_swarm(tmp_path, 0, hubs=2, hub_ttl=10.0) as swarm:
        member = Member(_secret(swarm), "member")
        hub_a, hub_b = swarm.hub_urls()
        body = _register_body(member.node_id, 7777)
        headers = member.headers("POST", f"{hub_a}/v1/nodes/register", body)
        status, answer = await _send(
            sessions["127.0.0.5"], "POST", f"{hub_a}/v1/nodes/register", headers, body
        )
        assert (status, answer["address"]) == (200, "127.0.0.5")

        # captured on the wire and replayed from elsewhere: to the other replica ...
        replay = sessions[ATTACKER]
        status, answer = await _send(replay, "POST", f"{hub_b}/v1/nodes/register", headers, body)
        assert (status, answer.get("code")) == (401, "replayed")

        # ... and to the first hub once it has restarted on the same database
        swarm.hubs[0].signal(signal.SIGKILL)
        await swarm.hubs[0].process.wait()
        db = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        args = hub_args(db, swarm.secret_file, 10.0)
        restarted = await start_proc(args, tmp_path / "hub-again.log", dict(os.environ))
        try:
            url = f"{restarted.info['url']}/v1/nodes/register"
            status, answer = await _send(replay, "POST", url, headers, body)
            assert (status, answer.get("code")) == (401, "replayed")
        finally:
            await restarted.stop()


async def test_a_request_to_a_node_is_not_accepted_again_after_the_node_restarts(
    tmp_path: Path, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    async with open_local_swarm(tmp_path, 1) as swarm:
        node = swarm.node(0)
        member = Member(_secret(swarm), "member")
        path = "/v1/health"
        headers = member.headers("GET", f"{node.proc.info['peer_url']}{path}")
        status, _ = await _send(
            sessions["127.0.0.5"], "GET", node.proc.info["peer_url"] + path, headers
        )
        assert status == 200

        await node.proc.stop()
        args = node_args(
            swarm.hub_urls(), node.address, swarm.secret_file, node.state_dir,
            node.download_dir, (),
        )  # fmt: skip
        again = await start_proc(args, tmp_path / "node0-again.log", dict(os.environ))
        try:
            assert again.info["node_id"] == node.node_id  # the same key, the same id
            url = f"{again.info['peer_url']}{path}"
            status, answer = await _send(sessions[ATTACKER], "GET", url, headers)
            assert (status, answer.get("code")) == (401, "replayed")
            fresh = member.headers("GET", url)
            status, _ = await _send(sessions["127.0.0.5"], "GET", url, fresh)
            assert status == 200
        finally:
            await again.stop()


async def test_one_member_flooding_a_helper_is_refused_alone(
    tmp_path: Path, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    async with open_local_swarm(tmp_path, 1) as swarm:
        secret = _secret(swarm)
        url = f"{swarm.node(0).proc.info['peer_url']}/v1/health"
        flooder, flood_session = Member(secret, "flooder"), sessions[ATTACKER]

        async def one(_: int) -> int:
            status, _answer = await _send(flood_session, "GET", url, flooder.headers("GET", url))
            return status

        statuses: list[int] = []
        for start in range(0, FLOOD, 64):
            batch = range(start, min(start + 64, FLOOD))
            statuses += await asyncio.gather(*(one(i) for i in batch))
        assert statuses.count(429) >= 1, "a sender over its share is refused"
        assert set(statuses) <= {200, 429}

        honest = Member(secret, "honest")
        status, _ = await _send(sessions["127.0.0.5"], "GET", url, honest.headers("GET", url))
        assert status == 200

        # minting node ids from one address does not get around the share either
        minted = [Member(secret, f"minted-{i}") for i in range(20)]
        minted_statuses = [
            (await _send(flood_session, "GET", url, m.headers("GET", url)))[0] for m in minted
        ]
        assert 429 in minted_statuses
        status, _ = await _send(
            sessions["127.0.0.6"], "GET", url, Member(secret, "h2").headers("GET", url)
        )
        assert status == 200


# --- the key file ------------------------------------------------------------------------------


async def test_the_node_key_is_private_and_kept(tmp_path: Path) -> None:
    async with open_local_swarm(tmp_path, 1) as swarm:
        node = swarm.node(0)
        key = node.state_dir / "node-key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(node.state_dir.stat().st_mode) == 0o700
        seed = bytes.fromhex(key.read_text().strip())
        assert NodeIdentity is not None
        assert NodeIdentity.from_seed(seed).node_id == node.node_id
