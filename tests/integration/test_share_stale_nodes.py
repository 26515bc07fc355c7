"""Fetch once per LAN (#15) between real ``swarmget node`` processes: a holder never serves
a stale copy to another node. Two nodes hold a file; it changes on the origin (new bytes, a
new ETag: another content key); a third node getting the URL gets the new bytes, all from
the origin, and not one LAN byte from the holders of the old content. The same swarm first
shows the control: before the change, the second node does take the file from the first
over the LAN (so the assertions after the change are not met by a swarm that never shares).
"""

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
        o.add_generated("f.bin", SIZE, seed=31)
        yield o


async def _result(api: NodeApi, url: str, dest: str) -> dict[str, Any]:
    result = (await api.download(url, dest))["result"]
    assert isinstance(result, dict)
    return result


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
