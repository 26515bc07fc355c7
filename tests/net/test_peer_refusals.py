"""A helper's or a holder's error answers, read by the requester (``net.peer_client.refusal``,
shared by ``PeerSource`` and ``HolderSource``), against a real hostile server over a socket:
huge bodies are read bounded, foreign bodies carry no code, redirects are not followed,
and the code (never the message) decides the exception."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.content import ContentKey
from swarmget.core.errors import (
    ContentNotHeld,
    SourceBroken,
    SourceError,
    SourceRateLimited,
    SourceRetryable,
)
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.content_peer import HolderSource
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import MAX_ERROR_BYTES, PeerAddress, PeerSource
from swarmget.protocol.errors import MAX_ERROR_MESSAGE, error_body
from swarmget.protocol.peer import RANGE_HEADER, range_header
from swarmget.testing.fakes import identity_for

SECRET = b"r" * 32
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SIZE = 1000
INFO = OriginInfo(
    url="http://origin.example/f.bin",
    final_url="http://origin.example/f.bin",
    size=SIZE,
    validator=Validator(etag='"v1"'),
    accepts_ranges=True,
    filename="f.bin",
)
KEY = ContentKey.from_probe(final_url=INFO.final_url, size=SIZE, etag='"v1"')


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a hostile peer on 127.0.0.1 answering every request with ``handler``."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def _sources(session: aiohttp.ClientSession, url: str) -> list[PeerSource | HolderSource]:
    peer = PeerAddress(node_id="hostile", url=url, slots=1)
    me = identity_for("requester")
    return [
        PeerSource(session, peer, SECRET, me, download_id="d1", read_timeout=5.0),
        HolderSource(session, peer, KEY, SECRET, me, read_timeout=5.0),
    ]


async def _drain(source: PeerSource | HolderSource) -> None:
    async with source.open_range(INFO, ByteRange(0, 10)) as body:
        async for _ in body:
            pass


async def _fail(url: str) -> list[SourceError]:
    """What each kind of source (helper, holder) raises for the server at ``url``."""
    raised: list[SourceError] = []
    async with aiohttp.ClientSession() as session:
        for source in _sources(session, url):
            with pytest.raises(SourceError) as caught:
                await _drain(source)
            raised.append(caught.value)
    return raised


async def test_a_huge_json_error_is_read_bounded(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        padding = "x" * (8 * MAX_ERROR_BYTES)
        text = f'{{"code": "content_not_held", "error": "{padding}"}}'
        return web.Response(status=409, text=text, content_type="application/json")

    for exc in await _fail(await serve(huge)):
        # over the bound: the body is not ours to parse, the status decides
        assert type(exc) is SourceBroken
        assert len(str(exc)) < MAX_ERROR_BYTES


async def test_the_code_decides_not_the_message(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def not_held(request: web.Request) -> web.StreamResponse:
        body = {"code": "content_not_held", "error": "rate limited, retry (a lie in words)"}
        return web.json_response(body, status=409)

    for exc in await _fail(await serve(not_held)):
        assert type(exc) is ContentNotHeld


async def test_a_foreign_busy_page_is_rate_limited_with_its_retry_after(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def proxy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="<html>busy</html>", headers={"Retry-After": "7"})

    for exc in await _fail(await serve(proxy)):
        assert isinstance(exc, SourceRateLimited)
        assert exc.retry_after == pytest.approx(7.0, abs=1.0)


async def test_a_redirect_is_not_followed(serve: Callable[[Handler], Awaitable[str]]) -> None:
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/elsewhere":
            followed.append(request.path)
            return web.Response(status=200, body=b"y" * 10)
        raise web.HTTPTemporaryRedirect("/elsewhere")

    for exc in await _fail(await serve(redirect)):
        assert type(exc) is SourceBroken
    assert followed == []


async def test_an_answer_for_another_range_is_broken(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def other(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=200, body=b"z" * 10, headers={RANGE_HEADER: range_header(10, 20)}
        )

    for exc in await _fail(await serve(other)):
        assert type(exc) is SourceBroken


async def test_a_closed_port_is_retryable() -> None:
    with socket.socket() as probe:  # a port just freed: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for exc in await _fail(f"http://127.0.0.1:{port}"):
        assert isinstance(exc, SourceRetryable)


def test_error_body_reads_ours_and_tolerates_the_rest() -> None:
    assert error_body(b'{"code": "busy", "error": "later"}') == error_body(
        '{"code": "busy", "error": "later"}'
    )
    said = error_body(b'{"code": "busy", "error": "later"}')
    assert (said.code, said.message) == ("busy", "later")
    assert error_body(b'{"code": 7, "error": "x"}').code is None
    assert error_body(b"[1, 2]", otherwise="Conflict").message == "Conflict"
    assert error_body(None, otherwise="Bad Gateway").message == "Bad Gateway"
    assert error_body(b"<html>" + b"a" * 5000).message.startswith("<html>")
    assert len(error_body(b"a" * 5000).message) == MAX_ERROR_MESSAGE
    assert len(error_body('{"error": "' + "m" * 5000 + '"}').message) == MAX_ERROR_MESSAGE
    assert error_body(b"[" * 100_000).code is None  # deep nesting: no RecursionError escapes
    assert error_body(b"\xff\xfe garbage").code is None
