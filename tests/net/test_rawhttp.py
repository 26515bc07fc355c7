"""The raw range client (``net.rawhttp``) on real sockets: the test origin, and tiny
asyncio servers that answer with exactly the bytes a test needs."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.errors import ForbiddenTarget, SourceBroken, SourceRetryable
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.lowat import MAX_LOWAT, ReadCoalescer
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.net.rawhttp import RAW_CHUNK, RawHttp, RawUnsupported
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as server:
        server.add_generated("f.bin", 24 * MiB)
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _info(client: OriginClient, url: str) -> OriginInfo:
    return await client.probe(url)


async def _collect(client: OriginClient, info: OriginInfo, rng: ByteRange) -> list[memoryview]:
    """Every chunk, kept (views of the reader's buffers)."""
    async with client.open_range(info, rng) as body:
        return [memoryview(chunk) async for chunk in body]


def _expected(origin: TestOrigin, rng: ByteRange) -> bytes:
    return origin.content("f.bin")[rng.start : rng.end]


async def test_ranges_share_one_keep_alive_connection(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with RawHttp() as raw:
        client = OriginClient(session, raw=raw)
        info = await _info(client, origin.url("f.bin"))
        for rng in (ByteRange(0, 3 * MiB), ByteRange(5 * MiB, 9 * MiB + 7), ByteRange(7, 8)):
            chunks = await _collect(client, info, rng)
            assert b"".join(chunks) == _expected(origin, rng)
            assert max(len(c) for c in chunks) <= RAW_CHUNK
        assert raw.connects == 1


async def test_kept_chunks_are_never_overwritten(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    """Holding every chunk while the reader goes on (and reads ahead) keeps them intact:
    a buffer is only refilled when no view of it is left."""
    async with RawHttp() as raw:
        client = OriginClient(session, raw=raw)
        info = await _info(client, origin.url("f.bin"))
        rng = ByteRange(1, 24 * MiB)
        chunks = await _collect(client, info, rng)
        assert len(chunks) > 8  # more chunks than a body keeps buffers
        assert (
            hashlib.sha256(b"".join(chunks)).digest()
            == hashlib.sha256(_expected(origin, rng)).digest()
        )


async def test_dropped_chunks_let_buffers_be_reused(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    """A chunk nobody holds any more frees its buffer for the next read, and a finished
    body's buffers serve the next body (no 1 MiB allocation per read)."""
    async with RawHttp() as raw:
        client = OriginClient(session, raw=raw)
        info = await _info(client, origin.url("f.bin"))
        seen: list[set[int]] = []
        for rng in (ByteRange(0, 12 * MiB), ByteRange(12 * MiB, 24 * MiB)):
            digest = hashlib.sha256()
            async with client.open_range(info, rng) as body:
                async for chunk in body:
                    digest.update(chunk)
                buffers = body._buffers  # type: ignore[attr-defined]
            assert digest.digest() == hashlib.sha256(_expected(origin, rng)).digest()
            assert len(buffers) <= 4
            seen.append({id(b) for b in buffers})
        assert seen[0] == seen[1]  # the second body reused the first one's buffers


async def test_a_cancelled_wait_loses_nothing(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    """The helper's forwarding loop times out waits for the next chunk; the bytes the
    thread read meanwhile must come with the next call."""
    origin.configure(rate_per_conn=2 * MiB)
    async with RawHttp() as raw:
        client = OriginClient(session, raw=raw)
        info = await _info(client, origin.url("f.bin"))
        rng = ByteRange(0, MiB)
        got = bytearray()
        timeouts = 0
        async with client.open_range(info, rng) as body:
            it = aiter(body)
            while len(got) < len(rng):
                try:
                    async with asyncio.timeout(0.01):
                        got += await anext(it)
                except TimeoutError:
                    timeouts += 1
        assert timeouts > 0
        assert bytes(got) == _expected(origin, rng)


async def test_source_address_is_used(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    async with RawHttp(local_addr="127.0.0.3") as raw:
        client = OriginClient(session, raw=raw)
        info = await _info(client, origin.url("f.bin"))
        before = origin.stats().bytes_by_ip.get("127.0.0.3", 0)
        assert b"".join(await _collect(client, info, ByteRange(0, MiB))) == _expected(
            origin, ByteRange(0, MiB)
        )
        assert origin.stats().bytes_by_ip.get("127.0.0.3", 0) - before == MiB


async def test_the_address_policy_is_applied(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    info = await _info(OriginClient(session), origin.url("f.bin"))  # not guarded
    async with RawHttp(policy=AddressPolicy()) as raw:
        client = OriginClient(session, raw=raw)
        served = origin.stats().bytes_total
        with pytest.raises(ForbiddenTarget, match="refusing to connect to 127.0.0.1"):
            await _collect(client, info, ByteRange(0, 10))
        with pytest.raises(ForbiddenTarget, match="refusing to connect to 127.0.0.1"):
            await client.probe(origin.url("f.bin"))
        assert raw.connects == 0
        assert origin.stats().bytes_total == served
    allowed = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
    async with RawHttp(policy=allowed) as raw:
        client = OriginClient(session, raw=raw)
        assert b"".join(await _collect(client, info, ByteRange(0, 10))) == _expected(
            origin, ByteRange(0, 10)
        )


async def test_a_pooled_connection_does_not_keep_the_low_water_mark(
    origin: TestOrigin, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reading thread raises SO_RCVLOWAT (here: as high as the body allows, on every
    read); a connection goes back to the pool with it at 1, or the next answer's head (a few
    hundred bytes) would wait for bytes that never come."""

    def greedy(self: ReadCoalescer, seen: int, remaining: int) -> None:
        self._set(max(1, min(MAX_LOWAT, remaining)))

    monkeypatch.setattr(ReadCoalescer, "before_read", greedy)
    async with RawHttp(read_timeout=1.0) as raw:
        client = OriginClient(session, raw=raw, read_timeout=1.0)
        info = await _info(OriginClient(session), origin.url("f.bin"))
        rng = ByteRange(0, 3 * MiB + 5 * 1024)
        assert b"".join(await _collect(client, info, rng)) == _expected(origin, rng)
        (pooled,) = [conn for conns in raw._idle.values() for conn in conns]  # type: ignore[attr-defined]
        assert pooled.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
        small = ByteRange(10, 20)
        assert b"".join(await _collect(client, info, small)) == _expected(origin, small)
        assert raw.connects == 1


async def test_the_connection_is_closed_when_left_early(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    origin.configure(rate_per_conn=4 * MiB)
    async with RawHttp() as raw:
        client = OriginClient(session, raw=raw)
        info = await _info(client, origin.url("f.bin"))
        async with client.open_range(info, ByteRange(0, 8 * MiB)) as body:
            async for _ in body:
                break
        await _collect(client, info, ByteRange(0, 10))
        assert raw.connects == 2  # the first connection was not reused with a body pending


# --- scripted servers: exactly the bytes a test needs ---------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(script: Script) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await script(reader, writer)
            finally:
                writer.transport.abort()  # whatever the script did, nothing is left open

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f"

    yield start
    for server in servers:
        server.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


async def _drain(client: OriginClient, info: OriginInfo, rng: ByteRange) -> None:
    async with client.open_range(info, rng) as body:
        async for _ in body:
            pass


def _info_for(url: str, size: int = 100) -> OriginInfo:
    return OriginInfo(
        url=url,
        final_url=url,
        size=size,
        validator=Validator(etag='"v1"'),
        accepts_ranges=True,
        filename="f",
    )


def _head(length: int | None = 10, extra: str = "", rng: str = "0-9") -> bytes:
    fields = f'Content-Range: bytes {rng}/100\r\nETag: "v1"\r\n{extra}'
    if length is not None:
        fields += f"Content-Length: {length}\r\n"
    return f"HTTP/1.1 206 Partial Content\r\n{fields}\r\n".encode()


async def _read(raw: RawHttp, session: aiohttp.ClientSession, url: str, n: int = 10) -> bytes:
    client = OriginClient(session, raw=raw, read_timeout=2)
    async with client.open_range(_info_for(url), ByteRange(0, n)) as body:
        return b"".join([bytes(c) async for c in body])


async def test_a_stale_pooled_connection_is_replaced(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    """The server closes each connection after one answer, without saying so: the second
    request finds its pooled connection dead and goes out again on a new one."""

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_head() + b"0123456789")
        await writer.drain()
        writer.close()

    url = await scripted(once)
    async with RawHttp() as raw:
        assert await _read(raw, session, url) == b"0123456789"
        await asyncio.sleep(0.05)  # the FIN arrives while the connection sits in the pool
        assert await _read(raw, session, url) == b"0123456789"
        assert raw.connects == 2


async def test_a_close_racing_the_request_is_retried_once(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    """The pooled connection looks alive, but the server drops the next request unanswered
    (it closed just as we sent): sent again on a new connection, once."""
    answered = 0

    async def first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_head() + b"0123456789")
        await writer.drain()
        answered += 1
        try:
            await reader.readuntil(b"\r\n\r\n")  # the second request: hang up on it
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    url = await scripted(first_only)
    async with RawHttp() as raw:
        assert await _read(raw, session, url) == b"0123456789"
        assert await _read(raw, session, url) == b"0123456789"
        assert (raw.connects, answered) == (2, 2)


async def test_a_new_connection_closed_unanswered_is_retryable(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    url = await scripted(hang_up)
    async with RawHttp() as raw:
        with pytest.raises(SourceRetryable, match="closed before the response"):
            await _read(raw, session, url)
        assert raw.connects == 1


def _answer(data: bytes, *, then_wait: bool = False) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        if then_wait:
            await asyncio.sleep(5)
        writer.close()

    return script


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"HTTP/1.1 206 OK\r\nX: a\r\n folded\r\n\r\n", "folding"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "malformed response head"),
        (b"HTTP/1.1 206 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", "longer than"),
        (_head(extra="Transfer-Encoding: chunked\r\n"), "Transfer-Encoding and Content-Length"),
        (_head(length=12), "Content-Length 12"),
        (_head() + b"0123456789extra", "longer than 10"),
        (_head(length=None) + b"0123", "ended after 4 of 10"),
    ],
)
async def test_bad_answers_are_broken(
    scripted: Callable[[Script], Awaitable[str]],
    session: aiohttp.ClientSession,
    answer: bytes,
    match: str,
) -> None:
    url = await scripted(_answer(answer))
    async with RawHttp() as raw:
        with pytest.raises(SourceBroken, match=match):
            await _read(raw, session, url)


async def test_a_connection_closed_before_content_length_is_retryable(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    url = await scripted(_answer(_head() + b"0123"))
    async with RawHttp() as raw:
        with pytest.raises(SourceRetryable, match="closed after 4 of 10"):
            await _read(raw, session, url)


async def test_interim_answers_are_skipped(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    url = await scripted(_answer(early + _head() + b"0123456789"))
    async with RawHttp() as raw:
        assert await _read(raw, session, url) == b"0123456789"


async def test_a_silent_server_times_out(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    url = await scripted(_answer(_head() + b"0123", then_wait=True))
    async with RawHttp(read_timeout=0.3) as raw:
        client = OriginClient(session, raw=raw, read_timeout=0.3)
        with pytest.raises(SourceRetryable, match="timed out"):
            await _drain(client, _info_for(url), ByteRange(0, 10))


async def test_chunked_ranges_go_through_aiohttp(
    scripted: Callable[[Script], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    """A 206 with Transfer-Encoding: chunked is repeated through aiohttp (which decodes
    it) and that origin's later ranges go there directly."""
    requests = 0

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            requests += 1
            writer.write(
                _head(length=None, extra="Transfer-Encoding: chunked\r\n")
                + b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    url = await scripted(chunked)
    async with RawHttp() as raw:
        assert await _read(raw, session, url) == b"0123456789"
        assert requests == 2  # once raw, once through aiohttp
        client = OriginClient(session, raw=raw)
        for expected_requests in (4, 5):  # the second range goes to aiohttp directly
            async with client.open_range(_info_for(url), ByteRange(0, 10)) as body:
                assert b"".join([bytes(c) async for c in body]) == b"0123456789"
            assert requests == expected_requests
        assert client.choice.aiohttp_only() == {url.rsplit("/", 1)[0]}


def test_only_plain_http_without_credentials_is_supported() -> None:
    assert RawHttp.supports("http://example.com/f")
    assert RawHttp.supports("http://[::1]:8080/f?x=1")
    assert not RawHttp.supports("https://example.com/f")
    assert not RawHttp.supports("http://user:pw@example.com/f")
    assert not RawHttp.supports("ftp://example.com/f")
    assert not RawHttp.supports("not a url")


async def test_raw_unsupported_is_raised_before_the_body(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    url = await scripted(_answer(_head(length=None, extra="Transfer-Encoding: gzip\r\n")))
    async with RawHttp() as raw, raw.request("GET", url, {}, "GET") as answer:
        assert answer.status == 206
        with pytest.raises(RawUnsupported):
            answer.body(10)
