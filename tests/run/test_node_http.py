"""The CLI's requests to the node on its Unix socket (``run.node_http`` under
``run.remote.NodeSession``): a good answer is read back, and a broken, cut or oversized
one is ``NodeLost`` (a ``DownloadError``: exit 3) in plain words, never the framing
library's text (real Unix-socket servers)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import h11
import pytest

from swarmget.core.errors import NodeLost
from swarmget.run import node_http
from swarmget.run.remote import CreateRequest, LocalNode, NodeSession

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(tmp_path: Path, answer: Answer) -> AsyncIterator[NodeSession]:
    sock = tmp_path / "api.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request's head (bodies are small)
        await answer(reader, writer)
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(sock))
    async with server:
        node = LocalNode(api_url="", token="t", download_dir=tmp_path, state_dir=tmp_path)
        yield NodeSession(str(sock), node)


def response(body: bytes, head: bytes = b"HTTP/1.1 200 OK\r\n") -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def test_an_answer_is_read_back_as_json(tmp_path: Path) -> None:
    async def answer(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(json.dumps({"id": "d1", "state": "running"}).encode()))

    async with serving(tmp_path, answer) as session:
        assert await session.call("GET", "/v1/downloads/d1") == (
            200,
            {"id": "d1", "state": "running"},
        )


async def _garbage(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")


async def _cut(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')


async def _not_json(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response(b"<html>"))


async def _too_long(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response(b" " * (node_http.MAX_ANSWER + 1)))
    await writer.drain()


@pytest.mark.parametrize("answer", [_garbage, _cut, _not_json, _too_long])
async def test_a_broken_answer_is_a_lost_node(tmp_path: Path, answer: Answer) -> None:
    async with serving(tmp_path, answer) as session:
        with pytest.raises(NodeLost) as caught:
            await session.call("GET", "/v1/status")
    cause = caught.value.__cause__
    assert cause is not None
    assert str(cause) not in str(caught.value)  # (its own words)


async def test_no_node_on_the_socket_is_a_lost_node(tmp_path: Path) -> None:
    node = LocalNode(api_url="", token="t", download_dir=tmp_path, state_dir=tmp_path)
    with pytest.raises(NodeLost):
        await NodeSession(str(tmp_path / "none.sock"), node).call("GET", "/v1/status")


async def _closed_mid_body(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A node killed while it held the call: its chunked answer started, then EOF."""
    writer.write(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"id"')
    await writer.drain()


async def _closed_at_once(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A node killed before it answered."""


@pytest.mark.parametrize("answer", [_closed_mid_body, _closed_at_once])
async def test_a_node_gone_mid_answer_is_a_lost_node_not_the_framing_text(
    tmp_path: Path, answer: Answer
) -> None:
    async with serving(tmp_path, answer) as session:
        with pytest.raises(NodeLost) as caught:
            await session.follow("d1", lambda _p: None)
    assert not isinstance(caught.value.__cause__, NodeLost)
    if isinstance(caught.value.__cause__, h11.ProtocolError):  # its text is not passed on
        assert str(caught.value.__cause__) not in str(caught.value)


async def _not_a_download(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = json.dumps(["not", "a", "download"]).encode()
    writer.write(response(body, b"HTTP/1.1 201 Created\r\n"))


async def _bad_progress(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = {"id": "d1", "url": "http://o/f", "state": "running", "progress": {"stage": 1}}
    writer.write(response(json.dumps(body).encode()))


@pytest.mark.parametrize("answer", [_not_a_download, _bad_progress])
async def test_a_malformed_download_answer_is_a_lost_node(tmp_path: Path, answer: Answer) -> None:
    async with serving(tmp_path, answer) as session:
        with pytest.raises(NodeLost):
            await session.follow("d1", lambda _p: None)


async def test_a_start_answered_without_an_id_is_a_lost_node(tmp_path: Path) -> None:
    async with serving(tmp_path, _not_a_download) as session:
        with pytest.raises(NodeLost):
            await session.start(CreateRequest({"url": "http://o/f"}))
