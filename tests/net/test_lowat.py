"""Read coalescing with SO_RCVLOWAT: the kernel's side, the sizing rule, and reuse safety."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from swarmget.core.ranges import ByteRange
from swarmget.net.lowat import (
    BULK_LATENCY,
    BULK_MAX_LOWAT,
    LATENCY,
    MAX_LOWAT,
    ReadCoalescer,
)
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024
MiB = 1024 * KiB

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_RCVLOWAT"), reason="no SO_RCVLOWAT on this platform"
)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        with sender, receiver:
            yield sender, receiver


def readable(sock: socket.socket, timeout: float) -> bool:
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


def test_the_kernel_holds_data_back_until_the_mark(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = tcp_pair
    ReadCoalescer(receiver)._set(1000)
    sender.sendall(b"x" * 500)
    assert not readable(receiver, 0.2)
    sender.sendall(b"y" * 600)
    assert readable(receiver, 2.0)
    ReadCoalescer(receiver)._set(1)  # and a lower mark releases what is queued at once
    assert readable(receiver, 0.0)


class FakeSocket:
    family = socket.AF_INET
    type = socket.SOCK_STREAM

    def __init__(self) -> None:
        self.marks: list[int] = []

    def setsockopt(self, level: int, name: int, value: int) -> None:
        assert (level, name) == (socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        self.marks.append(value)


def test_the_mark_follows_the_rate_and_never_exceeds_what_is_left() -> None:
    now = [0.0]
    sock = FakeSocket()
    c = ReadCoalescer(sock, clock=lambda: now[0])
    c.before_read(seen=0, remaining=10 * MiB)
    assert c.mark == 1  # nothing measured yet: wake for any byte
    now[0] = 1.0
    c.before_read(seen=400 * KiB, remaining=9 * MiB)  # 400 KiB/s
    assert c.mark == 16 * KiB  # int(400 KiB * LATENCY) = 20 KiB, down to a power of two
    assert c.mark <= int(400 * KiB * LATENCY)
    now[0] = 2.0
    c.before_read(seen=100 * MiB, remaining=5 * MiB)  # very fast: capped
    assert c.mark == MAX_LOWAT
    c.before_read(seen=100 * MiB, remaining=3000)  # the body's last bytes
    assert c.mark == 3000
    c.reset()
    assert c.mark == 1
    assert sock.marks == [16 * KiB, MAX_LOWAT, 3000, 1]


def test_a_bulk_stream_waits_longer_for_larger_reads() -> None:
    now = [0.0]
    sock = FakeSocket()
    c = ReadCoalescer(sock, clock=lambda: now[0], latency=BULK_LATENCY, max_mark=BULK_MAX_LOWAT)
    c.before_read(seen=0, remaining=10 * MiB)
    assert c.mark == 1
    now[0] = 1.0
    c.before_read(seen=600 * KiB, remaining=9 * MiB)  # 600 KiB/s: 300 KiB of it
    assert c.mark == 256 * KiB
    now[0] = 2.0
    c.before_read(seen=100 * MiB, remaining=5 * MiB)
    assert c.mark == BULK_MAX_LOWAT > MAX_LOWAT
    c.before_read(seen=100 * MiB, remaining=200 * KiB)  # never more than what is left
    assert c.mark == 200 * KiB


def test_a_wobbling_rate_does_not_move_the_mark() -> None:
    now = [0.0]
    sock = FakeSocket()
    c = ReadCoalescer(sock, clock=lambda: now[0])
    seen = 0
    for step in range(1, 21):  # 700-780 KiB/s: 35-39 KiB of it, always 32 KiB
        now[0] = step * 0.25
        seen += int((700 + 4 * step) * KiB * 0.25)
        c.before_read(seen=seen, remaining=100 * MiB)
    assert sock.marks == [32 * KiB]


def test_not_a_tcp_socket_is_left_alone() -> None:
    a, b = socket.socketpair()
    with a, b:
        c = ReadCoalescer(a)
        c.before_read(seen=0, remaining=MiB)
        c._set(500)
        assert c.mark == 1
    assert ReadCoalescer(None).mark == 1


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_conn=2 * MiB) as o:
        o.add_generated("f.bin", 4 * MiB, seed=3)
        yield o


async def test_a_reused_connection_is_not_held_back_by_the_last_mark(origin: TestOrigin) -> None:
    """A large throttled range raises the mark; the next, tiny, range on the same keep-alive
    connection must still arrive at once (a stale mark would hold it until the read
    timeout)."""
    connector = aiohttp.TCPConnector(limit=1)  # one connection, reused for every request
    async with aiohttp.ClientSession(connector=connector) as session:
        client = OriginClient(session, read_timeout=3.0)
        info = await client.probe(origin.url("f.bin"))
        content = origin.content("f.bin")
        marks = []
        for rng in (ByteRange(0, 3 * MiB), ByteRange(3 * MiB, 3 * MiB + 10), ByteRange(5, 6)):
            started = time.monotonic()
            async with client.open_range(info, rng) as body:
                got = bytearray()
                async for chunk in body:
                    got += chunk
                    if body._coalescer is not None:  # None: the body came with the headers
                        marks.append(body._coalescer.mark)
                    if len(got) == rng.length:
                        break  # as the downloader does: no read after the last byte
            assert bytes(got) == content[rng.start : rng.end]
            if rng.length < 100:
                assert time.monotonic() - started < 1.0  # not held back by a stale mark
        assert max(marks) > 1  # the big range was read with a raised mark
        assert dict(origin.stats().open_connections_by_ip) == {"127.0.0.1": 1}  # one, reused
