"""The fleet view asks its peers in parallel, at most ``max_in_flight`` at once, and answers
in the hub's order whatever order the peers answer in (``node.fleet.gather_summaries``)."""

from __future__ import annotations

import asyncio

from swarmget.node.fleet import FleetEntry, gather_summaries


async def test_peers_are_asked_in_parallel_within_the_bound() -> None:
    running = 0
    most = 0

    async def fetch(node_id: str, url: str) -> FleetEntry:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (10 - int(node_id)))  # the later ones answer first
        running -= 1
        return FleetEntry(node_id=node_id, url=url, error="unreachable (timed out)")

    peers = [(str(i), f"http://127.0.0.{i + 2}:1") for i in range(10)]
    found = await gather_summaries(fetch, peers, max_in_flight=3)
    assert [e.node_id for e in found] == [str(i) for i in range(10)]
    assert most == 3
