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
    assert str(caught.value.__cause__) not in str(caught.value)  # (its own words)


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


def _answer_of(*pieces: bytes) -> tuple[int, object]:
    """``node_http.Answer`` fed ``pieces`` one after another (b"": the connection ended)."""
    answer = node_http.Answer()
    for piece in pieces:
        answer.feed(piece)
    assert answer.done
    return answer.result()


def test_an_answer_is_read_whatever_its_framing_and_however_it_is_cut() -> None:
    whole = response(b'{"a": [1, 2]}')
    assert _answer_of(*[whole[i : i + 1] for i in range(len(whole))]) == (200, {"a": [1, 2]})
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b'3\r\n{"a\r\n5;x=y\r\n": 1}\r\n0\r\nTrailer: t\r\n\r\n'
    assert _answer_of(chunked) == (200, {"a": 1})
    assert _answer_of(*[chunked[i : i + 2] for i in range(0, len(chunked), 2)]) == (200, {"a": 1})
    to_close = b"HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n[]"
    assert _answer_of(to_close, b"") == (404, [])
    informational = b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"", b"HTTP/1.1 204 No\r\n")
    assert _answer_of(informational) == (204, None)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",  # not HTTP/1.x
        b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",  # not three digits
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",  # a bare LF
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",  # obs-fold
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",  # a NUL
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"x" * node_http.MAX_HEAD + b"\r\n\r\n",
    ],
)
def test_an_answer_that_is_not_http_as_read_here_is_refused_in_its_own_type(head: bytes) -> None:
    with pytest.raises(node_http.AnswerBroken):
        _answer_of(head, b"")


def test_an_answer_announcing_more_than_the_limit_is_refused_before_its_body() -> None:
    answer = node_http.Answer()
    with pytest.raises(ValueError, match="over"):
        answer.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2**63))
    chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n"
    with pytest.raises(ValueError, match="over"):
        node_http.Answer().feed(chunk % (node_http.MAX_ANSWER + 1))


@pytest.mark.parametrize(
    "cut", [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", b"HTTP/1.1 200 OK\r\n", b""]
)
def test_an_answer_cut_short_is_a_lost_connection(cut: bytes) -> None:
    answer = node_http.Answer()
    if cut:
        answer.feed(cut)
    with pytest.raises(ConnectionError):
        answer.feed(b"")


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/v1/x HTTP/1.1\r\nX: y", {}),
        ("GET", "/v1/\u00e9", {}),
        ("G ET", "/v1/x", {}),
        ("GET", "v1/x", {}),
        ("GET", "/v1/x", {"Authorization": "Bearer t\r\nX-Evil: 1"}),
        ("GET", "/v1/x", {"Bad Name": "v"}),
    ],
)
def test_a_request_that_could_split_its_head_is_not_sent(
    method: str, target: str, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="cannot send"):
        node_http.build_request(method, target, None, headers)


def test_a_request_is_written_as_the_node_reads_it() -> None:
    sent = node_http.build_request("POST", "/v1/downloads", {"url": "u"}, {"Authorization": "B t"})
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /v1/downloads HTTP/1.1"
    assert b"Authorization: B t" in head.split(b"\r\n")
    assert b"Content-Length: %d" % len(body) in head.split(b"\r\n")
    assert json.loads(body) == {"url": "u"}
