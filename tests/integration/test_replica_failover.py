"""Replica watching for real: two ``swarmget hub`` processes on one registry database (a
SQLite file), nodes as processes told both hubs (A first), heartbeating every 120 s.

A is hung (SIGSTOP: its kernel still accepts connections, nothing answers) or killed. By
themselves the nodes would notice only at their next heartbeat, up to two minutes later;
B sees A's counter stand still (``swarmget.hub.replicas``) and answers the nodes' held
watches, and each node moves to B with one heartbeat (``swarmget.net.replica_watch``).
The bound waited for (30 s) is a quarter of the heartbeat interval: no speed is measured
here (``bench/hub_load.py --fault`` does that).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.swarm import open_local_swarm

TTL = 360.0
BEAT = ["--heartbeat-interval", "120"]  # (after the local swarm's own 0.5 s: it wins)
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fault", [signal.SIGSTOP, signal.SIGKILL])
async def test_nodes_leave_a_hung_or_killed_replica_long_before_their_next_heartbeat(
    fault: signal.Signals, tmp_path: Path
) -> None:
    async with (
        open_local_swarm(tmp_path / "swarm", 2, hubs=2, hub_ttl=TTL, node_extra=BEAT) as swarm,
        aiohttp.ClientSession() as session,
    ):
        hub_a, hub_b = swarm.hub_urls()
        await swarm.until_hub_states(
            session,
            lambda s: all(h.get("registered") and h["hub_url"] == hub_a for h in s),
            limit=30,
        )
        await asyncio.sleep(3.0)  # B has read A's counter; the nodes' watches are held on B
        try:
            swarm.hubs[0].signal(fault)
            states = await swarm.until_hub_states(
                session,
                lambda s: all(h.get("registered") and h["hub_url"] == hub_b for h in s),
                limit=30,
            )
        finally:
            swarm.hubs[0].signal(signal.SIGCONT)
        # each moved with one heartbeat to B, which knew it from the shared registry: no
        # failed call, no new registration
        assert all(h["failures"] == 0 and h["error"] is None for h in states), states
