"""A real node serving held content to LAN peers (fetch once per LAN, #15): the peer routes
``POST /v1/content-range`` and ``GET /v1/content/{name}/pieces`` on 127.0.0.x, read with the
holder client ``swarmget.net.content_peer``."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.content import ContentKey
from swarmget.core.errors import ContentKeyMismatch, ContentNotHeld, ContentNotShareable
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.net.content_peer import HolderSource, content_range_body
from swarmget.net.signing import json_body, signed_headers
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.protocol.content import CONTENT_RANGE_PATH, MAX_CONTENT_BODY
from swarmget.testing.fakes import identity_for
from swarmget.testing.holders import HolderReader, loopback_config, read_range, write_servable

SECRET = b"s" * 32
ME = identity_for("lan-requester")
KiB = 1024
SIZE = 300 * KiB
DATA = random.Random(15).randbytes(SIZE)
KEY = ContentKey.from_probe(final_url="http://origin.test/f.bin", size=SIZE, etag='"v1"')


def _config(tmp_path: Path, **kw: Any) -> NodeConfig:
    return loopback_config(tmp_path, secret=SECRET, **kw)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with open_node(_config(tmp_path, daily_quota=100 * KiB, slots=2)) as n:
        yield n


async def until(done: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (bounded) until ``done()``."""
    async with asyncio.timeout(limit):
        while not done():
            await asyncio.sleep(0.01)


def _source(session: aiohttp.ClientSession, node: Node, key: ContentKey = KEY) -> HolderSource:
    return HolderReader.of(session, node, SECRET, ME).source(key)


async def test_a_kept_file_is_served_by_range_outside_the_daily_quota(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.share_cache is not None
    assert node.holder is not None
    assert node.share_cache.keep(KEY, write_servable(node.download_dir / "f.bin", DATA))
    quota = node.helper.quota
    assert quota is not None
    left = quota.left()
    # more than the whole daily quota (100 KiB), served from disk: not origin bytes
    got = await read_range(_source(session, node), ByteRange(1000, 250 * KiB))
    assert got == DATA[1000 : 250 * KiB]
    assert node.holder.stats.lan_bytes_served == 250 * KiB - 1000
    assert quota.left() == left
    assert node.helper.sent_today() == 0
    # the slot is given back when the handler ends, which may be just after the requester
    # has the last byte (the kernel sent the file: sendfile)
    await until(lambda: node.helper.active() == 0)


async def test_metrics_count_lan_bytes_served(node: Node, session: aiohttp.ClientSession) -> None:
    assert node.share_cache is not None
    node.share_cache.keep(KEY, write_servable(node.download_dir / "f.bin", DATA))
    await read_range(_source(session, node), ByteRange(0, 4096))
    headers = {"Authorization": f"Bearer {node.api_token}"}
    async with session.get(f"{node.api_url}/metrics", headers=headers) as resp:
        text = await resp.text()
    assert "swarmget_lan_served_bytes_total 4096.0" in text
    assert f"swarmget_share_cache_bytes {float(SIZE)}" in text


async def test_another_etag_of_the_same_url_is_a_key_mismatch(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.share_cache is not None
    node.share_cache.keep(KEY, write_servable(node.download_dir / "f.bin", DATA))
    other = ContentKey.from_probe(final_url=KEY.url, size=SIZE, etag='"v2"')
    with pytest.raises(ContentKeyMismatch):
        await read_range(_source(session, node, other), ByteRange(0, 100))


async def test_another_digest_under_the_same_name_is_a_key_mismatch(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.share_cache is not None
    mine = ContentKey.from_probe(final_url=KEY.url, size=SIZE, etag='"v1"', sha256="a" * 64)
    node.share_cache.keep(mine, write_servable(node.download_dir / "f.bin", DATA))
    theirs = ContentKey.from_probe(final_url=KEY.url, size=SIZE, etag='"v1"', sha256="b" * 64)
    assert theirs.index_name() == mine.index_name()
    with pytest.raises(ContentKeyMismatch):
        await read_range(_source(session, node, theirs), ByteRange(0, 100))


async def test_content_not_held_at_all(node: Node, session: aiohttp.ClientSession) -> None:
    with pytest.raises(ContentNotHeld):
        await read_range(_source(session, node), ByteRange(0, 100))


async def test_a_range_not_verified_is_not_served_until_it_is(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.holdings is not None
    part = write_servable(node.download_dir / "f.bin.part", DATA)  # a running download's part file
    name = node.holdings.register(KEY, part, verified=RangeSet([ByteRange(0, 64 * KiB)]))
    source = _source(session, node)
    assert await read_range(source, ByteRange(0, 64 * KiB)) == DATA[: 64 * KiB]
    with pytest.raises(ContentNotHeld):
        await read_range(source, ByteRange(32 * KiB, 96 * KiB))
    node.holdings.add_verified(name, RangeSet([ByteRange(64 * KiB, 128 * KiB)]))
    assert await read_range(source, ByteRange(32 * KiB, 96 * KiB)) == DATA[32 * KiB : 96 * KiB]


async def test_an_unsigned_request_is_401(node: Node, session: aiohttp.ClientSession) -> None:
    assert node.share_cache is not None
    node.share_cache.keep(KEY, write_servable(node.download_dir / "f.bin", DATA))
    body = content_range_body(KEY, ByteRange(0, 100))
    async with session.post(f"{node.peer_url}{CONTENT_RANGE_PATH}", data=body) as resp:
        assert resp.status == 401
        assert json.loads(await resp.read())["code"] == "auth"
    assert node.holder is not None
    assert node.holder.stats.lan_bytes_served == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"key": {"url": KEY.url, "size": SIZE}, "start": 10, "end": 5},  # an empty range
        {"key": {"url": KEY.url, "size": SIZE}, "start": 0, "end": SIZE + 1},  # past the end
        {"key": {"url": KEY.url, "size": SIZE, "etag": 'W/"v1"'}, "start": 0, "end": 5},  # weak
        {"key": {"url": KEY.url, "size": SIZE, "path": "/etc/passwd"}, "start": 0, "end": 5},
        {"start": 0, "end": 5},
    ],
)
async def test_a_bad_request_is_400(
    node: Node, session: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    url = f"{node.peer_url}{CONTENT_RANGE_PATH}"
    body = json_body(payload)
    headers = signed_headers(SECRET, ME, "POST", url, body)
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert json.loads(await resp.read())["code"] == "bad_request"


async def test_a_body_over_the_limit_is_refused(node: Node, session: aiohttp.ClientSession) -> None:
    url = f"{node.peer_url}{CONTENT_RANGE_PATH}"
    body = json_body({"key": {"url": KEY.url, "size": SIZE}, "pad": "y" * MAX_CONTENT_BODY})
    headers = signed_headers(SECRET, ME, "POST", url, body)
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 413


async def test_a_bad_pieces_name_is_400(node: Node, session: aiohttp.ClientSession) -> None:
    url = f"{node.peer_url}/v1/content/{'A' * 64}/pieces"
    async with session.get(url, headers=signed_headers(SECRET, ME, "GET", url)) as resp:
        assert resp.status == 400


async def test_budget_zero_serves_nothing(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with open_node(_config(tmp_path, cache_budget=0)) as node:
        assert node.share_cache is not None
        assert node.holdings is not None
        path = write_servable(node.download_dir / "f.bin", DATA)
        assert not node.share_cache.keep(KEY, path)
        assert not node.holdings.sharing
        node.holdings.register(KEY, path, verified=RangeSet([ByteRange(0, SIZE)]))  # the engine
        with pytest.raises(ContentNotShareable):
            await read_range(_source(session, node), ByteRange(0, 100))
        with pytest.raises(ContentNotShareable):
            await HolderReader.of(session, node, SECRET, ME).piece_hashes(KEY.index_name())


async def test_a_symlink_or_a_strangers_file_is_never_served(
    node: Node, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    assert node.holdings is not None
    assert node.share_cache is not None
    secret_file = write_servable(tmp_path / "elsewhere" / "secret.bin", DATA)
    link = node.download_dir / "f.bin"
    link.symlink_to(secret_file)
    assert not node.share_cache.keep(KEY, link)
    node.holdings.register(KEY, link, verified=RangeSet([ByteRange(0, SIZE)]))  # even so
    with pytest.raises(ContentNotHeld):
        await read_range(_source(session, node), ByteRange(0, 100))
    link.unlink()
    stranger = write_servable(link, DATA)
    os.chown(stranger, 4321, 4321)  # the tests run as root: another user's file
    with pytest.raises(ContentNotHeld):
        await read_range(_source(session, node), ByteRange(0, 100))
    assert node.holder is not None
    assert node.holder.stats.lan_bytes_served == 0


async def test_a_file_changed_after_it_was_kept_is_not_served(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.share_cache is not None
    path = write_servable(node.download_dir / "f.bin", DATA)
    node.share_cache.keep(KEY, path)
    with path.open("r+b") as f:
        f.write(b"edited by its user")
    with pytest.raises(ContentNotHeld):
        await read_range(_source(session, node), ByteRange(0, 100))


async def test_piece_hashes_of_pieces_fetched_from_the_origin(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.share_cache is not None
    hashes = {0: "0" * 64, 2: "2" * 64}
    node.share_cache.keep(
        KEY,
        write_servable(node.download_dir / "f.bin", DATA),
        piece_size=128 * KiB,
        piece_hashes=hashes,
    )
    holder = HolderReader.of(session, node, SECRET, ME)
    answer = await holder.piece_hashes(KEY.index_name())
    assert answer.piece_size == 128 * KiB
    assert answer.hashes == sorted(hashes.items())
    with pytest.raises(ContentNotHeld):
        await holder.piece_hashes("f" * 64)


async def test_the_kept_file_is_served_again_after_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with open_node(_config(tmp_path)) as node:
        assert node.share_cache is not None
        node.share_cache.keep(KEY, write_servable(node.download_dir / "f.bin", DATA))
    async with open_node(_config(tmp_path)) as node:
        assert await read_range(_source(session, node), ByteRange(5, 5000)) == DATA[5:5000]
