"""Helpers join a download while it runs: a listed peer that does not answer delays nothing.

The requester runs in this process (its health checks wait ``HEALTH_TIMEOUT`` for an answer,
far longer than the download needs); the hub and two helpers are processes on 127.0.0.x.
One helper is SIGSTOPped after it registered: the hub still lists it, the kernel still
accepts its connections, nobody answers. Before issue #14 the requester waited for that
health check to time out before its first byte; now the download starts at once on its own
connections and the healthy helper joins as soon as it answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.lifecycle import DownloadState
from swarmget.engine import DownloadSpec
from swarmget.node.daemon import NodeConfig, open_node
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
HEALTH_TIMEOUT = 120.0  # the stopped peer's check never ends within the test
WITHIN = 60.0  # the download must be done by then: half of the health timeout
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=2 * MiB) as o:  # every address capped alike
        o.add_generated("f.bin", 8 * MiB + 11, seed=21)
        yield o


@pytest.mark.parametrize("probe_delay", [0.0, 0.3])
async def test_a_listed_peer_that_never_answers_delays_nothing(
    origin: TestOrigin, tmp_path: Path, probe_delay: float
) -> None:
    """``probe_delay``: the origin answers that late, so that the hub answers first and
    each listed helper is told a lead (as with a distant origin): the stopped one's bytes
    must not wait for its check either (they did, until its timeout)."""
    origin.configure(first_byte_delay=probe_delay)
    async with open_local_swarm(tmp_path / "swarm", 2, hub_ttl=60.0) as swarm:
        config = NodeConfig(
            secret=swarm.secret_file.read_text().strip().encode(),
            state_dir=tmp_path / "state",
            download_dir=tmp_path / "dl",
            listen_host="127.0.0.9",
            hub_urls=tuple(swarm.hub_urls()),
            origin_policy=AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8")),
            health_timeout=HEALTH_TIMEOUT,
        )
        async with aiohttp.ClientSession() as session, asyncio.timeout(20):
            seen_by_first = NodeApi(session, swarm.node(0))
            while not await seen_by_first.peers():  # both helpers registered
                await asyncio.sleep(0.1)
        async with open_node(config) as node:
            assert await node.wait_registered(10.0)
            stopped, healthy = swarm.node(1), swarm.node(0)
            stopped.proc.signal(signal.SIGSTOP)  # listed (TTL 60 s), accepts, never answers
            try:
                spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "dl" / "f.bin")
                record = node.downloads.create(spec)
                assert record.task is not None
                async with asyncio.timeout(WITHIN):
                    await record.task
            finally:
                stopped.proc.signal(signal.SIGCONT)
    assert record.state is DownloadState.DONE, record.error
    assert record.result is not None
    body = record.result.path.read_bytes()
    assert hashlib.sha256(body).hexdigest() == origin.expected_sha256("f.bin")
    claimed = {s.source_id: s.claimed for s in record.result.sources}
    assert claimed.get(healthy.node_id, 0) > 0  # the healthy helper joined and worked
    assert stopped.node_id not in claimed  # the stopped one never became a source
    assert record.peers_checked == [healthy.node_id]
