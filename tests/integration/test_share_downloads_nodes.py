"""Fetch once per LAN (#15) between real ``swarmget node`` processes: with
``--share-downloads``, a node that downloaded a file holds it for its group (the hub's
content index lists it), and a second node downloading the same content takes it over the
LAN (signed ``/v1/content-range``), its bytes checked by sampling against the origin.
Without the option nothing is shared."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
SIZE = 6 * MiB + 7
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=4 * MiB) as o:
        o.add_generated("f.bin", SIZE, seed=21)
        yield o


async def test_a_second_node_gets_the_file_from_the_first_over_the_lan(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=["--share-downloads"], hub_ttl=6) as swarm,
    ):
        first, second = NodeApi(session, swarm.node(0)), NodeApi(session, swarm.node(1))
        await first.until_peers(1)
        url = origin.url("f.bin")
        one = (await first.download(url, "one.bin"))["result"]
        assert one["sharing"]["joined"] is True
        two = (await second.download(url, "two.bin"))["result"]
        sharing = two["sharing"]
        assert isinstance(sharing, dict)
        assert sharing["joined"] is True
        assert sharing["holders_used"] is True
        assert sharing["holder_check"] == "sampled"
        # the first node left as a holder of the whole file (not only of what its rounds of
        # news announced): every byte came from it, the origin only gave the check windows
        assert sharing["lan_bytes"] >= SIZE
        assert sharing["origin_bytes"] < SIZE // 4
        data = (swarm.node(1).download_dir / "two.bin").read_bytes()
        assert hashlib.sha256(data).hexdigest() == origin.expected_sha256("f.bin")


async def test_without_the_option_nothing_is_shared(origin: TestOrigin, tmp_path: Path) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 1, hub_ttl=6) as swarm,
    ):
        api = NodeApi(session, swarm.node(0))
        result = (await api.download(origin.url("f.bin"), "f.bin"))["result"]
        assert isinstance(result, dict)
        assert "sharing" not in result
