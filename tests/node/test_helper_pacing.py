"""Under a rate limit, a node's streams go out in a few large bursts (``paced_step``): a
helper forwarding fast origin chunks writes them in batches of up to a second's share of
the rate, every byte in order; without a limit nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

from aiohttp import web

from swarmget.net.origin import OriginClient
from swarmget.node import helper
from swarmget.node.helper_service import PACE_MOST, HelperLimits, HelperService, StreamBudget

KiB = 1024
MiB = 1024 * KiB


def service(rate: float | None) -> HelperService:
    return HelperService(cast(OriginClient, None), HelperLimits(slots=8, rate_limit=rate))


def test_the_step_is_a_share_of_the_rate_between_least_and_most() -> None:
    assert service(None).paced_step(256 * KiB) == 256 * KiB
    svc = service(2 * MiB)
    assert svc.paced_step(256 * KiB) == PACE_MOST  # one stream: 1 s of 2 MiB/s, capped
    with contextlib.ExitStack() as streams:
        for i in range(4):
            streams.enter_context(svc.slot(f"r{i}", MiB, origin=False))
        assert svc.paced_step(256 * KiB) == 512 * KiB  # a quarter of a second's rate each
        for i in range(4, 8):
            streams.enter_context(svc.slot(f"r{i}", MiB, origin=False))
        assert svc.paced_step(256 * KiB) == 256 * KiB  # never below the least
    assert service(64 * KiB).paced_step(256 * KiB) == 256 * KiB


class RecordingResponse:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


async def test_a_capped_helper_writes_fast_origin_chunks_in_large_batches() -> None:
    chunks = [bytes([i]) * (64 * KiB) for i in range(64)]  # 4 MiB in 64 KiB reads

    async def body() -> AsyncIterator[bytes]:
        for c in chunks:
            await asyncio.sleep(0)
            yield c

    svc = service(16 * MiB)  # a quarter of a second for the whole body
    resp = RecordingResponse()
    async with asyncio.timeout(30):
        await helper._forward(body(), cast(web.StreamResponse, resp), svc, StreamBudget(10**9))
    assert b"".join(resp.writes) == b"".join(chunks)
    assert len(resp.writes[0]) == 64 * KiB  # the first chunk at once
    assert max(len(w) for w in resp.writes) == PACE_MOST
    assert len(resp.writes) <= 8  # the first, then 1 MiB batches (a slow machine's timer
    # may cut a few short); one write per 256 KiB or per chunk would be 16 or 64
    assert svc.stats.bytes_served == 4 * MiB
