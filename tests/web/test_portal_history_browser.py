"""History across a node restart, in Debian's chromium (issue #16: "The Playwright test grows
with it: ... history across a node restart"): a node downloads two files, one is paused; the
node stops and starts again on the same state directory; the portal still lists both rows
with their states, the state filter narrows the list, the paused row resumes in place (same
row, same id) and "Clear finished" empties the list of what ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmget.core.lifecycle import DownloadState
from swarmget.node.daemon import Node, NodeConfig
from swarmget.protocol.user import CreateDownload
from swarmget.run.node import open_node
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.web.portal import Portal

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("done.bin", 1 * MiB, seed=3)
        o.add_generated("paused.bin", 8 * MiB, seed=4)
        o.configure(rate_per_ip=2 * MiB)  # slow enough to pause paused.bin half-way
        yield o


async def _until(node: Node, download_id: str, *states: DownloadState) -> None:
    async with asyncio.timeout(30):
        while node.downloads.records[download_id].state not in states:
            await asyncio.sleep(0.05)


def _portal(node: Node) -> Portal:
    portal = node.portal
    assert isinstance(portal, Portal)
    return portal


async def test_history_outlives_a_restart_in_the_browser(
    tmp_path: Path, origin: TestOrigin, browser: Any
) -> None:
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    config = NodeConfig(secret=b"k" * 32, state_dir=state, download_dir=tmp_path / "d")
    async with open_node(config) as node:
        api = _portal(node).api
        done = api.manager.create(api.spec_from(CreateDownload(url=origin.url("done.bin"))))
        slow = api.manager.create(api.spec_from(CreateDownload(url=origin.url("paused.bin"))))
        await _until(node, done.id, DownloadState.DONE)
        await _until(node, slow.id, DownloadState.RUNNING)
        await asyncio.sleep(0.5)  # some bytes in
        node.downloads.pause(slow.id)
        await _until(node, slow.id, DownloadState.PAUSED)
    origin.configure(rate_per_ip=None)

    async with open_node(config) as node:  # the same state directory: a restart
        portal = _portal(node)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(portal.login_url())
        await expect(page.locator(f"#dl-{done.id}")).to_have_attribute("data-state", "done")
        await expect(page.locator(f"#dl-{slow.id}")).to_have_attribute("data-state", "paused")

        await page.select_option("#filter-state", "paused")
        await page.click("#filter-apply")
        await expect(page.locator(f"#dl-{slow.id}")).to_be_visible()
        await expect(page.locator(f"#dl-{done.id}")).to_have_count(0)

        await page.goto(portal.base_url + "/")
        async with page.expect_navigation():  # the form's POST, then its redirect
            await page.locator(f'#dl-{slow.id} button[data-action="resume"]').click()
        await _until(node, slow.id, DownloadState.DONE)
        record = node.downloads.records[slow.id]
        assert record.result is not None
        assert record.result.resumed_bytes > 0
        await page.goto(portal.base_url + "/")
        await expect(page.locator(f"#dl-{slow.id}")).to_have_attribute("data-state", "done")
        await expect(page.locator("tr.dl")).to_have_count(2)  # resumed in place: no new row

        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.click("#clear-finished")
        await expect(page.locator("tr.dl")).to_have_count(0)
        await context.close()
