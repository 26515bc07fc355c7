"""The portal in a real browser: Debian's chromium, driven by Playwright, against a swarm.

A hub and 3 node processes on 127.0.0.x and a test origin capped per client IP (so the
download takes a few seconds and the helpers matter). The browser logs in to node 0's portal
with a login link from `swarmget portal`, waits on the peers page for the other two nodes,
starts a download with the form, kills one helper on the way, watches the download reach 100%
and verify, and checks that the piece map names more than one source and marks what was
fetched again. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import open_local_swarm

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

MiB = 1024 * 1024
CAP = 3 * MiB  # bytes/s per client IP: alone ~8 s, with the 2 helpers ~3 s
SIZE = 24 * MiB + 5
PERCENT_AT_LEAST = "n => parseFloat(document.querySelector('#summary .pct').textContent) >= n"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=CAP) as o:
        o.add_generated("disk.img", SIZE, seed=11)
        yield o


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def test_start_and_watch_a_swarm_download(
    origin: TestOrigin, page: Page, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path, 3, node_extra=["--stall-timeout", "2"]) as swarm:
        node = swarm.node(0)
        assert node.proc.info["portal_url"] == f"{node.api_url}/portal/"  # no secret in it
        portal = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swarmget.cli", "portal", "--state-dir", str(node.state_dir),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(portal.communicate(), 60)
        login_url = out.decode().strip()
        assert login_url.startswith(f"{node.api_url}/portal/login?token=")

        await page.goto(login_url)
        await expect(page).to_have_url(f"{node.api_url}/portal/")

        # the peers page lists the two other nodes once they are registered
        await page.get_by_role("link", name="Peers").click()
        await expect(page.locator("tr.self")).to_have_count(1)
        await expect(page.locator("tr.peer")).to_have_count(2, timeout=20_000)
        await expect(page.locator("tr.peer").first).to_contain_text("ago")
        await screenshot(page, "portal-peers.png")

        await page.get_by_role("link", name="Downloads").click()
        await page.fill("#url", origin.url("disk.img"))
        await page.fill("#output", "images/disk.img")
        await page.fill("#checksum", f"sha256:{origin.expected_sha256('disk.img')}")
        await page.click("#start")
        await expect(page).to_have_url(
            re.compile(rf"{re.escape(node.api_url)}/portal/downloads/\w+")
        )

        # streams in flight on the piece map; then a helper dies: what it had not written
        # yet is fetched again by the others, and the map marks it
        await expect(page.locator(".piecemap .blk.flight").first).to_be_attached(timeout=15_000)
        await page.wait_for_function(PERCENT_AT_LEAST, arg=30, timeout=15_000)
        await screenshot(page, "portal-details-running.png")
        victim = swarm.node(2)
        victim.proc.signal(signal.SIGKILL)

        await expect(page.locator("#summary .pct")).to_have_text("100%", timeout=30_000)
        await expect(page.locator("#verification .verdict")).to_contain_text(
            "Verified: sha256", timeout=10_000
        )
        await expect(page.locator("#live")).to_have_attribute("data-state", "done")
        legend = page.locator("#piecemap .legend li.src")
        assert await legend.count() > 1, await page.locator("#piecemap").inner_text()
        names = {await li.get_attribute("data-source") for li in await legend.all()}
        assert names <= {n.node_id for n in swarm.nodes}
        assert await page.locator("#sources tr.source").count() == 3
        await expect(page.locator("#timeline .ev-assign").first).to_be_attached()
        await expect(page.locator("#timeline .ev-reassign").first).to_be_attached()
        assert await page.locator("#piecemap .refetch-track .refetched").count() >= 1
        shot = await screenshot(page, "portal-details.png")
        assert shot.stat().st_size > 10_000

        saved = node.download_dir / "images" / "disk.img"
        assert saved.stat().st_size == SIZE

        await page.get_by_role("link", name="← Downloads").click()
        row = page.locator("tr.dl").first
        await expect(row).to_have_attribute("data-state", "done")
        await expect(row.locator(".pct")).to_have_text("100%")
        await screenshot(page, "portal-downloads.png")
