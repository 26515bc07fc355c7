"""A real node's holder route sending its kept file with the kernel's sendfile, against
requesters on real sockets (127.0.0.x): a file cut short or rewritten under a stream never
puts a wrong byte on the wire (the requester sees a short body), a requester that stops
reading is cut after ``write_stall_timeout`` and its slot freed, and one that reads slowly
but steadily gets the whole range."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange
from swarmget.net.content_peer import content_range_body
from swarmget.net.signing import signed_headers
from swarmget.node.daemon import Node, open_node
from swarmget.protocol.content import CONTENT_RANGE_PATH
from swarmget.testing.fakes import identity_for
from swarmget.testing.holders import loopback_config, write_servable

SECRET = b"s" * 32
ME = identity_for("sendfile-requester")
KiB = 1024
MiB = 1024 * KiB
SIZE = 2 * MiB
DATA = random.Random(17).randbytes(SIZE)
KEY = ContentKey.from_probe(final_url="http://origin.test/g.bin", size=SIZE, etag='"v1"')


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with open_node(loopback_config(tmp_path, secret=SECRET, slots=2)) as n:
        assert n.share_cache is not None
        assert n.share_cache.keep(KEY, write_servable(n.download_dir / "g.bin", DATA))
        yield n


def held_path(node: Node) -> Path:
    return node.download_dir / "g.bin"


def request_of(node: Node, rng: ByteRange) -> tuple[str, bytes, dict[str, str]]:
    url = f"{node.peer_url}{CONTENT_RANGE_PATH}"
    body = content_range_body(KEY, rng)
    return url, body, signed_headers(SECRET, ME, "POST", url, body)


async def until(done: Callable[[], bool], limit: float = 20.0) -> None:
    async with asyncio.timeout(limit):
        while not done():
            await asyncio.sleep(0.02)


async def read_until_cut(
    session: aiohttp.ClientSession, node: Node, rng: ByteRange, change: Callable[[], None]
) -> bytes:
    """Ask for ``rng``; once its first bytes came, ``change()`` the held file; read on until
    the stream is cut (the body must end short: AssertionError if it ends whole)."""
    url, body, headers = request_of(node, rng)
    got = bytearray()
    changed = False
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
        try:
            async with asyncio.timeout(30):
                async for chunk in resp.content.iter_any():
                    got += chunk
                    if not changed and len(got) >= 64 * KiB:
                        change()
                        changed = True
        except aiohttp.ClientPayloadError:
            return bytes(got)  # a short body: what a cut stream looks like
    raise AssertionError(f"the body ended whole ({len(got)} bytes)")


async def test_a_file_truncated_under_a_stream_gives_a_short_body(
    node: Node, session: aiohttp.ClientSession
) -> None:
    node.helper.set_rate_limit(512 * KiB)  # a chunk at a time: the stream lasts seconds
    rng = ByteRange(1000, SIZE)

    def truncate() -> None:
        os.truncate(held_path(node), SIZE // 2)

    got = await read_until_cut(session, node, rng, truncate)
    assert 64 * KiB <= len(got) < rng.length
    assert got == DATA[rng.start : rng.start + len(got)]
    assert node.holder is not None
    assert node.holder.stats.streams_served == 0
    await until(lambda: node.helper.active() == 0)


async def test_a_file_rewritten_in_place_under_a_stream_sends_none_of_the_new_bytes(
    node: Node, session: aiohttp.ClientSession
) -> None:
    node.helper.set_rate_limit(512 * KiB)
    rng = ByteRange(0, SIZE)

    def rewrite_the_tail() -> None:  # same size, new bytes where the stream has not been
        with held_path(node).open("r+b") as f:
            f.seek(SIZE - 256 * KiB)
            f.write(b"\0" * 256 * KiB)

    got = await read_until_cut(session, node, rng, rewrite_the_tail)
    assert len(got) < SIZE - 256 * KiB
    assert got == DATA[: len(got)]


@contextlib.asynccontextmanager
async def open_raw_request(
    node: Node, rng: ByteRange
) -> AsyncIterator[tuple[asyncio.StreamReader, socket.socket]]:
    """Send the signed request on a socket with a small receive buffer; the caller reads
    (or does not) from the reader."""
    url, body, headers = request_of(node, rng)
    host, port = node.peer_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * KiB)
    head = [f"POST {CONTENT_RANGE_PATH} HTTP/1.1", f"Host: {host}:{port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]  # fmt: skip
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    try:
        yield reader, sock
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_a_requester_that_stops_reading_is_cut_and_its_slot_freed(node: Node) -> None:
    node.helper.limits = dataclasses.replace(node.helper.limits, write_stall_timeout=1.0)
    assert node.holder is not None
    async with open_raw_request(node, ByteRange(0, SIZE)) as (reader, _):
        await reader.readuntil(b"\r\n\r\n")  # the head, then nothing more is read
        await until(lambda: node.helper.active() == 1)
        await until(lambda: node.helper.active() == 0)  # cut: its slot is free again
        assert node.holder.stats.streams_served == 0


async def test_a_slow_reader_that_keeps_reading_gets_the_whole_range(node: Node) -> None:
    # a 1 MiB range is one sendfile call without a rate limit: the requester takes it in
    # ~2.5 s, more than the stall timeout, but never stops taking bytes for that long
    node.helper.limits = dataclasses.replace(node.helper.limits, write_stall_timeout=1.5)
    rng = ByteRange(4096, 4096 + MiB)
    assert node.holder is not None
    async with open_raw_request(node, rng) as (reader, _):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        got = bytearray()
        async with asyncio.timeout(60):
            while len(got) < rng.length:
                got += await reader.read(min(8 * KiB, rng.length - len(got)))
                await asyncio.sleep(0.02)
    assert bytes(got) == DATA[rng.start : rng.end]
    await until(lambda: node.holder is not None and node.holder.stats.streams_served == 1)
