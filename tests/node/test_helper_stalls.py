"""A helper on a real socket against a requester that opens a range and stops reading.

Its daily quota is charged as bytes flow (a stalled stream does not hold the quota for the
whole range), and the stalled stream is closed after ``write_stall_timeout``, freeing its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from swarmget.net.auth import json_body, signed_headers, wait_for_next_second
from swarmget.net.origin import OriginClient
from swarmget.node.helper import make_peer_app
from swarmget.node.helper_service import HelperLimits, HelperService
from swarmget.node.quota import DailyQuota
from swarmget.testing.fakes import identity_for, nid
from swarmget.testing.origin import TestOrigin, open_test_origin

SECRET = b"s" * 32
MiB = 1024 * 1024
SIZE = 24 * MiB


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=21)
        yield o


@contextlib.asynccontextmanager
async def open_helper(service: HelperService) -> AsyncIterator[str]:
    runner = web.AppRunner(
        make_peer_app(service, SECRET, nid("helper")), handler_cancellation=True, access_log=None
    )
    await wait_for_next_second()  # requests signed in the app's first second are refused
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.2", 0).start()
        yield f"http://127.0.0.2:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def open_service(
    tmp_path: Path, *, slots: int, stall: float, quota: int | None = None
) -> AsyncIterator[HelperService]:
    async with aiohttp.ClientSession() as session:
        daily = None
        if quota is not None:
            daily = DailyQuota(tmp_path / "quota.json", quota, clock=time.time)
        limits = HelperLimits(slots=slots, write_stall_timeout=stall)
        yield HelperService(OriginClient(session), limits, quota=daily)


def range_body(origin: TestOrigin, start: int, end: int) -> bytes:
    return json_body({"url": origin.url("f.bin"), "start": start, "end": end, "size": SIZE})


@contextlib.asynccontextmanager
async def open_stalled_request(helper_url: str, body: bytes) -> AsyncIterator[asyncio.StreamReader]:
    """Send a signed range request, then read nothing (small receive buffer)."""
    url = f"{helper_url}/v1/range"
    host, port = helper_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    head = ["POST /v1/range HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]  # fmt: skip
    signed = signed_headers(SECRET, identity_for("stalled"), "POST", url, body)
    head += [f"{k}: {v}" for k, v in signed.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    try:
        yield reader
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def post_range(helper_url: str, body: bytes) -> tuple[int, bytes]:
    url = f"{helper_url}/v1/range"
    headers = signed_headers(SECRET, identity_for("other"), "POST", url, body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


async def settled(read: object, limit: float = 10.0) -> None:
    """Wait (bounded) until ``read()`` gives the same value twice 0.3 s apart."""
    async with asyncio.timeout(limit):
        last = read()  # type: ignore[operator]
        while True:
            await asyncio.sleep(0.3)
            now = read()  # type: ignore[operator]
            if now == last:
                return
            last = now


async def test_a_stalled_stream_does_not_hold_the_quota_for_its_whole_range(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        open_service(tmp_path, slots=3, stall=60.0, quota=16 * MiB) as service,
        open_helper(service) as helper_url,
        open_stalled_request(helper_url, range_body(origin, 0, 15 * MiB)),
    ):
        assert service.quota is not None
        await settled(service.quota.left)  # the stalled stream is stuck by now
        assert service.active() == 1
        assert service.quota.left() >= 8 * MiB  # charged as it flowed: not 15 MiB held
        status, data = await post_range(helper_url, range_body(origin, 0, 6 * MiB))
        assert status == 200, data
        assert data == origin.content("f.bin")[: 6 * MiB]
    async with asyncio.timeout(10):
        while service.active():
            await asyncio.sleep(0.05)
    service.quota.save()
    used = json.loads((tmp_path / "quota.json").read_text())["used"]
    assert 6 * MiB < used <= origin.stats().bytes_total  # what was really fetched
    assert service.quota.left() == 16 * MiB - used  # nothing stays reserved


async def test_a_stream_whose_reader_stalls_is_closed_and_frees_its_slot(
    origin: TestOrigin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swarmget.node.helper")
    async with (
        open_service(tmp_path, slots=1, stall=1.0) as service,
        open_helper(service) as helper_url,
        open_stalled_request(helper_url, range_body(origin, 0, SIZE)) as stalled,
    ):
        async with asyncio.timeout(10):
            while not service.active():
                await asyncio.sleep(0.05)
        status, _ = await post_range(helper_url, range_body(origin, 0, 1000))
        assert status == 429  # its only slot is taken ...
        async with asyncio.timeout(20):
            while service.active():  # ... until the stall timeout closes the stream
                await asyncio.sleep(0.1)
        status, data = await post_range(helper_url, range_body(origin, 0, 1000))
        assert (status, data) == (200, origin.content("f.bin")[:1000])
        received = 0
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(20):
                while chunk := await stalled.read(1 << 20):
                    received += len(chunk)
        assert received < SIZE  # the stalled requester got a cut stream, not a whole one
    assert service.stats.stalled == 1
    lines = [r for r in caplog.records if r.name == "swarmget.node.helper"]
    assert len(lines) == 1


async def test_streams_the_quota_cannot_cover_any_more_are_cut(
    origin: TestOrigin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two 1.5 MiB streams fit at admission (2.5 MiB left each time) but not both in full:
    one is cut short, and the quota is never overrun by more than one origin chunk."""
    caplog.set_level(logging.WARNING, logger="swarmget.node.helper")
    limit = 5 * MiB // 2
    async with (
        open_service(tmp_path, slots=3, stall=60.0, quota=limit) as service,
        open_helper(service) as helper_url,
    ):
        assert service.quota is not None
        results = await asyncio.gather(
            post_range(helper_url, range_body(origin, 0, 3 * MiB // 2)),
            post_range(helper_url, range_body(origin, 0, 3 * MiB // 2)),
            return_exceptions=True,
        )
        assert any(isinstance(r, aiohttp.ClientPayloadError) for r in results), results
        assert service.stats.quota_cut >= 1
        service.quota.save()
    used = json.loads((tmp_path / "quota.json").read_text())["used"]
    assert limit <= used <= limit + 2 * 256 * 1024
