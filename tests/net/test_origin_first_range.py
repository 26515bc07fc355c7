"""``OriginClient.probe_first`` and ``open_first`` against the real test origin (issue #14):
the probe is the download's first range; its 206 is read as the start of the first range
asked for, and every origin that does not answer so is probed as before (HEAD)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from swarmget.core.errors import OriginUnusable
from swarmget.core.ranges import ByteRange
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.waiting import until

KiB = 1024
SIZE = 700 * KiB + 3
FIRST = 256 * KiB


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=9)
        o.add_generated("small.bin", 1000, seed=3)
        yield o


@pytest.fixture
async def client() -> AsyncIterator[OriginClient]:
    async with aiohttp.ClientSession() as session:
        yield OriginClient(session)


async def _read(client: OriginClient, origin: TestOrigin, rng: ByteRange) -> bytes:
    info, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is not None
    assert first.range == ByteRange(0, FIRST)
    got = bytearray()
    async with client.open_first(first, info, rng) as body:
        async for chunk in body:
            got += chunk
    return bytes(got)


@pytest.mark.parametrize("end", [FIRST, FIRST // 2 + 7, FIRST + 1, SIZE])
async def test_the_first_range_reads_the_probe_answer_then_the_rest(
    origin: TestOrigin, client: OriginClient, end: int
) -> None:
    got = await _read(client, origin, ByteRange(0, end))
    assert got == origin.content("f.bin")[:end]
    served = [(s.start, s.end_exclusive, s.status) for s in origin.stats().served]
    assert served[0] == (0, FIRST, 206)  # the probe: the only request before the rest
    assert served[1:] == ([(FIRST, end, 206)] if end > FIRST else [])
    assert origin.stats().requests_by_method.get("HEAD", 0) == 0


async def test_a_file_shorter_than_the_first_range(
    origin: TestOrigin, client: OriginClient
) -> None:
    info, first = await client.probe_first(origin.url("small.bin"), FIRST)
    assert info.size == 1000
    assert first is not None
    assert first.range == ByteRange(0, 1000)
    async with client.open_first(first, info, ByteRange(0, 1000)) as body:
        got = b"".join([bytes(c) async for c in body])
    assert got == origin.content("small.bin")


async def test_an_unread_answer_is_closed(origin: TestOrigin, client: OriginClient) -> None:
    info, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is not None
    await first.aclose()
    await first.aclose()  # (idempotent)
    assert info.size == SIZE


async def test_a_range_elsewhere_is_refused(origin: TestOrigin, client: OriginClient) -> None:
    info, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is not None
    with pytest.raises(ValueError, match="does not start"):
        async with client.open_first(first, info, ByteRange(5, 10)):
            pass
    await first.aclose()


@pytest.mark.parametrize(
    ("behaviour", "accepts_ranges", "size"),
    [
        ({"ignore_range": True}, True, SIZE),  # HEAD says bytes; the ranges will tell
        ({"lie_content_range": True}, True, SIZE),
        ({"no_content_length": True}, False, None),
    ],
)
async def test_an_origin_that_does_not_answer_so_is_probed_with_head(
    origin: TestOrigin,
    client: OriginClient,
    behaviour: dict[str, object],
    accepts_ranges: bool,
    size: int | None,
) -> None:
    origin.configure(**behaviour)
    info, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is None
    assert (info.accepts_ranges, info.size) == (accepts_ranges, size)
    assert info == await client.probe(origin.url("f.bin"))  # what the HEAD probe pins
    assert origin.stats().requests_by_method["HEAD"] == 2


async def test_a_missing_file_fails_as_the_head_probe_does(
    origin: TestOrigin, client: OriginClient
) -> None:
    with pytest.raises(OriginUnusable) as first:
        await client.probe_first(origin.url("missing.bin"), FIRST)
    with pytest.raises(OriginUnusable) as head:
        await client.probe(origin.url("missing.bin"))
    assert (first.value.code, str(first.value)) == (head.value.code, str(head.value))


@pytest.mark.parametrize("end", [FIRST, SIZE])
async def test_a_cancelled_read_loses_nothing(
    origin: TestOrigin, client: OriginClient, end: int
) -> None:
    """A helper's forwarding loop cancels a waiting read whenever the origin pauses (to send
    what it has): the body reads on after each, the probe's answer and then the rest's
    request (the read cancelled while that request is on its way, too)."""
    origin.configure(rate_per_conn=1024 * KiB)  # a 64 KiB burst, then 51 KiB every 50 ms
    info, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is not None
    got = bytearray()
    cancelled = 0
    async with client.open_first(first, info, ByteRange(0, end)) as body:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(body), 0.005)
            except TimeoutError:
                cancelled += 1
                continue
            except StopAsyncIteration:
                break
            got += chunk
    assert bytes(got) == origin.content("f.bin")[:end]
    assert cancelled > 3  # (the origin's pauses did cancel reads)
    served = [(s.start, s.end_exclusive) for s in origin.stats().served]
    assert served == [(0, FIRST)] + ([(FIRST, end)] if end > FIRST else [])


async def test_leaving_while_the_rest_is_asked_for_leaves_no_connection(
    origin: TestOrigin, client: OriginClient
) -> None:
    origin.configure(first_byte_delay=0.3)  # the rest's answer is slow to come
    info, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is not None
    async with client.open_first(first, info, ByteRange(0, SIZE)) as body:
        got = 0
        while got < FIRST:
            got += len(await anext(body))
        with pytest.raises(TimeoutError):  # the rest's request is sent, its answer not in
            await asyncio.wait_for(anext(body), 0.1)
    # left: the request on its way was ended, its connection closed
    await until(lambda: origin.stats().open_connections_by_ip.get("127.0.0.1", 0) == 0)


def _open(origin: TestOrigin) -> int:
    return origin.stats().open_connections_by_ip.get("127.0.0.1", 0)


async def test_the_probe_warms_the_connections_the_other_ranges_take(
    origin: TestOrigin, client: OriginClient
) -> None:
    """``warm=3``: three more connections are opened while the probe is on its way, and
    the download's next three ranges, asked at once, find them: no connection is opened
    after the probe's answer (issue #14: a first download's streams skip a connect)."""
    info, first = await client.probe_first(origin.url("f.bin"), FIRST, warm=3)
    assert first is not None
    await until(lambda: _open(origin) == 4)  # the probe's, and three idle in the pool
    assert origin.stats().requests_by_method.get("GET") == 1  # nothing sent on them

    async def read(rng: ByteRange) -> bytes:
        async with client.open_range(info, rng) as body:
            return b"".join([bytes(c) async for c in body])

    ranges = [ByteRange(FIRST + i * 100 * KiB, FIRST + (i + 1) * 100 * KiB) for i in range(3)]
    got = await asyncio.gather(*(read(r) for r in ranges))
    assert got == [origin.content("f.bin")[r.start : r.end] for r in ranges]
    assert _open(origin) == 4  # the same four: none was opened for the ranges
    await first.aclose()


async def test_without_warming_the_probe_opens_one_connection(
    origin: TestOrigin, client: OriginClient
) -> None:
    _, first = await client.probe_first(origin.url("f.bin"), FIRST)
    assert first is not None
    assert _open(origin) == 1
    await first.aclose()


async def test_warming_takes_the_connections_already_pooled(
    origin: TestOrigin, client: OriginClient
) -> None:
    for _ in range(3):  # a download after a download: no more connections each time
        _, first = await client.probe_first(origin.url("f.bin"), FIRST, warm=3)
        assert first is not None
        await until(lambda: _open(origin) == 4)
        await asyncio.sleep(0.05)
        assert _open(origin) == 4
        await first.aclose()  # (its body came whole, unread: aiohttp pooled it, or closed)
