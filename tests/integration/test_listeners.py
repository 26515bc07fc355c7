"""Every listener of a node (peer API, local API with the portal) and of a relay, on real
sockets on 127.0.0.x: one address cannot hold more than its share of connections, and
half-sent heads and bodies are closed while everyone else is served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy
from swarmget.net.serve import DEFAULT_PER_ADDRESS, ListenLimits
from swarmget.node.daemon import NodeConfig
from swarmget.relay.run import RelayConfig, open_relay
from swarmget.run.node import open_node  # the node with its portal

SECRET = b"listener-test-secret-0123456789"
PATIENCE = 10.0  # bound on every wait for a server to act
HALF_HEAD = b"GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Slow: "
SLOW_BODY = b'POST /v1/range HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{"url": '
REFUSED = b"503 or reset"


@dataclass
class Servers:
    """The URLs (host, port) of every listener under test, by name."""

    urls: dict[str, str]
    conns: list[asyncio.StreamWriter]

    async def connect(self, name: str, source: str) -> asyncio.StreamReader:
        host, port = self.urls[name].removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        self.conns.append(writer)
        return reader


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """What a server said before it closed (REFUSED for a 503, or a reset that lost it)."""
    try:
        async with asyncio.timeout(PATIENCE):
            answer = await reader.read()
    except ConnectionResetError:
        return REFUSED
    return REFUSED if answer.startswith(b"HTTP/1.1 503 ") else answer


async def _status(url: str, source: str = "127.0.0.1") -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        asyncio.timeout(PATIENCE),
        session.get(url) as resp,
    ):
        return resp.status


async def _open_all(tmp_path: Path, stack: AsyncExitStack, **limits: float) -> Servers:
    extra = {"listen_limits": ListenLimits(**limits)}
    node = await stack.enter_async_context(
        open_node(
            NodeConfig(
                secret=SECRET,
                state_dir=tmp_path / "state",
                download_dir=tmp_path / "downloads",
                **extra,
            )
        )
    )
    relay = await stack.enter_async_context(
        open_relay(
            RelayConfig(
                secret=SECRET,
                cache_dir=tmp_path / "cache",
                budget=1 << 20,
                origin_policy=AddressPolicy(),
                **extra,
            )
        )
    )
    return Servers({"peer": node.peer_url, "api": node.api_url, "relay": relay.url}, [])


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


HEALTH = {"peer": "/v1/health", "api": "/portal/login", "relay": "/v1/blobs/" + "0" * 64}


@pytest.mark.parametrize("name", ["peer", "api", "relay"])
async def test_one_address_gets_its_share_of_connections(
    tmp_path: Path, stack: AsyncExitStack, name: str
) -> None:
    servers = await _open_all(tmp_path, stack)
    try:
        readers = [await servers.connect(name, "127.0.0.2") for _ in range(DEFAULT_PER_ADDRESS + 6)]
        for reader in readers[DEFAULT_PER_ADDRESS:]:
            assert await _answer(reader) == REFUSED
        # another address is served meanwhile
        assert await _status(servers.urls[name] + HEALTH[name], "127.0.0.3") < 500
    finally:
        for writer in servers.conns:
            writer.close()


@pytest.mark.parametrize("name", ["peer", "api", "relay"])
async def test_half_sent_heads_and_bodies_are_closed(
    tmp_path: Path, stack: AsyncExitStack, name: str
) -> None:
    servers = await _open_all(tmp_path, stack, head_timeout=0.5, body_timeout=0.5)
    try:
        heads = [await servers.connect(name, "127.0.0.2") for _ in range(10)]
        bodies = [await servers.connect(name, "127.0.0.3") for _ in range(10)]
        for writer in servers.conns[:10]:
            writer.write(HALF_HEAD)
        for writer in servers.conns[10:]:
            writer.write(SLOW_BODY)
        assert await _status(servers.urls[name] + HEALTH[name]) < 500
        for reader in heads:
            assert await _answer(reader) == b""
        for reader in bodies:  # closed (an API that refuses before reading says why first)
            assert not (await _answer(reader)).startswith(b"HTTP/1.1 2")
    finally:
        for writer in servers.conns:
            writer.close()


async def test_the_portal_believes_no_forwarded_header(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    """The portal's Host and Origin checks read the request itself: proxy headers a page
    (or a rebinding attacker) adds name nothing."""
    servers = await _open_all(tmp_path, stack)
    api = servers.urls["api"]
    own = api.removeprefix("http://")
    forged = {
        "X-Forwarded-Host": own,
        "Forwarded": f'for=127.0.0.1;host="{own}";proto=http',
        "X-Forwarded-For": "127.0.0.1",
    }
    async with aiohttp.ClientSession() as session:
        for path in ("/portal/", "/portal/login"):
            async with session.get(api + path, headers={"Host": "evil.example", **forged}) as r:
                assert r.status == 403
            async with session.get(api + path, headers=forged, allow_redirects=False) as r:
                assert r.status < 400
