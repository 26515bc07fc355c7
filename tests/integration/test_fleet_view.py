"""The fleet view (issue #16, "No fleet view"), on a real hub and three real node processes:
node 0's portal lists every node of the group with its limits, gathered node to node over
the signed ``GET /v1/summary`` (the hub only lists them); a peer that is killed or stopped
shows as unreachable and never holds the page; an unsigned summary request is refused, and
a summary tells counts and rates, never the URL or file name of its user's download."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from swarmget.net.signing import signed_headers
from swarmget.protocol.peer import SUMMARY_PATH, NodeSummary
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm

pytestmark = pytest.mark.slow
EXTRA = {
    0: ["--slots", "2"],
    1: ["--slots", "4", "--rate-limit", "3M"],
    2: ["--slots", "5", "--daily-quota", "1G"],
}


async def wait_peers(api: NodeApi, want: int) -> None:
    async with asyncio.timeout(30):
        while len(await api.peers()) < want:
            await asyncio.sleep(0.2)


async def fleet_html(session: aiohttp.ClientSession, swarm: LocalSwarm) -> tuple[int, str]:
    """Log in to node 0's portal (a one-time link from its user API) and fetch /fleet."""
    _, link = await NodeApi(session, swarm.node(0)).call("POST", "/v1/portal-link")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(link["url"]) as resp:
            assert resp.status == 200
        async with browser.get(f"{swarm.node(0).api_url}/portal/fleet") as resp:
            return resp.status, await resp.text()


def rows(html: str) -> dict[str, str]:
    """node id -> its row's HTML."""
    found = re.findall(r'(<tr class="fleet-node[^"]*" data-node="([^"]+)".*?</tr>)', html, re.S)
    return {node: row for row, node in found}


async def test_the_fleet_page_lists_every_node_and_its_limits(tmp_path: Path) -> None:
    async with (
        open_test_origin() as origin,
        open_local_swarm(tmp_path, 3, node_extra=EXTRA, hub_ttl=60) as swarm,
        aiohttp.ClientSession() as session,
    ):
        origin.add_generated("private-name.bin", 64 * 1024, seed=2)
        await wait_peers(NodeApi(session, swarm.node(0)), 2)
        status, html = await fleet_html(session, swarm)
        assert status == 200
        listed = rows(html)
        assert set(listed) == {swarm.node(i).node_id for i in range(3)}
        assert "this node" in listed[swarm.node(0).node_id]
        assert "0 / 2" in listed[swarm.node(0).node_id]
        assert "0 / 4" in listed[swarm.node(1).node_id]
        assert "3.0 MiB/s" in listed[swarm.node(1).node_id]
        assert "0 / 5" in listed[swarm.node(2).node_id]
        assert "left of 1.0 GiB" in listed[swarm.node(2).node_id]
        assert all('data-health="ok"' in row for row in listed.values())

        swarm.node(1).proc.signal(signal.SIGSTOP)  # alive but silent: the timeout
        swarm.node(2).proc.signal(signal.SIGKILL)  # gone: no connection
        await swarm.node(2).proc.process.wait()
        status, html = await fleet_html(session, swarm)
        assert status == 200
        listed = rows(html)
        assert set(listed) == {swarm.node(i).node_id for i in range(3)}  # still on the hub
        assert 'data-health="unreachable (timed out)"' in listed[swarm.node(1).node_id]
        assert 'data-health="unreachable (no connection)"' in listed[swarm.node(2).node_id]
        assert 'data-health="ok"' in listed[swarm.node(0).node_id]
        swarm.node(1).proc.signal(signal.SIGCONT)


async def test_a_summary_is_signed_and_tells_no_url(tmp_path: Path) -> None:
    async with (
        open_test_origin() as origin,
        open_local_swarm(tmp_path, 1) as swarm,
        aiohttp.ClientSession() as session,
    ):
        origin.add_generated("private-name.bin", 64 * 1024, seed=2)
        node = swarm.node(0)
        api = NodeApi(session, node)
        download = await api.start(origin.url("private-name.bin"))
        assert (await api.wait(download))["state"] == "done"
        url = f"{node.proc.info['peer_url']}{SUMMARY_PATH}"
        async with session.get(url) as resp:
            assert resp.status == 401
        secret = swarm.secret_file.read_bytes().strip()
        headers = signed_headers(secret, identity_for("fleet-viewer"), "GET", url)
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 200
            body = await resp.text()
        summary = NodeSummary.model_validate_json(body)
        assert summary.node_id == node.node_id
        assert summary.downloads == {"done": 1}
        assert "private-name" not in body
        assert "127.0.0.1" not in body
        assert download not in body
