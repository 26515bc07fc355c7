"""Pipelining for real (issue #14): a requester asks a helper for its next range while the
current one still streams, and the helper lends the ending stream's slot to it instead of
refusing it as busy. A hub and two nodes as processes on 127.0.0.x; the origin waits before
every answer (a round trip's worth), so each new range would leave the link idle."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=2 * MiB, first_byte_delay=0.15) as o:
        o.add_generated("f.bin", 12 * MiB + 3, seed=11)
        yield o


async def metrics_of(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], float]:
    """(sample name, its reason label or "") -> value, from a /metrics page."""
    async with session.get(f"{url}/metrics") as resp:
        page = await resp.text()
    return {
        (s.name, s.labels.get("reason", "")): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


async def test_a_one_slot_helper_gets_its_next_range_before_the_last_ends(
    origin: TestOrigin, tmp_path: Path
) -> None:
    extra = {0: ["--stall-timeout", "5"], 1: ["--slots", "1"]}
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=extra) as swarm,
    ):
        api = NodeApi(session, swarm.node(0))
        await api.until_peers(1)
        digest = origin.expected_sha256("f.bin")
        download_id = await api.start(origin.url("f.bin"), checksums=[f"sha256:{digest}"])
        result = await api.wait(download_id)
        assert result["state"] == "done", result["error"]
        path = Path(result["result"]["path"])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        helper_id = swarm.node(1).node_id
        (helper,) = [s for s in result["progress"]["sources"] if s["id"] == helper_id]
        assert helper["claimed"] > 2 * MiB
        helped = await metrics_of(session, swarm.node(1).api_url)
        assert helped[("swarmget_helper_lent_slots_total", "")] >= 1
        assert helper["ahead"] >= 1
        # no range asked for ahead was refused; a stream we cut short (a steal) may still
        # hold its slot on the helper for a moment when the next range is asked for
        assert helped[("swarmget_helper_refusals_total", "busy")] <= helper["cut"]
