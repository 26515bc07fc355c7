"""Issue #16, "Look, don't read": a real download through a helper node (processes on
127.0.0.x, a per-IP-capped origin), so both origin and peer bytes exist. The download's JSON
carries the "faster than alone" estimate; the bytes per day (origin, peers, served) are in
each node's history database once the nodes stop, and a restarted requester reports them
(status, the portal's overview chart, the Prometheus counter) without counting them twice."""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.node.history import DownloadHistory
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, node_args, open_local_swarm, start_proc

MiB = 1024 * 1024
CAP = 2 * MiB  # per client IP
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=CAP) as o:
        o.add_generated("f.bin", 8 * MiB + 3, seed=5)
        yield o


async def wait_for_peers(api: NodeApi, count: int, limit: float = 15.0) -> None:
    async with asyncio.timeout(limit):
        while len(await api.peers()) < count:
            await asyncio.sleep(0.2)


def utc_today() -> str:
    """Today as the node counts its days: UTC, the daily quota's day."""
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def today_row(state_dir: Path) -> tuple[int, int, int]:
    history = DownloadHistory(state_dir)
    try:
        rows = history.days(utc_today())
    finally:
        history.close()
    assert len(rows) == 1, rows
    return rows[0].origin, rows[0].peer, rows[0].served


async def test_daily_bytes_and_savings_survive_a_restart(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=["--stall-timeout", "2"]) as swarm,
    ):
        api = NodeApi(session, swarm.node(0))
        await wait_for_peers(api, 1)
        sha = origin.expected_sha256("f.bin")
        done = await api.wait(await api.start(origin.url("f.bin"), checksums=[f"sha256:{sha}"]))
        assert done["state"] == "done", done["error"]
        speedup = done["speedup"]
        assert speedup["own_origin_bytes"] > 0, speedup
        assert speedup["peer_bytes"] > 0, speedup
        assert speedup["factor"] is not None
        assert speedup["factor"] > 1.0  # two capped links beat one (an estimate; no timing)
        for node in swarm.nodes:  # SIGTERM: the last counts are flushed at shutdown
            await node.proc.stop()
        origin_0, peer_0, _ = today_row(swarm.node(0).state_dir)
        assert origin_0 >= speedup["own_origin_bytes"]
        assert peer_0 >= speedup["peer_bytes"]
        assert today_row(swarm.node(1).state_dir)[2] >= speedup["peer_bytes"]  # served

        again = await restart(swarm, 0, session)
        try:
            status, data = await again.call("GET", "/v1/status")
            assert status == 200
            traffic = data["traffic"]
            assert traffic["days"][-1] == {
                "day": utc_today(),
                "origin": origin_0,
                "peer": peer_0,
                "served": 0,
                "lan_received": 0,  # (no --share-downloads: nothing over the LAN)
                "lan_served": 0,
            }
            assert (traffic["saved_today"], traffic["saved_total"]) == (peer_0, peer_0)
            status, listed = await again.call("GET", "/v1/downloads")
            assert listed["downloads"][0]["speedup"] == speedup  # kept in the history
            metrics = await text(session, f"{swarm.node(0).api_url}/metrics")
            assert sample(metrics, "swarmget_origin_saved_bytes_total") == peer_0
            out = await status_text(swarm.node(0).state_dir)
            assert "own origin link spared" in out
            assert f"~{speedup['factor']:.1f}x (estimate)" in out
        finally:
            await again.stop_node()


class Restarted(NodeApi):
    def __init__(self, session: aiohttp.ClientSession, swarm: LocalSwarm, i: int) -> None:
        super().__init__(session, swarm.node(i))
        self._node = swarm.node(i)

    async def stop_node(self) -> None:
        await self._node.proc.stop()


async def restart(swarm: LocalSwarm, i: int, session: aiohttp.ClientSession) -> Restarted:
    node = swarm.node(i)
    args = node_args(
        swarm.hub_urls(), node.address, swarm.secret_file, node.state_dir, node.download_dir, []
    )
    node.proc = await start_proc(args, swarm.root / f"node{i}-again.log", _env())
    return Restarted(session, swarm, i)


async def status_text(state_dir: Path) -> str:
    """``swarmget status`` against the node of ``state_dir`` (a process), its output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarmget.cli", "status", "--state-dir", str(state_dir),
        stdout=asyncio.subprocess.PIPE, env={**_env(), "COLUMNS": "250"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return out.decode()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


async def text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        return await resp.text()


def sample(metrics: str, name: str) -> float:
    """The value of ``name``'s one sample in a Prometheus text page."""
    values = [
        float(line.split()[1]) for line in metrics.splitlines() if line.startswith(name + " ")
    ]
    assert len(values) == 1, name
    return values[0]
