"""``open_listener`` on real sockets on 127.0.0.x: slow or half-sent requests are cut off,
connections per address are capped, long responses are not, and a flood of malformed
requests logs a bounded number of short lines."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.addresses import parse_cidrs
from swarmget.core.ratelimit import EventBudget
from swarmget.net.serve import (
    LOG_BURST,
    ConnectionTable,
    Listening,
    ListenLimits,
    Refusal,
    open_listener,
)

HALF_HEAD = b"GET /ok HTTP/1.1\r\nHost: test\r\nX-Slow: "
#: Generous bound on any wait for the server to act (its deadlines here are 0.3-0.5 s).
PATIENCE = 10.0
STREAM_CHUNKS = 8
STREAM_PAUSE = 0.25  # STREAM_CHUNKS * STREAM_PAUSE is several head/body timeouts


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _port(request: web.Request) -> web.Response:
    """The client's port: the same on two requests means the same connection."""
    assert request.transport is not None
    return web.Response(text=str(request.transport.get_extra_info("peername")[1]))


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(STREAM_CHUNKS):
        await resp.write(b"x" * 1000)
        await asyncio.sleep(STREAM_PAUSE)
    await resp.write_eof()
    return resp


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ok", _ok)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/port", _port)
    return app


@dataclass
class Server:
    at: Listening

    async def connect(self, source: str = "127.0.0.1") -> Conn:
        reader, writer = await asyncio.open_connection(
            self.at.host, self.at.port, local_addr=(source, 0)
        )
        return Conn(reader, writer)


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_server(self) -> bytes:
        """Everything the server sends until it closes (fails after PATIENCE s)."""
        async with asyncio.timeout(PATIENCE):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def serving(limits: ListenLimits) -> AsyncIterator[Server]:
    async with open_listener(_app(), "127.0.0.1", 0, limits=limits, shutdown_timeout=0.1) as at:
        yield Server(at)


@pytest.fixture
async def conns() -> AsyncIterator[list[Conn]]:
    opened: list[Conn] = []
    yield opened
    for conn in opened:
        conn.close()


async def _get(server: Server, path: str = "/ok", source: str = "127.0.0.1") -> tuple[int, bytes]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        asyncio.timeout(PATIENCE),
        session.get(server.at.url + path) as resp,
    ):
        return resp.status, await resp.read()


async def test_half_sent_heads_are_closed_while_others_are_served(conns: list[Conn]) -> None:
    async with serving(ListenLimits(head_timeout=0.5, per_address=1000)) as server:
        for _ in range(40):
            conns.append(conn := await server.connect())
            await conn.send(HALF_HEAD)
        conns.append(await server.connect())  # connects and never says a word
        assert await _get(server) == (200, b"ok")
        for conn in conns:
            assert await conn.closed_by_server() == b""


async def test_a_head_trickled_byte_by_byte_is_closed(conns: list[Conn]) -> None:
    async with serving(ListenLimits(head_timeout=0.5)) as server:
        conns.append(conn := await server.connect())
        await conn.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")  # a first request: fine
        async with asyncio.timeout(PATIENCE):
            assert (await conn.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            assert await conn.reader.readexactly(2) == b"ok"
        closed = False
        # the next head, far longer than head_timeout at one byte per 50 ms
        for byte in HALF_HEAD + b"a" * round(4 * 0.5 / 0.05):
            try:
                await conn.send(bytes([byte]))
            except ConnectionError:
                closed = True
                break
            if conn.reader.at_eof():
                closed = True
                break
            await asyncio.sleep(0.05)
        assert closed or await conn.closed_by_server() == b""


async def test_a_slow_body_is_closed(conns: list[Conn]) -> None:
    async with serving(ListenLimits(head_timeout=5.0, body_timeout=0.5)) as server:
        conns.append(conn := await server.connect())
        await conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        assert await conn.closed_by_server() == b""
        assert await _get(server) == (200, b"ok")


async def test_a_complete_body_gets_its_answer(conns: list[Conn]) -> None:
    async with serving(ListenLimits(head_timeout=0.3, body_timeout=0.3)) as server:
        conns.append(conn := await server.connect())
        await conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        await asyncio.sleep(0.1)
        await conn.send(b"56789")
        async with asyncio.timeout(PATIENCE):
            head = await conn.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await conn.reader.readexactly(2) == b"10"


async def test_long_responses_and_idle_keep_alive_are_not_cut(conns: list[Conn]) -> None:
    limits = ListenLimits(head_timeout=0.3, body_timeout=0.3)
    async with (
        serving(limits) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session,
    ):
        async with asyncio.timeout(PATIENCE), session.get(server.at.url + "/port") as resp:
            first = await resp.read()
        async with asyncio.timeout(PATIENCE), session.get(server.at.url + "/stream") as resp:
            assert len(await resp.read()) == STREAM_CHUNKS * 1000
        await asyncio.sleep(1.0)  # idle on the kept-alive connection, > head_timeout
        async with asyncio.timeout(PATIENCE), session.get(server.at.url + "/port") as resp:
            assert await resp.read() == first  # the same connection served all three


async def test_connections_per_address_are_capped(conns: list[Conn]) -> None:
    async with serving(ListenLimits(head_timeout=30.0, per_address=4)) as server:
        for _ in range(4):
            conns.append(await server.connect("127.0.0.2"))
        conns.append(fifth := await server.connect("127.0.0.2"))
        answer = await fifth.closed_by_server()
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 1" in answer
        assert await _get(server, source="127.0.0.3") == (200, b"ok")  # others are served
        conns[0].close()  # one of the four goes: room for one more
        for _ in range(round(PATIENCE / 0.05)):
            status = await _get(server, source="127.0.0.2")
            if status == (200, b"ok"):
                break
            await asyncio.sleep(0.05)
        assert status == (200, b"ok")


async def test_connections_in_all_are_capped(conns: list[Conn]) -> None:
    async with serving(ListenLimits(head_timeout=30.0, max_connections=3)) as server:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            conns.append(await server.connect(source))
        conns.append(fourth := await server.connect("127.0.0.5"))
        assert (await fourth.closed_by_server()).startswith(b"HTTP/1.1 503 ")


async def test_a_flood_of_malformed_requests_logs_a_few_short_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    garbage = [
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
        b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",  # then hangs up
    ]
    async with serving(ListenLimits()) as server:
        for i in range(200):
            conn = await server.connect()
            await conn.send(garbage[i % len(garbage)])
            if i % len(garbage) == len(garbage) - 1:
                conn.close()
            else:
                assert (await conn.closed_by_server()).startswith(b"HTTP/1.")
                conn.close()
        assert await _get(server) == (200, b"ok")
    lines = [r for r in caplog.records if r.name.startswith(("swarmget", "aiohttp"))]
    assert 1 <= len(lines) <= LOG_BURST + 1
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)


def test_trusted_proxies_have_no_per_address_cap() -> None:
    proxy, client = ipaddress.ip_address("10.0.0.2"), ipaddress.ip_address("10.0.0.9")
    table = ConnectionTable(per_address=2, total=10, uncounted=parse_cidrs("10.0.0.0/30"))
    assert [table.admit(proxy) for _ in range(5)] == [None] * 5
    assert [table.admit(client) for _ in range(3)] == [None, None, Refusal.ADDRESS_FULL]
    assert [table.admit(proxy) for _ in range(4)] == [None, None, None, Refusal.SERVER_FULL]
    table.release(client)
    assert table.admit(client) is None
    assert (table.open_from(proxy), table.open_from(client)) == (8, 2)


def test_event_budget_allows_a_burst_then_a_rate() -> None:
    budget = EventBudget(rate=0.5, burst=3)
    assert [budget.allow(100.0) for _ in range(5)] == [True, True, True, False, False]
    assert budget.allow(101.0) is False  # half a token
    assert budget.allow(102.0) is True
    assert budget.take_skipped() == 3
    assert budget.take_skipped() == 0
