"""Live updates leave the user's page alone (issue #16, "Failure paths"), in Debian's chromium:
text selected in the downloads list stays selected while a download runs and the list is
updated, and an error's "details" toggle stays open. A node in-process, a slow origin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.node.daemon import Node, NodeConfig
from swarmget.protocol.user import CreateDownload
from swarmget.run.node import open_node
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.web.portal import Portal

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("slow.bin", 8 * MiB, seed=4)
        yield o


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


async def progressed(node: Node, download_id: str, by: int) -> None:
    """Wait until the download fetched ``by`` more bytes (the list changed meanwhile)."""
    record = node.downloads.records[download_id]
    start = (record.progress() or _Zero()).done
    async with asyncio.timeout(30):
        while ((record.progress() or _Zero()).done) < start + by:
            await asyncio.sleep(0.05)


class _Zero:
    done = 0


SELECT_URL = """id => {
    const el = document.querySelector(`#dl-${id} .url`);
    const range = document.createRange();
    range.selectNodeContents(el);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
}"""


def start(node: Node, url: str) -> str:
    portal = node.portal
    assert isinstance(portal, Portal)
    return portal.api.manager.create(portal.api.spec_from(CreateDownload(url=url))).id


async def test_updates_keep_the_selection_and_open_toggles(
    node: Node, origin: TestOrigin, page: Page
) -> None:
    assert isinstance(node.portal, Portal)
    failed = start(node, origin.url("missing.bin"))
    async with asyncio.timeout(20):
        while node.downloads.records[failed].state.active:
            await asyncio.sleep(0.05)
    origin.configure(rate_per_conn=64 * 1024)
    running = start(node, origin.url("slow.bin"))
    await page.goto(node.portal.login_url())
    await expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)

    toggle = page.locator(f"#dl-{failed} details.reason")
    await toggle.locator("summary").click()
    await expect(toggle).to_have_attribute("open", "")
    await progressed(node, running, 256 * 1024)
    await page.wait_for_function(  # the running row was updated meanwhile ...
        "id => document.querySelector(`#dl-${id} .pct`).textContent !== '…'", arg=running
    )
    await expect(toggle).to_have_attribute("open", "")  # ... and the toggle stayed open

    url = await page.locator(f"#dl-{running} .url").inner_text()
    await page.evaluate(SELECT_URL, running)
    shown = await page.locator(f"#dl-{running} .pct").inner_text()
    await progressed(node, running, 512 * 1024)  # several updates' worth
    await page.wait_for_timeout(1500)  # (one list update a second)
    assert await page.evaluate("() => window.getSelection().toString()") == url
    assert await page.locator(f"#dl-{running} .pct").inner_text() == shown  # it waited
    await page.evaluate("() => window.getSelection().removeAllRanges()")
    await expect(page.locator(f"#dl-{running} .pct")).not_to_have_text(shown, timeout=10_000)
    node.downloads.cancel(running)
