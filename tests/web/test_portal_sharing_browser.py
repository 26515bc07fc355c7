"""Fetch once per LAN (#15) in the portal, in Debian's chromium, against real ``swarmget
node`` processes: a second node takes a file over the LAN from a first; its download's page
shows the bytes by kind of source (the same numbers as its API JSON) and how the holders'
bytes were checked, and each node's overview shows the origin bytes it saved the group
today, as does the first node's fleet page, one row per node, updating itself while the
second downloads. Screenshots: ``test-artifacts/portal-sharing.png``,
``portal-fleet-saved.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.units import human_bytes
from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

MiB = 1024 * 1024
SIZE = 5 * MiB + 3
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.slow


async def _done(api: NodeApi, url: str, dest: str) -> dict[str, Any]:
    done = await api.wait(await api.start(url, output=dest))
    assert done["state"] == "done", done
    return done


async def _open_portal(api: NodeApi, page: Any) -> None:
    _, link = await api.call("POST", "/v1/portal-link")
    await page.goto(link["url"])


async def test_the_portal_shows_lan_bytes_and_the_group_saving(tmp_path: Path, page: Any) -> None:
    async with (
        open_test_origin(rate_per_ip=4 * MiB) as origin,
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=["--share-downloads"], hub_ttl=6) as swarm,
    ):
        origin.add_generated("f.bin", SIZE, seed=5)
        first, second = NodeApi(session, swarm.node(0)), NodeApi(session, swarm.node(1))
        await _done(first, origin.url("f.bin"), "one.bin")
        await _open_portal(first, page)  # its fleet page stays open while the second works
        await page.goto(f"{swarm.node(0).api_url}/portal/fleet")
        await expect(page.locator("tr.fleet-node")).to_have_count(2, timeout=20_000)
        saved_cells = {
            i: page.locator(f'tr[data-node="{swarm.node(i).node_id}"] .group-saved-today')
            for i in (0, 1)
        }
        for cell in saved_cells.values():  # the first took from the origin only
            await expect(cell).to_have_text("0 B")
        two = await _done(second, origin.url("f.bin"), "two.bin")
        got = two["progress"]["by_source"]
        assert got["lan"] > 0
        _, status = await second.call("GET", "/v1/status")
        _, served = await first.call("GET", "/v1/status")
        # no reload: the page's live update brings each node's figure (LAN served + received)
        for i, node_status in ((0, served), (1, status)):
            saved = human_bytes(node_status["traffic"]["group_saved_today"])
            await expect(saved_cells[i]).to_have_text(saved, timeout=10_000)
        assert status["traffic"]["group_saved_today"] == got["lan"]
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "portal-fleet-saved.png"), full_page=True)

        await _open_portal(second, page)
        saved = human_bytes(status["traffic"]["group_saved_today"])
        await expect(page.locator("#group-saved-today")).to_have_text(saved)
        await page.goto(f"{swarm.node(1).api_url}/portal/downloads/{two['id']}")
        facts = page.get_by_label("bytes by source")
        for kind in ("origin", "lan"):
            cell = facts.locator(f'dd[data-kind="{kind}"]')
            await expect(cell).to_have_attribute("data-bytes", str(got[kind]))
            await expect(cell).to_have_text(human_bytes(got[kind]))
        await expect(facts).to_contain_text("From LAN holders")
        sharing = page.locator("#sharing")
        await expect(sharing.locator("[data-check]")).to_have_attribute("data-check", "sampled")
        await expect(sharing).to_contain_text(f"{human_bytes(got['lan'])} from LAN holders")
        holder = page.locator("#sources tr", has_text=f"lan:{swarm.node(0).node_id}")
        await expect(holder).to_contain_text("LAN holder")  # its role in the sources table
        await page.screenshot(path=str(ARTIFACTS / "portal-sharing.png"), full_page=True)

        await _open_portal(first, page)
        saved = human_bytes(served["traffic"]["group_saved_today"])
        assert served["traffic"]["group_saved_today"] >= got["lan"]
        await expect(page.locator("#group-saved-today")).to_have_text(saved)
