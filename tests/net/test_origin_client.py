"""OriginClient against small aiohttp servers on 127.0.0.1 (real sockets, loopback only)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.digests import Digest
from swarmget.core.errors import (
    InvalidURL,
    OriginChanged,
    OriginUnusable,
    RangesIgnored,
    SourceBroken,
    SourceRateLimited,
    SourceRetryable,
)
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.net.rawhttp import RAW_CHUNK, RawHttp

DATA = bytes(range(256)) * 4096  # 1 MiB
ETAG = '"v1"'
LM = "Tue, 14 Nov 2023 22:13:20 GMT"
REPR_DIGEST = "sha-256=:" + base64.b64encode(hashlib.sha256(DATA).digest()).decode() + ":"
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Origin:
    """A configurable origin: ``/file`` serves DATA with ranges and If-Range; the other
    routes each misbehave in one way. ``seen`` records every request."""

    etag: str = ETAG
    honour_if_range: bool = True
    redirect_file_to: str | None = None
    cross_to: str = ""
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        add = app.router.add_route
        add("*", "/file", self.file)
        add("GET", "/nohead", self.file)
        add("*", "/noranges", self.no_ranges)
        add("*", "/wrong-range", self.wrong_range)
        add("*", "/short", self.short)
        add("*", "/gzip", self.gzip)
        add("*", "/busy", self.busy)
        add("*", "/slow", self.slow)
        add("*", "/endless", self.endless)
        add("*", "/r1", _redirect("r2"))
        add("*", "/r2", _redirect("/file"))
        add("*", "/loop-a", _redirect("/loop-b"))
        add("*", "/loop-b", _redirect("/loop-a"))
        add("*", "/to-ftp", _redirect("ftp://example.com/x"))
        add("*", "/cross", self.cross)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, dict(request.headers)))
        return await handler(request)

    def _headers(self) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Last-Modified": LM,
            "Accept-Ranges": "bytes",
            "Repr-Digest": REPR_DIGEST,
            "Content-Disposition": 'attachment; filename="../data.bin"',
        }

    async def file(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_file_to is not None:
            raise web.HTTPFound(self.redirect_file_to)
        headers = self._headers()
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if_range = request.headers.get("If-Range")
        if match and (not self.honour_if_range or if_range in (None, self.etag)):
            start, last = int(match[1]), min(int(match[2]), len(DATA) - 1)
            headers["Content-Range"] = f"bytes {start}-{last}/{len(DATA)}"
            return web.Response(status=206, body=DATA[start : last + 1], headers=headers)
        return web.Response(body=DATA, headers=headers)

    async def cross(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(self.cross_to)

    async def no_ranges(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            raise web.HTTPMethodNotAllowed("HEAD", ["GET"])
        return web.Response(body=DATA, headers={"ETag": self.etag})

    async def wrong_range(self, request: web.Request) -> web.StreamResponse:
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if request.method == "HEAD" or match is None or match[1] == "0":
            return await self.file(request)
        start = int(match[1]) + 1
        headers = {**self._headers(), "Content-Range": f"bytes {start}-{start + 9}/{len(DATA)}"}
        return web.Response(status=206, body=DATA[start : start + 10], headers=headers)

    async def short(self, request: web.Request) -> web.StreamResponse:
        """206/200 with the right headers, but a chunked body that ends too early."""
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if request.method == "HEAD" or (match is not None and match[1] == "0"):
            return await self.file(request)
        resp = web.StreamResponse(status=200, headers=self._headers())
        if match is not None:
            resp.set_status(206)
            resp.headers["Content-Range"] = f"bytes {match[1]}-{match[2]}/{len(DATA)}"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await resp.write_eof()
        return resp

    async def gzip(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return await self.file(request)
        resp = await self.file(request)
        resp.headers["Content-Encoding"] = "gzip"
        return resp

    async def busy(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "7"})

    async def slow(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then silence (for the read timeout)."""
        if request.method == "HEAD":
            return await self.file(request)
        headers = {**self._headers(), "Content-Range": f"bytes 0-99/{len(DATA)}"}
        resp = web.StreamResponse(status=206, headers=headers)
        resp.content_length = 100
        await resp.prepare(request)
        await asyncio.sleep(30)
        return resp

    async def endless(self, request: web.Request) -> web.StreamResponse:
        """A 206 promising the whole file but trickling it out forever."""
        if request.method == "HEAD":
            return await self.file(request)
        headers = {**self._headers(), "Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}"}
        resp = web.StreamResponse(status=206, headers=headers)
        resp.content_length = len(DATA)
        await resp.prepare(request)
        try:
            for offset in range(0, len(DATA), 1024):
                await resp.write(DATA[offset : offset + 1024])
                await asyncio.sleep(0.05)
        except ConnectionError:
            self.hung_up.set()
            raise
        return resp


def _redirect(location: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handler


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    state = Origin()
    runner = web.AppRunner(state.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=["aiohttp", "raw"])
async def raw(request: pytest.FixtureRequest) -> AsyncIterator[RawHttp | None]:
    """Every range test runs twice: through aiohttp, and on raw connections (the fast
    path for http:// origins, which must behave the same)."""
    if request.param == "aiohttp":
        yield None
        return
    async with RawHttp(connect_timeout=2, read_timeout=2) as client:
        yield client


@pytest.fixture
def client(session: aiohttp.ClientSession, raw: RawHttp | None) -> OriginClient:
    return OriginClient(
        session, headers={"Authorization": "Bearer t"}, connect_timeout=2, read_timeout=2, raw=raw
    )


async def _read(client: OriginClient, info: OriginInfo, rng: ByteRange) -> bytes:
    async with client.open_range(info, rng) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def _read_stream(client: OriginClient, info: OriginInfo) -> bytes:
    async with client.open_stream(info) as chunks:
        return b"".join([chunk async for chunk in chunks])


# --- probe ---------------------------------------------------------------------------------------


async def test_probe_with_head(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/file"))
    assert info == OriginInfo(
        url=origin.url("/file"),
        final_url=origin.url("/file"),
        size=len(DATA),
        validator=Validator(etag=ETAG, last_modified=LM),
        accepts_ranges=True,
        filename="data.bin",
        digests=(Digest(algorithm="sha256", value=hashlib.sha256(DATA).hexdigest()),),
    )
    assert [(s.method, s.path) for s in origin.seen] == [("HEAD", "/file")]
    assert origin.seen[0].headers["Accept-Encoding"] == "identity"
    assert origin.seen[0].headers["User-Agent"].startswith("swarmget/")


async def test_caller_headers_replace_defaults(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    client = OriginClient(session, headers={"user-agent": "mine", "accept-encoding": "gzip"})
    await client.probe(origin.url("/file"))
    assert origin.seen[0].headers["User-Agent"] == "mine"
    assert origin.seen[0].headers["Accept-Encoding"] == "identity"


async def test_head_refused_falls_back_to_first_byte(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/nohead"))
    assert (info.size, info.accepts_ranges) == (len(DATA), True)
    assert info.validator == Validator(etag=ETAG, last_modified=LM)
    assert [(s.method, s.path) for s in origin.seen] == [("HEAD", "/nohead"), ("GET", "/nohead")]
    assert origin.seen[1].headers["Range"] == "bytes=0-0"


async def test_fallback_without_ranges_does_not_read_the_body(
    origin: Origin, client: OriginClient
) -> None:
    info = await client.probe(origin.url("/noranges"))
    assert (info.size, info.accepts_ranges, info.filename) == (len(DATA), False, "noranges")


async def test_redirect_chain_is_pinned(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/r1"))
    assert info.url == origin.url("/r1")
    assert info.final_url == origin.url("/file")
    origin.seen.clear()
    assert await _read(client, info, ByteRange(0, 10)) == DATA[:10]
    assert [(s.method, s.path) for s in origin.seen] == [("GET", "/file")]


async def test_redirect_loop_is_unusable(origin: Origin, client: OriginClient) -> None:
    with pytest.raises(OriginUnusable, match="redirect loop"):
        await client.probe(origin.url("/loop-a"))


async def test_too_many_redirects(origin: Origin, session: aiohttp.ClientSession) -> None:
    client = OriginClient(session, max_redirects=1)
    with pytest.raises(OriginUnusable, match="more than 1 redirects"):
        await client.probe(origin.url("/r1"))


async def test_redirect_to_another_scheme_is_unusable(origin: Origin, client: OriginClient) -> None:
    with pytest.raises(OriginUnusable, match="not an http"):
        await client.probe(origin.url("/to-ftp"))


async def test_credentials_do_not_follow_a_redirect_to_another_host(
    origin: Origin, client: OriginClient
) -> None:
    other_host = origin.url("/file").replace("127.0.0.1", "localhost")
    origin.cross_to = other_host
    info = await client.probe(origin.url("/cross"))
    assert info.final_url == other_host
    assert [s.headers.get("Authorization") for s in origin.seen] == ["Bearer t", None]
    origin.seen.clear()
    await _read(client, info, ByteRange(0, 1))
    assert "Authorization" not in origin.seen[0].headers


async def test_not_found_is_unusable(origin: Origin, client: OriginClient) -> None:
    with pytest.raises(OriginUnusable, match="404"):
        await client.probe(origin.url("/missing"))


async def test_probe_rate_limited(origin: Origin, client: OriginClient) -> None:
    with pytest.raises(SourceRateLimited) as info:
        await client.probe(origin.url("/busy"))
    assert info.value.retry_after == 7.0


async def test_probe_rejects_bad_urls(client: OriginClient) -> None:
    with pytest.raises(InvalidURL):
        await client.probe("ftp://example.com/x")


# --- ranges --------------------------------------------------------------------------------------


async def test_range_ok(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/file"))
    origin.seen.clear()
    assert await _read(client, info, ByteRange(100, 700_000)) == DATA[100:700_000]
    request = origin.seen[0].headers
    assert request["Range"] == "bytes=100-699999"
    assert request["If-Range"] == ETAG
    assert request["Accept-Encoding"] == "identity"
    assert request["Authorization"] == "Bearer t"


async def test_chunks_are_bounded(
    origin: Origin, client: OriginClient, raw: RawHttp | None
) -> None:
    info = await client.probe(origin.url("/file"))
    async with client.open_range(info, ByteRange(0, len(DATA))) as chunks:
        sizes = [len(chunk) async for chunk in chunks]
    assert sum(sizes) == len(DATA)
    assert max(sizes) <= (256 * 1024 if raw is None else RAW_CHUNK)


async def test_wrong_content_range_is_broken(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/wrong-range"))
    with pytest.raises(SourceBroken, match="Content-Range"):
        await _read(client, info, ByteRange(100, 110))


async def test_full_response_to_a_range_means_ranges_ignored(
    origin: Origin, client: OriginClient
) -> None:
    info = await client.probe(origin.url("/noranges"))
    with pytest.raises(RangesIgnored):
        await _read(client, info, ByteRange(100, 110))


async def test_changed_file_is_detected_through_if_range(
    origin: Origin, client: OriginClient
) -> None:
    info = await client.probe(origin.url("/file"))
    origin.etag = '"v2"'
    with pytest.raises(OriginChanged, match='ETag "v1" became "v2"'):
        await _read(client, info, ByteRange(0, 10))


async def test_changed_etag_on_a_partial_response(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/file"))
    origin.etag, origin.honour_if_range = '"v2"', False
    with pytest.raises(OriginChanged):
        await _read(client, info, ByteRange(0, 10))


async def test_redirect_of_the_pinned_url_means_changed(
    origin: Origin, client: OriginClient
) -> None:
    info = await client.probe(origin.url("/file"))
    origin.redirect_file_to = "/elsewhere"
    with pytest.raises(OriginChanged, match="redirects"):
        await _read(client, info, ByteRange(0, 10))


async def test_range_rate_limited(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/file"))
    busy = dataclasses.replace(info, final_url=origin.url("/busy"))
    with pytest.raises(SourceRateLimited) as exc:
        await _read(client, busy, ByteRange(0, 10))
    assert exc.value.retry_after == 7.0


async def test_short_body_is_broken(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/short"))
    with pytest.raises(SourceBroken, match="ended after 10 of 100 bytes"):
        await _read(client, info, ByteRange(100, 200))


async def test_content_encoding_is_broken(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/gzip"))
    with pytest.raises(SourceBroken, match="Content-Encoding"):
        await _read(client, info, ByteRange(100, 200))


@pytest.mark.parametrize("with_raw", [False, True])
async def test_read_timeout_is_retryable(
    origin: Origin, session: aiohttp.ClientSession, with_raw: bool
) -> None:
    async with RawHttp(read_timeout=0.2) as raw:
        client = OriginClient(session, read_timeout=0.2, raw=raw if with_raw else None)
        info = await client.probe(origin.url("/slow"))
        with pytest.raises(SourceRetryable, match="timed out"):
            await _read(client, info, ByteRange(0, 100))


async def test_leaving_early_closes_instead_of_draining(
    origin: Origin, client: OriginClient
) -> None:
    info = await client.probe(origin.url("/endless"))
    async with asyncio.timeout(5):  # draining the trickle would take ~50 s
        async with client.open_range(info, ByteRange(0, len(DATA))) as chunks:
            async for _ in chunks:
                break
        await origin.hung_up.wait()  # the server saw the connection close


async def test_range_outside_the_file_is_our_bug(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/file"))
    with pytest.raises(ValueError, match="beyond"):
        await _read(client, info, ByteRange(0, len(DATA) + 1))


# --- single stream -------------------------------------------------------------------------------


async def test_stream_whole_file(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/noranges"))
    origin.seen.clear()
    assert await _read_stream(client, info) == DATA
    assert "Range" not in origin.seen[0].headers


async def test_stream_short_body_is_broken(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/short"))
    with pytest.raises(SourceBroken, match="ended after 10 of"):
        await _read_stream(client, info)


async def test_stream_of_a_changed_file(origin: Origin, client: OriginClient) -> None:
    info = await client.probe(origin.url("/noranges"))
    origin.etag = '"v2"'
    with pytest.raises(OriginChanged):
        await _read_stream(client, info)


# --- connection failures (a raw server that hangs up) --------------------------------------------


@pytest.fixture
async def hangup() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads one request, maybe sends a prefix, then resets the connection.
    Append the prefix to send to the yielded list before each request."""
    prefixes: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if prefixes:
            writer.write(prefixes.pop(0))
            await writer.drain()
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/file", prefixes
    server.close()
    await server.wait_closed()


async def test_reset_before_the_response_is_retryable(
    hangup: tuple[str, list[bytes]], client: OriginClient, raw: RawHttp | None
) -> None:
    url, _ = hangup
    with pytest.raises(SourceRetryable) as info:
        await client.probe(url)
    if raw is None:  # aiohttp's error, translated
        assert isinstance(info.value.__cause__, aiohttp.ClientError)
    else:  # the probe of an http:// URL went through the raw client
        assert "before the response" in str(info.value) or isinstance(
            info.value.__cause__, ConnectionError
        )


async def test_reset_mid_body_is_retryable(
    hangup: tuple[str, list[bytes]], client: OriginClient
) -> None:
    url, prefixes = hangup
    info = OriginInfo(
        url=url, final_url=url, size=1000, validator=None, accepts_ranges=True, filename="f"
    )
    prefixes.append(
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/1000\r\n"
        b"Content-Length: 100\r\n\r\n" + b"x" * 10
    )
    with pytest.raises(SourceRetryable):
        await _read(client, info, ByteRange(0, 100))
