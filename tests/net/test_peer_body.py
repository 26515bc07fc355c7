"""A peer stream's body as the requester reads it in bulk (``stream_range`` →
``CheckedBody(bulk=True)``), against a real server over a socket that writes whatever bytes
it is told: exactly the range's bytes, or a typed error for a malformed head, a short
body, a body longer than the range, and a peer that stops sending. Bulk reads (a large
``SO_RCVLOWAT``, 1 MiB reads) never hold back a body's last bytes, and the rate measured on a
keep-alive connection sizes the next range's reads."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from swarmget.core.errors import SourceBroken, SourceError, SourceRetryable
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.lowat import BULK_LATENCY, BULK_MAX_LOWAT, ReadCoalescer
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import PeerAddress, PeerSource
from swarmget.protocol.peer import RANGE_HEADER, range_header
from swarmget.testing.fakes import identity_for

KiB = 1024
SECRET = b"b" * 32
SIZE = 4 * 1024 * KiB
INFO = OriginInfo(
    url="http://origin.example/f.bin",
    final_url="http://origin.example/f.bin",
    size=SIZE,
    validator=Validator(etag='"v1"'),
    accepts_ranges=True,
    filename="f.bin",
)
#: a server's answer to one request: it gets the range asked for and the stream to write
Answer = Callable[[ByteRange, asyncio.StreamWriter], Awaitable[None]]


def pattern(rng: ByteRange) -> bytes:
    return bytes((i * 7) % 251 for i in range(rng.start, rng.end))


def head(rng: ByteRange, length: int | None = None, extra: bytes = b"") -> bytes:
    n = rng.length if length is None else length
    return (
        f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n"
        f"{RANGE_HEADER}: {range_header(rng.start, rng.end)}\r\n".encode()
        + extra
        + b"\r\n"
    )


async def _read_request(reader: asyncio.StreamReader) -> ByteRange:
    """The range asked for, from the JSON body of the signed POST."""
    import json

    raw_head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in raw_head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    ask = json.loads(await reader.readexactly(length))
    return ByteRange(int(ask["start"]), int(ask["end"]))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[str]]]:
    """A peer on 127.0.0.1 answering every request on a connection with ``answer``."""
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def start(answer: Answer) -> str:
        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            writers.append(writer)
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                for _ in range(20):  # bounded: a keep-alive connection's requests
                    rng = await _read_request(reader)
                    await answer(rng, writer)
                    if writer.is_closing():
                        break
                    await writer.drain()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

        server = await asyncio.start_server(client, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
    for writer in writers:  # the connections still open: closed, their handlers ended
        writer.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    for writer in writers:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()
    for server in servers:
        await server.wait_closed()


def _source(session: aiohttp.ClientSession, url: str, read_timeout: float = 5.0) -> PeerSource:
    peer = PeerAddress(node_id="peer", url=url, slots=1)
    me = identity_for("requester")
    return PeerSource(session, peer, SECRET, me, download_id="d1", read_timeout=read_timeout)


async def _fetch(source: PeerSource, rng: ByteRange) -> bytes:
    got = bytearray()
    async with asyncio.timeout(30):
        async with source.open_range(INFO, rng) as body:
            async for chunk in body:
                got += chunk
    return bytes(got)


async def test_paced_ranges_on_one_connection_arrive_whole(
    serve: Callable[[Answer], Awaitable[str]],
) -> None:
    """Each range is sent in pieces with pauses (as a rate-limited helper does): with the
    rate of the last range carried over, the mark is large, but every body ends on time
    and whole (the mark never exceeds what is left of it)."""

    async def paced(rng: ByteRange, writer: asyncio.StreamWriter) -> None:
        data = pattern(rng)
        writer.write(head(rng))
        for at in range(0, len(data), 48 * KiB):
            writer.write(data[at : at + 48 * KiB])
            await writer.drain()
            await asyncio.sleep(0.03)

    url = await serve(paced)
    async with aiohttp.ClientSession() as session:
        source = _source(session, url)
        for k in range(3):  # 3 x 400 KiB, about 0.25 s each
            rng = ByteRange(k * 400 * KiB + 5, (k + 1) * 400 * KiB + 5)
            assert await _fetch(source, rng) == pattern(rng)


async def test_a_short_body_is_an_error(serve: Callable[[Answer], Awaitable[str]]) -> None:
    async def short(rng: ByteRange, writer: asyncio.StreamWriter) -> None:
        writer.write(head(rng) + pattern(rng)[: rng.length // 2])
        await writer.drain()
        writer.close()  # the connection ends half-way through the body

    async with aiohttp.ClientSession() as session:
        with pytest.raises(SourceRetryable):
            await _fetch(_source(session, await serve(short)), ByteRange(0, 300 * KiB))


async def test_a_body_longer_than_the_range_is_broken(
    serve: Callable[[Answer], Awaitable[str]],
) -> None:
    async def longer(rng: ByteRange, writer: asyncio.StreamWriter) -> None:
        more = ByteRange(rng.start, rng.end + 100 * KiB)
        writer.write(head(rng, length=more.length) + pattern(more))

    async with aiohttp.ClientSession() as session:
        with pytest.raises(SourceBroken):
            await _fetch(_source(session, await serve(longer)), ByteRange(0, 300 * KiB))


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 12\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
)
async def test_a_malformed_head_is_a_source_error(
    serve: Callable[[Answer], Awaitable[str]], raw: bytes
) -> None:
    async def malformed(rng: ByteRange, writer: asyncio.StreamWriter) -> None:
        writer.write(raw + b"0123456789")

    async with aiohttp.ClientSession() as session:
        with pytest.raises(SourceError):
            await _fetch(_source(session, await serve(malformed)), ByteRange(0, 10))


async def test_a_peer_that_stops_sending_times_out(
    serve: Callable[[Answer], Awaitable[str]],
) -> None:
    """Head and part of the body, then silence with the connection open: the read timeout
    ends it (a large receive low-water mark does not hide the silence)."""
    hold = asyncio.Event()

    async def stalls(rng: ByteRange, writer: asyncio.StreamWriter) -> None:
        writer.write(head(rng) + pattern(rng)[: 100 * KiB])
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await hold.wait()

    async with aiohttp.ClientSession() as session:
        source = _source(session, await serve(stalls), read_timeout=0.5)
        try:
            with pytest.raises(SourceRetryable):
                await _fetch(source, ByteRange(0, 1024 * KiB))
        finally:
            hold.set()


class _FakeSocket:
    family = socket.AF_INET
    type = socket.SOCK_STREAM

    def __init__(self) -> None:
        self.marks: list[int] = []

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.marks.append(value)


class _FakeTransport:
    def __init__(self) -> None:
        self.sock = _FakeSocket()

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


def test_a_connection_keeps_its_bulk_coalescer_and_rate() -> None:
    transport = _FakeTransport()
    first = ReadCoalescer.bulk(transport)
    now = [0.0]
    first._clock = lambda: now[0]
    first.body_starts()
    now[0] = 1.0
    first.before_read(seen=300 * KiB, remaining=2 * 1024 * KiB)
    assert first.mark == 128 * KiB  # 300 KiB/s x BULK_LATENCY, down to a power of two
    assert first.mark <= 300 * KiB * BULK_LATENCY
    first.reset()  # the body ended: the connection goes back to the pool
    again = ReadCoalescer.bulk(transport)
    assert again is first
    again.before_read(seen=0, remaining=300 * KiB)  # the next range: its first read
    assert again.mark == 128 * KiB
    again.before_read(seen=250 * KiB, remaining=50 * KiB)
    assert again.mark == 50 * KiB
    assert ReadCoalescer.bulk(_FakeTransport()).mark == 1  # another connection: not yet
    assert BULK_MAX_LOWAT >= 128 * KiB
