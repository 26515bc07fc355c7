"""A LAN holder's streams (``POST /v1/content-range``, fetch once per LAN #15) under the
node's helper limits, on a real node over loopback: with every one of its ``--slots`` busy
(a requester reading slowly holds one) another requester is answered 429 ``busy`` with a
Retry-After, and served once the slot is free; with a ``--rate-limit`` the body goes out
at about that rate (a lower bound on its duration only: a slow machine is never a failure).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from swarmget.core.content import ContentKey
from swarmget.core.identity import NodeIdentity
from swarmget.core.ranges import ByteRange
from swarmget.net.content_peer import content_range_body
from swarmget.net.signing import signed_headers
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.protocol.content import CONTENT_RANGE_PATH
from swarmget.testing.fakes import identity_for
from swarmget.testing.holders import loopback_config, write_servable

SECRET = b"s" * 32
SLOW = identity_for("holder-limits-slow-reader")
OTHER = identity_for("holder-limits-other")
KiB = 1024
MiB = 1024 * KiB
#: more than the loopback connection's buffers take in (the holder's send buffer, the
#: requester's receive buffer, its client's): a requester that stops reading holds the
#: stream, and its slot, open
BIG = 32 * MiB


def _config(tmp_path: Path, **kw: Any) -> NodeConfig:
    return loopback_config(tmp_path, secret=SECRET, **kw)


def _key(size: int) -> ContentKey:
    return ContentKey.from_probe(final_url="http://origin.test/f.bin", size=size, etag='"v1"')


def _keep(node: Node, size: int) -> bytes:
    """Have ``node`` keep (and serve) ``size`` random bytes as ``_key(size)``'s content."""
    data = os.urandom(size)
    assert node.share_cache is not None
    assert node.share_cache.keep(_key(size), write_servable(node.download_dir / "f.bin", data))
    return data


def _request(node: Node, who: NodeIdentity, size: int, rng: ByteRange) -> dict[str, Any]:
    """The keyword arguments of a signed ``POST /v1/content-range`` by ``who`` of ``rng``
    of ``_key(size)``."""
    url = node.peer_url + CONTENT_RANGE_PATH
    body = content_range_body(_key(size), rng)
    return {"url": url, "data": body, "headers": signed_headers(SECRET, who, "POST", url, body)}


async def until(done: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (bounded) until ``done()``."""
    async with asyncio.timeout(limit):
        while not done():
            await asyncio.sleep(0.01)


async def test_a_holder_with_every_slot_busy_answers_429_then_serves_once_one_is_free(
    tmp_path: Path,
) -> None:
    async with aiohttp.ClientSession() as session, open_node(_config(tmp_path, slots=1)) as node:
        data = _keep(node, BIG)
        assert node.holder is not None
        small = ByteRange(1000, 1000 + 64 * KiB)
        # the slow requester: the body is coming, and it does not read it yet
        async with session.post(**_request(node, SLOW, BIG, ByteRange(0, BIG))) as held:
            assert held.status == 200
            assert node.helper.active() == 1  # its stream has the only slot
            async with session.post(**_request(node, OTHER, BIG, small)) as resp:
                assert resp.status == 429
                assert (await resp.json())["code"] == "busy"
                assert int(resp.headers["Retry-After"]) >= 1
            assert node.helper.stats.refusals == {"busy": 1}
            assert await held.read() == data  # the slow requester reads at last: all of it
        # the slot is given back when the handler ends (maybe just after the last byte)
        await until(lambda: node.helper.active() == 0)
        async with session.post(**_request(node, OTHER, BIG, small)) as resp:
            assert resp.status == 200
            assert await resp.read() == data[small.start : small.end]
        assert node.holder.stats.lan_bytes_served == BIG + small.length


async def test_a_holder_serves_at_its_rate_limit(tmp_path: Path) -> None:
    config = _config(tmp_path, rate_limit=float(MiB))
    async with aiohttp.ClientSession() as session, open_node(config) as node:
        data = _keep(node, 3 * MiB)
        rng = ByteRange(MiB // 2, MiB // 2 + 2 * MiB)
        started = time.monotonic()
        async with session.post(**_request(node, OTHER, 3 * MiB, rng)) as resp:
            assert resp.status == 200
            got = await resp.read()
        took = time.monotonic() - started
        assert got == data[rng.start : rng.end]
        assert node.holder is not None
        assert node.holder.stats.lan_bytes_served == rng.length
        # 2 MiB at 1 MiB/s: about 2 s less the bucket's first burst (64 KiB); a lower bound
        # only, with room (never how fast: a loaded machine may take longer)
        assert took >= 1.5
