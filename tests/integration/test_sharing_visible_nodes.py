"""Fetch once per LAN (#15), made visible, between real ``swarmget node`` processes: a second
node takes a file over the LAN from a first; its download's bytes by kind of source (the
node's API JSON, ``swarmget status``, ``/metrics``) match what actually moved (the origin
server's own count of bytes sent), and each node's "origin bytes saved for the group today"
is the LAN bytes it served or received, in its own status and in its row of the first node's
fleet page (gathered node to node)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmget.core.units import human_bytes
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, NodeHandle, open_local_swarm

MiB = 1024 * 1024
SIZE = 6 * MiB + 7
#: bytes an origin may have sent into cancelled streams that the node never read (a bound)
UNREAD = 1 * MiB
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=4 * MiB) as o:
        o.add_generated("f.bin", SIZE, seed=22)
        yield o


async def _metrics(session: aiohttp.ClientSession, api_url: str) -> dict[tuple[str, str], float]:
    """``{(sample name, its source label or ""): value}`` from the node's ``/metrics``."""
    async with session.get(f"{api_url}/metrics") as resp:
        assert resp.status == 200
        page = await resp.text()
    return {
        (s.name, s.labels.get("source", "")): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


async def _status(state_dir: Path, *extra: str) -> str:
    """``swarmget status`` against the node of ``state_dir`` (a process), its output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarmget.cli", "status", "--state-dir", str(state_dir), *extra,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return out.decode()


async def _fleet_saved(session: aiohttp.ClientSession, node: NodeHandle) -> dict[str, str]:
    """node id -> its "saved for the group today" cell on ``node``'s portal fleet page."""
    _, link = await NodeApi(session, node).call("POST", "/v1/portal-link")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(link["url"]) as resp:
            assert resp.status == 200
        async with browser.get(f"{node.api_url}/portal/fleet") as resp:
            assert resp.status == 200
            page = await resp.text()
    cell = r'data-node="([^"]+)".*?class="num group-saved-today">([^<]*)<'  # (one per row)
    return dict(re.findall(cell, page, re.S))


async def test_bytes_by_source_and_the_group_saving_match_what_moved(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=["--share-downloads"], hub_ttl=6) as swarm,
    ):
        first, second = NodeApi(session, swarm.node(0)), NodeApi(session, swarm.node(1))
        await first.until_peers(1)
        url = origin.url("f.bin")
        one = await first.download(url, "one.bin")
        assert one["progress"]["by_source"]["lan"] == 0  # the first had nobody to take from
        before = origin.stats().bytes_total
        two = await second.download(url, "two.bin")
        from_origin = origin.stats().bytes_total - before  # the origin server's own count

        got = two["progress"]["by_source"]
        sharing = two["result"]["sharing"]
        assert got["lan"] == sharing["lan_bytes"] >= SIZE // 2
        assert got["origin"] + got["helper"] + got["check"] == sharing["origin_bytes"]
        # the origin counts what it wrote: a stream cancelled (the holder was faster) leaves
        # its last chunks in socket buffers, sent and never read
        assert sharing["origin_bytes"] <= from_origin <= sharing["origin_bytes"] + UNREAD
        assert got["check"] > 0  # the holder's bytes were sampled against the origin
        kinds = {s["id"]: s["kind"] for s in two["progress"]["sources"]}
        assert kinds[f"lan:{swarm.node(0).node_id}"] == "lan"
        assert kinds[swarm.node(1).node_id] == "origin"

        # per node: what each saved the group today (LAN served + LAN received)
        s1, s2 = await first.status(), await second.status()
        t1, t2 = s1["traffic"], s2["traffic"]
        assert t2["days"][-1]["lan_received"] == got["lan"] == t2["group_saved_today"]
        served = t1["days"][-1]["lan_served"]
        assert served >= got["lan"]  # (a stream cut in the endgame: sent, not all taken)
        assert t1["group_saved_today"] == served  # the first received nothing over the LAN
        assert t1["today"] == t2["today"]
        assert await _fleet_saved(session, swarm.node(0)) == {
            swarm.node(0).node_id: human_bytes(t1["group_saved_today"]),
            swarm.node(1).node_id: human_bytes(t2["group_saved_today"]),  # over the peer API
        }

        m1 = await _metrics(session, swarm.node(0).api_url)
        m2 = await _metrics(session, swarm.node(1).api_url)
        received = "swarmget_download_received_bytes_total"
        for kind in ("origin", "helper", "lan", "check"):  # (node 2 ran only this download)
            assert m2[(received, kind)] == got[kind]
        assert m2[("swarmget_group_saved_today_bytes", "")] == t2["group_saved_today"]
        assert m2[("swarmget_group_saved_bytes_total", "")] == t2["group_saved_total"]
        assert m1[("swarmget_lan_served_bytes_total", "")] == served
        assert m1[("swarmget_group_saved_today_bytes", "")] == served

        as_json = json.loads(await _status(swarm.node(1).state_dir, "--json"))
        (listed,) = as_json["downloads"]
        assert listed["progress"]["by_source"] == got
        assert as_json["node"]["traffic"]["group_saved_today"] == t2["group_saved_today"]
        shown = await _status(swarm.node(1).state_dir)
        assert "from LAN holders" in shown
        assert "origin bytes saved for the group" in shown
        assert "spot-checked" in shown  # how the holders' bytes were verified
