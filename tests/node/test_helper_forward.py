"""How a helper passes the origin's chunks on: a few large writes, never held back long."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.errors import SourceBroken
from swarmget.core.ranges import ByteRange
from swarmget.net.origin import OriginClient
from swarmget.node import helper
from swarmget.node.helper_service import HelperLimits, HelperService, StreamBudget
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    # a second's worth at once (the bucket's burst), then 12.8 KiB every 50 ms
    async with open_test_origin(rate_per_conn=256 * KiB) as o:
        o.add_generated("slow.bin", 512 * KiB, seed=4)
        yield o


class RecordingResponse:
    """Stands in for the requester's end of the stream: remembers each write and when."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, bytes]] = []

    async def write(self, data: bytes) -> None:
        self.writes.append((time.monotonic(), bytes(data)))


def service() -> HelperService:
    return HelperService(cast(OriginClient, None), HelperLimits())


async def forward(body: AsyncIterator[bytes]) -> tuple[RecordingResponse, int, Any]:
    resp = RecordingResponse()
    budget = StreamBudget(10**9)
    svc = service()
    await helper._forward(body, cast(web.StreamResponse, resp), svc, budget)
    return resp, budget.used, svc


async def test_small_chunks_go_out_in_few_large_writes() -> None:
    chunks = [bytes([i]) * (2 * KiB) for i in range(200)]  # 400 KiB in 2 KiB pieces

    async def body() -> AsyncIterator[bytes]:
        for c in chunks:
            await asyncio.sleep(0)  # arriving one by one, as from a socket
            yield c

    resp, used, svc = await forward(body())
    assert b"".join(w for _, w in resp.writes) == b"".join(chunks)
    assert len(resp.writes) <= 5  # the first chunk, then 256 KiB batches (a slow machine
    # may cut one short)
    assert used == 400 * KiB
    assert svc.stats.bytes_served == 400 * KiB


class OrderedBody:
    """Three chunks; remembers, in one log with the writes, when each was asked for."""

    def __init__(self, log: list[str]) -> None:
        self.chunks = [b"a" * KiB, b"b" * KiB, b"c" * KiB]
        self.log = log

    def __aiter__(self) -> OrderedBody:
        return self

    async def __anext__(self) -> bytes:
        self.log.append("next")
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)


class LoggingResponse(RecordingResponse):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def write(self, data: bytes) -> None:
        self.log.append(f"write {len(data)}")
        await super().write(data)


async def test_the_first_chunk_goes_out_before_the_next_is_read() -> None:
    log: list[str] = []
    resp = LoggingResponse(log)
    svc = service()
    await helper._forward(
        OrderedBody(log), cast(web.StreamResponse, resp), svc, StreamBudget(10**9)
    )
    assert log[:2] == ["next", f"write {KiB}"]  # not batched with what comes next
    assert b"".join(w for _, w in resp.writes) == b"a" * KiB + b"b" * KiB + b"c" * KiB


class PausingBody:
    """Two chunks with a pause between them. Like the origin client's ``CheckedBody``, a
    cancelled ``__anext__`` loses nothing (what ``_forward``'s flush timer relies on)."""

    def __init__(self) -> None:
        self.chunks = [b"a" * KiB, b"b" * KiB]
        self.second_at: list[float] = []

    def __aiter__(self) -> PausingBody:
        return self

    async def __anext__(self) -> bytes:
        if len(self.chunks) == 1:
            await asyncio.sleep(6 * helper.FORWARD_DELAY)  # the origin pauses
            self.second_at.append(time.monotonic())
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)


async def test_a_quiet_origin_does_not_hold_back_what_arrived() -> None:
    body = PausingBody()
    resp, _, _ = await forward(body)
    assert [w for _, w in resp.writes] == [b"a" * KiB, b"b" * KiB]
    first_write_at = resp.writes[0][0]
    assert first_write_at < body.second_at[0]  # sent during the pause, not after it


async def test_a_slow_origin_stream_arrives_whole_through_the_flush_timer(
    origin: TestOrigin,
) -> None:
    """The real thing: the origin client's body, read in small spaced chunks, so that the
    flush timer cancels many waiting reads; not a byte may be lost or reordered."""
    async with aiohttp.ClientSession() as session:
        client = OriginClient(session)
        info = await client.probe(origin.url("slow.bin"))
        async with client.open_range(info, ByteRange(1000, 401000)) as body:
            resp, used, _ = await forward(body)
    assert b"".join(w for _, w in resp.writes) == origin.content("slow.bin")[1000:401000]
    assert used == 400000
    assert len(resp.writes) > 2  # the timer did flush while the origin trickled


async def test_an_error_mid_body_propagates_after_nothing_wrong_was_sent() -> None:
    class Broken(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * KiB
        raise Broken

    resp = RecordingResponse()
    try:
        await helper._forward(body(), cast(web.StreamResponse, resp), service(), StreamBudget(KiB))
    except Broken:
        pass
    else:
        raise AssertionError("the error was swallowed")
    # the caller aborts the connection; whatever was written is a correct prefix
    assert all(w == b"x" * len(w) for _, w in resp.writes)


async def test_a_chunk_filter_given_to_the_service_sees_every_chunk() -> None:
    # the integrity tests' lying helper plugs in here (no module global to assign)
    from swarmget.testing.evil_node import corrupter

    chunks = [bytes([i]) * (4 * KiB) for i in range(8)]

    async def body() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    resp = RecordingResponse()
    svc = HelperService(cast(OriginClient, None), HelperLimits(), chunk_filter=corrupter(8 * KiB))
    await helper._forward(body(), cast(web.StreamResponse, resp), svc, StreamBudget(10**9))
    sent = b"".join(w for _, w in resp.writes)
    original = b"".join(chunks)
    assert len(sent) == len(original)
    assert sent[: 8 * KiB] == original[: 8 * KiB]  # the clean start passes untouched
    flipped = [i for i in range(len(sent)) if sent[i] != original[i]]
    assert len(flipped) == 6  # one byte in each later chunk


async def test_a_service_without_a_chunk_filter_passes_bytes_unchanged() -> None:
    assert not hasattr(helper, "CHUNK_FILTER")  # the old module-global seam is gone
    resp, _, svc = await forward(_one_chunk())
    assert svc.chunk_filter is None
    assert b"".join(w for _, w in resp.writes) == b"x" * KiB


async def _one_chunk() -> AsyncIterator[bytes]:
    yield b"x" * KiB


async def test_a_body_that_ends_short_of_the_answer_is_an_error() -> None:
    """The answer to the requester promised ``expected`` bytes: a body that stops before
    (here a generator, which the flush timer's cancelled read ends) must not be taken for
    the end of the range; the caller then cuts the connection instead of leaving the
    requester waiting for the rest."""

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * KiB
        yield b"b" * KiB
        await asyncio.sleep(6 * helper.FORWARD_DELAY)  # the origin pauses: the read is cancelled
        yield b"c" * KiB

    resp = RecordingResponse()
    with pytest.raises(SourceBroken):
        await helper._forward(
            body(), cast(web.StreamResponse, resp), service(), StreamBudget(10**9), expected=3 * KiB
        )
    assert b"".join(w for _, w in resp.writes) == b"a" * KiB + b"b" * KiB  # a correct prefix


async def test_a_body_of_the_expected_length_ends_cleanly() -> None:
    resp = RecordingResponse()
    await helper._forward(
        _one_chunk(), cast(web.StreamResponse, resp), service(), StreamBudget(10**9), expected=KiB
    )
    assert b"".join(w for _, w in resp.writes) == b"x" * KiB
