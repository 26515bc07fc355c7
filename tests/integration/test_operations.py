"""Operations: /metrics after a real swarm download, and a node's graceful SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm, start_proc

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=2 * MiB) as o:
        o.add_generated("f.bin", 12 * MiB + 1, seed=5)
        yield o


def scrape(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def get_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def wait_peers(api: NodeApi, count: int) -> None:
    async with asyncio.timeout(15):
        while len(await api.peers()) < count:
            await asyncio.sleep(0.2)


async def test_metrics_match_the_bytes_moved(origin: TestOrigin, tmp_path: Path) -> None:
    async with open_local_swarm(tmp_path, 3) as swarm, aiohttp.ClientSession() as session:
        api = NodeApi(session, swarm.node(0))
        await wait_peers(api, 2)
        result = await api.wait(await api.start(origin.url("f.bin")))
        assert result["state"] == "done", result["error"]
        size = 12 * MiB + 1
        requester = scrape(await get_text(session, f"{swarm.node(0).api_url}/metrics"))
        own = requester["swarmget_origin_received_bytes_total"]
        from_peers = requester["swarmget_peer_received_bytes_total"]
        assert own > 0
        assert from_peers > 0
        # every byte that came in, counted as it came: the file, and what endgame copies
        # and cancelled streams brought in besides (at most a few chunks per stream)
        assert size <= own + from_peers <= size + 2 * MiB * len(swarm.nodes)
        assert requester['swarmget_downloads_finished_total{result="done"}'] == 1
        assert requester['swarmget_download_duration_seconds_count{result="done"}'] == 1
        assert requester['swarmget_downloads{state="done"}'] == 1
        served = 0.0
        for helper in swarm.nodes[1:]:
            values = scrape(await get_text(session, f"{helper.api_url}/metrics"))
            served += values["swarmget_helper_sent_bytes_total"]
        assert served >= from_peers  # helpers served at least what was kept
        fetched = sum(
            b for ip, b in origin.stats().bytes_by_ip.items() if ip != swarm.node(0).address
        )
        # and what they fetched from the origin, less what was still in flight when the
        # requester cancelled a stream (an endgame copy that lost, a split): the origin
        # counts bytes it wrote, a helper those it forwarded. Per helper that is at most
        # what its client and the socket buffers between held.
        helpers = len(swarm.nodes) - 1
        assert served <= fetched <= served + 2 * MiB * helpers
        hub = scrape(await get_text(session, f"{swarm.hub.info['url']}/metrics"))
        assert hub["swarmget_hub_registered_nodes"] == 3
        assert hub["swarmget_hub_heartbeat_seconds_count"] > 0


async def test_sigterm_leaves_the_hub_and_the_download_resumes_on_restart(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path, 3) as swarm, aiohttp.ClientSession() as session:
        helper_api = NodeApi(session, swarm.node(1))
        api = NodeApi(session, swarm.node(0))
        await wait_peers(api, 2)
        download_id = await api.start(origin.url("f.bin"))
        async with asyncio.timeout(30):
            while True:
                _, data = await api.call("GET", f"/v1/downloads/{download_id}")
                progress = data.get("progress") or {}
                if progress.get("size") and progress["done"] > progress["size"] // 3:
                    break
                await asyncio.sleep(0.1)
        node = swarm.node(0)
        node.proc.signal(signal.SIGTERM)
        async with asyncio.timeout(15):  # a bounded, clean exit
            assert await node.proc.process.wait() == 0
        peers = {p["node_id"] for p in await helper_api.peers()}
        assert node.node_id not in peers  # it left the hub (no TTL wait)
        assert (node.state_dir / "downloads.json").exists()
        assert any(p.name.endswith(".part") for p in node.download_dir.iterdir())

        # the same node again: it resumes the download from its part file
        args = [
            "node", "--hub", str(swarm.hub.info["url"]), "--listen", node.address,
            "--port", "0", "--api-port", "0", "--secret-file", str(swarm.secret_file),
            "--state-dir", str(node.state_dir), "--download-dir", str(node.download_dir),
            "--allow-private-origins", "127.0.0.0/8", "--heartbeat-interval", "0.5",
        ]  # fmt: skip
        restarted = await start_proc(args, tmp_path / "restart.log", dict(os.environ))
        try:
            node.proc = restarted
            again = NodeApi(session, node)
            result = await again.wait(download_id)
            assert result["state"] == "done", result["error"]
            assert result["result"]["resumed_bytes"] > 0
            data = Path(result["result"]["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == origin.expected_sha256("f.bin")
        finally:
            await restarted.stop()


async def test_json_logs_carry_the_download_id(origin: TestOrigin, tmp_path: Path) -> None:
    extra = {0: ["--log-format", "json"], 1: []}
    async with open_local_swarm(tmp_path, 2, node_extra=extra) as swarm:
        async with aiohttp.ClientSession() as session:
            api = NodeApi(session, swarm.node(0))
            await wait_peers(api, 1)
            download_id = await api.start(origin.url("f.bin"))
            result = await api.wait(download_id)
            assert result["state"] == "done", result["error"]
        await swarm.node(0).proc.stop()
    lines = [json.loads(line) for line in (tmp_path / "node0.log").read_text().splitlines()]
    mine = [entry for entry in lines if entry.get("download_id") == download_id]
    assert any(entry["msg"].startswith("download started") for entry in mine)
    assert any(entry["msg"].startswith("download done") for entry in mine)
    engine_lines = [entry for entry in lines if entry["logger"] == "swarmget.engine"]
    assert engine_lines
    assert all(entry.get("download_id") == download_id for entry in engine_lines)
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in lines)
