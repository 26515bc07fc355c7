"""``swarmget.testing.swarm.open_local_swarm`` stops every process it started, a node
restarted during the test included (one was left running after the suite before)."""

from __future__ import annotations

from pathlib import Path

from swarmget.testing.swarm import open_local_swarm


async def test_a_restarted_node_is_stopped_with_the_swarm(tmp_path: Path) -> None:
    async with open_local_swarm(tmp_path, 1) as swarm:
        first = swarm.node(0).proc
        again = (await swarm.restart_node(0)).proc
        assert again is not first
        assert first.process.returncode is not None  # stopped by the restart
        assert again.process.returncode is None
    assert again.process.returncode is not None
    assert swarm.hub.process.returncode is not None
