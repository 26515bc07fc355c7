"""The daily LAN allowance (``--lan-daily-quota``, fetch once per LAN #15, §7): a real node
serves held content until its allowance for the UTC day is used, then answers the typed
429 ``lan_quota`` (``LanAllowanceUsedUp``) with a Retry-After, apart from ``--daily-quota``
(the origin allowance); the count survives a restart of the node the same day."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.content import ContentKey
from swarmget.core.errors import LanAllowanceUsedUp
from swarmget.core.ranges import ByteRange
from swarmget.net.content_peer import content_range_body
from swarmget.net.signing import signed_headers
from swarmget.node.content_adapters import LAN_QUOTA_FILE
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.node.quota import DailyQuota, seconds_to_nextutc_day, utc_day
from swarmget.protocol.content import CONTENT_RANGE_PATH
from swarmget.testing.fakes import identity_for
from swarmget.testing.holders import HolderReader, loopback_config

SECRET = b"s" * 32
ME = identity_for("lan-allowance-asker")
KiB = 1024
SIZE = 300 * KiB
DATA = random.Random(8).randbytes(SIZE)
KEY = ContentKey.from_probe(final_url="http://origin.test/a.bin", size=SIZE, etag='"v1"')


def _config(tmp_path: Path, **kw: Any) -> NodeConfig:
    return loopback_config(tmp_path, secret=SECRET, **kw)


def _keep(node: Node) -> None:
    assert node.share_cache is not None
    path = node.download_dir / "a.bin"
    if not path.exists():
        path.write_bytes(DATA)
        os.chmod(path, 0o644)
    assert node.share_cache.keep(KEY, path)


async def _read(session: aiohttp.ClientSession, node: Node, rng: ByteRange) -> bytes:
    return await HolderReader.of(session, node, SECRET, ME).read(KEY, rng)


async def test_lan_uploads_stop_at_the_allowance_apart_from_the_origin_quota(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, lan_daily_quota=200 * KiB, daily_quota=1 * KiB)
    async with aiohttp.ClientSession() as session:
        async with open_node(config) as node:
            _keep(node)
            assert node.holder is not None
            # twice the origin quota, within the LAN allowance: served
            assert await _read(session, node, ByteRange(0, 150 * KiB)) == DATA[: 150 * KiB]
            with pytest.raises(LanAllowanceUsedUp):  # 50 KiB left: not this range
                await _read(session, node, ByteRange(0, 60 * KiB))
            assert await _read(session, node, ByteRange(0, 50 * KiB)) == DATA[: 50 * KiB]
            with pytest.raises(LanAllowanceUsedUp):
                await _read(session, node, ByteRange(0, 1))
            headers = {"Authorization": f"Bearer {node.api_token}"}
            async with session.get(node.api_url + "/metrics", headers=headers) as resp:
                assert "swarmget_lan_quota_refusals_total 2.0" in await resp.text()
            assert node.helper.quota is not None
            assert node.helper.quota.left() == 1 * KiB  # the origin quota: untouched
            # the answer on the wire: 429, the code, and when to come back (the next day)
            body = content_range_body(KEY, ByteRange(0, 1))
            url = node.peer_url + CONTENT_RANGE_PATH
            headers = signed_headers(SECRET, ME, "POST", url, body)
            async with session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 429
                assert (await resp.json())["code"] == LanAllowanceUsedUp.code
                assert 1 <= int(resp.headers["Retry-After"]) <= 25 * 3600
        # restarted the same day: what was served still counts
        async with open_node(config) as node:
            _keep(node)
            with pytest.raises(LanAllowanceUsedUp):
                await _read(session, node, ByteRange(0, 1))
    assert (tmp_path / "state" / LAN_QUOTA_FILE).exists()


async def test_without_an_allowance_lan_uploads_are_unlimited(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session, open_node(_config(tmp_path)) as node:
        _keep(node)
        for _ in range(4):  # 4 × the file
            assert await _read(session, node, ByteRange(0, SIZE)) == DATA
        assert not (tmp_path / "state" / LAN_QUOTA_FILE).exists()


def test_the_allowance_counts_per_utc_day_with_a_fake_clock(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    allowance = DailyQuota(
        tmp_path / "q.json",
        100,
        clock=lambda: now[0],
        day=utc_day,
        until_next_day=seconds_to_nextutc_day,
    )
    assert allowance.try_reserve(80)
    allowance.settle(80, 80)
    assert not allowance.try_reserve(30)
    wait = allowance.retry_after()
    assert 1 <= wait <= 25 * 3600
    now[0] += wait + 1  # the next UTC day
    assert utc_day(now[0]) != utc_day(now[0] - wait - 1)
    assert allowance.left() == 100


@pytest.mark.parametrize("garbage", [b"\x00\xff not json", b'{"day": 1, "used": "x"}', b"[]"])
async def test_a_corrupted_allowance_file_starts_the_day_afresh(
    tmp_path: Path, garbage: bytes
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / LAN_QUOTA_FILE).write_bytes(garbage)
    config = _config(tmp_path, lan_daily_quota=100 * KiB)
    async with aiohttp.ClientSession() as session, open_node(config) as node:
        _keep(node)
        assert node.holder is not None
        assert node.holder.allowance is not None
        assert node.holder.allowance.left() == 100 * KiB
        assert await _read(session, node, ByteRange(0, 10 * KiB)) == DATA[: 10 * KiB]
        assert node.holder.allowance.left() == 90 * KiB
