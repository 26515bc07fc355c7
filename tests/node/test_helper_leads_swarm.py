"""Leads end to end (issue #14): a requester tells each listed helper the first range it
will ask of it, the helper asks the origin for it with the health check's answer, and the
download's first range of that helper is exactly that lead. A hub and two helpers are
processes on 127.0.0.x; the requester runs in this process."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.lifecycle import DownloadState
from swarmget.engine import DownloadSpec
from swarmget.engine.download import FIRST_RANGE, LEAD
from swarmget.node.daemon import NodeConfig, open_node
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
REQUESTER_IP = "127.0.0.9"
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    # every address capped alike; every answer a while away, as over a long path (the probe
    # answers after the hub did: only then are leads planned)
    async with open_test_origin(rate_per_ip=4 * MiB, first_byte_delay=0.3) as o:
        o.add_generated("f.bin", 8 * MiB + 11, seed=22)
        yield o


async def test_each_helper_starts_with_the_lead_it_was_told(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 2, hub_ttl=60.0) as swarm:
        config = NodeConfig(
            secret=swarm.secret_file.read_text().strip().encode(),
            state_dir=tmp_path / "state",
            download_dir=tmp_path / "dl",
            listen_host=REQUESTER_IP,
            hub_urls=tuple(swarm.hub_urls()),
            origin_policy=AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8")),
        )
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            first = NodeApi(session, swarm.node(0))
            while not await first.peers():  # both helpers registered (it lists the other)
                await asyncio.sleep(0.1)
        async with open_node(config) as node:
            assert await node.wait_registered(10.0)
            spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "dl" / "f.bin")
            record = node.downloads.create(spec)
            assert record.task is not None
            async with asyncio.timeout(60):
                await record.task
        helper_ips = {swarm.node(i).address for i in (0, 1)}
    assert record.state is DownloadState.DONE, record.error
    assert record.result is not None
    body = record.result.path.read_bytes()
    assert hashlib.sha256(body).hexdigest() == origin.expected_sha256("f.bin")
    claimed = {s.source_id: s.claimed for s in record.result.sources}
    assert all(claimed.get(swarm.node(i).node_id, 0) > 0 for i in (0, 1))
    leads = {(FIRST_RANGE + k * LEAD, FIRST_RANGE + (k + 1) * LEAD) for k in (0, 1)}
    served = origin.stats().served
    by_helpers = {(s.start, s.end_exclusive) for s in served if s.ip in helper_ips}
    assert leads <= by_helpers  # each lead asked of the origin by a helper ...
    for start, end in leads:  # ... once, by one helper, and by nobody else
        askers = [s.ip for s in served if (s.start, s.end_exclusive) == (start, end)]
        assert len(askers) == 1
        assert askers[0] in helper_ips
