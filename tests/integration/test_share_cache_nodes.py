"""Fetch once per LAN (#15), limits and lifecycle between real ``swarmget node`` processes
on 127.0.0.x: a node getting again a content it keeps copies its own file (the origin: one
HEAD) and never a stale one; a holder restarted on its state directory announces its kept
file to the hub's content index again (a later requester takes it over the LAN), and a
holder whose daily LAN allowance (``--lan-daily-quota``, else the ``--daily-quota`` figure) is
used up refuses with the typed error while the requester still finishes, correctly, from the
origin. And across nodes: after the file changes on the origin (a new ETag: another content
key) no holder of the old content serves a byte of it to a node getting the URL (with the
control first: unchanged, the same swarm does take it over the LAN)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
SIZE = 6 * MiB + 7
SHARE = ["--share-downloads"]
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=4 * MiB) as o:
        o.add_generated("f.bin", SIZE, seed=22)
        yield o


async def _result(api: NodeApi, url: str, dest: str) -> dict[str, Any]:
    result = (await api.download(url, dest))["result"]
    assert isinstance(result, dict)
    return result


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_restarted_holder_announces_its_kept_file_again(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=SHARE, hub_ttl=6) as swarm,
    ):
        url = origin.url("f.bin")
        one = await _result(NodeApi(session, swarm.node(0)), url, "one.bin")
        assert one["sharing"]["joined"] is True
        kept = await NodeApi(session, swarm.node(0)).until_sharing("kept_files", 1)
        assert kept["kept_bytes"] == SIZE  # under the share cache's budget
        # stopped, the node leaves the hub (and its content index); started again, it
        # announces what its share cache kept
        await swarm.restart_node(0, SHARE)
        first = NodeApi(session, swarm.node(0))
        again = await first.until_sharing("announced", 1)
        assert again["kept_files"] == 1
        second = NodeApi(session, swarm.node(1))
        two = await _result(second, url, "two.bin")
        assert two["sharing"]["lan_bytes"] >= SIZE // 2
        assert _sha(swarm.node(1).download_dir / "two.bin") == origin.expected_sha256("f.bin")


async def test_a_holder_out_of_lan_allowance_is_skipped_and_the_requester_finishes(
    origin: TestOrigin, tmp_path: Path
) -> None:
    # node 0's allowance is given (over its --daily-quota); node 1's is its --daily-quota's
    extra = {
        0: [*SHARE, "--daily-quota", "1G", "--lan-daily-quota", "64K"],
        1: [*SHARE, "--daily-quota", "3G"],
    }
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=extra, hub_ttl=6) as swarm,
    ):
        first, second = NodeApi(session, swarm.node(0)), NodeApi(session, swarm.node(1))
        url = origin.url("f.bin")
        await _result(first, url, "one.bin")
        await first.until_sharing("kept_files", 1)
        two = await _result(second, url, "two.bin")
        assert two["sharing"]["joined"] is True
        assert two["sharing"]["lan_bytes"] < SIZE // 4  # refused: the bytes came from elsewhere
        assert _sha(swarm.node(1).download_dir / "two.bin") == origin.expected_sha256("f.bin")
        sharing = await first.sharing()
        assert sharing["lan_daily_quota"] == 64 * 1024
        assert sharing["lan_bytes_served"] <= 64 * 1024
        assert sharing["lan_quota_refused"] >= 1
        assert (await second.sharing())["lan_daily_quota"] == 3 * 1024 * MiB


async def test_a_node_getting_again_what_it_holds_copies_it_and_never_serves_it_stale(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 1, node_extra=SHARE, hub_ttl=6) as swarm,
    ):
        api, node = NodeApi(session, swarm.node(0)), swarm.node(0)
        url = origin.url("f.bin")
        one = await _result(api, url, "one.bin")
        assert one["sharing"]["own_bytes"] == 0
        await api.until_sharing("kept_files", 1)
        before = origin.stats()
        two = await _result(api, url, "two.bin")  # the same content, another name
        after = origin.stats()
        assert _sha(node.download_dir / "two.bin") == origin.expected_sha256("f.bin")
        # from the origin: its freshness check only (the probe's HEAD), not one byte
        assert after.bytes_total == before.bytes_total
        assert len(after.served) == len(before.served)
        assert after.requests_by_method["HEAD"] > before.requests_by_method["HEAD"]
        sharing = two["sharing"]
        assert sharing["own_bytes"] == SIZE
        assert sharing["origin_bytes"] == 0
        assert sharing["lan_bytes"] == 0
        assert "starved" not in sharing["notes"]
        # the file changes on the origin: the kept copy is another content now
        origin.add_generated("f.bin", SIZE, seed=23)
        before = origin.stats().bytes_total
        three = await _result(api, url, "three.bin")
        assert _sha(node.download_dir / "three.bin") == origin.expected_sha256("f.bin")
        assert _sha(node.download_dir / "three.bin") != _sha(node.download_dir / "two.bin")
        assert three["sharing"]["own_bytes"] == 0
        assert origin.stats().bytes_total - before >= SIZE


async def _served(apis: list[NodeApi]) -> list[int]:
    """LAN bytes each node served so far (``/v1/content-range``, its holder side)."""
    return [int((await api.sharing())["lan_bytes_served"]) for api in apis]


async def test_after_the_origin_changes_no_holder_serves_the_old_content(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 3, node_extra=SHARE, hub_ttl=6) as swarm,
    ):
        first, second, third = (NodeApi(session, swarm.node(i)) for i in range(3))
        url = origin.url("f.bin")
        old_sha, old_etag = origin.expected_sha256("f.bin"), origin.etag("f.bin")
        await _result(first, url, "one.bin")
        await first.until_sharing("kept_files", 1)
        # the control: unchanged, the content comes from the first node over the LAN
        two = await _result(second, url, "two.bin")
        assert two["sharing"]["lan_bytes"] >= SIZE // 2
        assert _sha(swarm.node(1).download_dir / "two.bin") == old_sha
        assert (await _served([first]))[0] >= SIZE // 2
        await second.until_sharing("kept_files", 1)  # two holders of the old content now
        served = await _served([first, second])

        origin.add_generated("f.bin", SIZE, seed=32)  # new bytes, same URL and size
        assert origin.etag("f.bin") != old_etag
        new_sha = origin.expected_sha256("f.bin")
        assert new_sha != old_sha

        three = await _result(third, url, "three.bin")
        assert _sha(swarm.node(2).download_dir / "three.bin") == new_sha
        sharing = three["sharing"]
        assert sharing["joined"] is True  # it did look for holders (of the new content key)
        assert sharing["lan_bytes"] == 0
        assert sharing["holder_check"] == "none"  # no holder's bytes were taken
        assert sharing["banned_holders"] == []  # nor offered and caught wrong
        assert sharing["origin_bytes"] >= SIZE
        # the holders of the old content served nobody since (no stale byte left them)
        assert await _served([first, second]) == served
