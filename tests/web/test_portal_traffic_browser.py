"""The overview's bytes-per-day chart and savings (issue #16) in Debian's chromium: the SVG
is drawn (an image with a name and a description), today's bar grows with a real download,
earlier days come from the history database, the last download's estimate is said on the
overview and its details page, and a phone need not scroll sideways. Screenshots go to
``test-artifacts/``."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmget.node.daemon import Node, NodeConfig
from swarmget.node.history import DayBytes, DownloadHistory
from swarmget.protocol.user import CreateDownload
from swarmget.run.node import open_node
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.web.portal import Portal

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MiB = 1024 * 1024
PHONE = 375
pytestmark = pytest.mark.slow


def days_ago(n: int) -> str:
    """A day as the node counts it: UTC, the daily quota's day."""
    today = datetime.datetime.now(datetime.UTC).date()
    return (today - datetime.timedelta(days=n)).isoformat()


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("one.bin", 3 * MiB, seed=7)
        yield o


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    history = DownloadHistory(state)  # earlier days, as an earlier run of the node left them
    history.add_bytes([
        DayBytes(day=days_ago(3), origin=20 * MiB, peer=60 * MiB, served=10 * MiB),
        DayBytes(day=days_ago(1), origin=5 * MiB, peer=0, served=40 * MiB),
    ])  # fmt: skip
    history.close()
    config = NodeConfig(secret=b"k" * 32, state_dir=state, download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


async def test_overview_chart_and_savings(node: Node, origin: TestOrigin, browser: Any) -> None:
    portal = node.portal
    assert isinstance(portal, Portal)
    download = portal.api.manager.create(
        portal.api.spec_from(CreateDownload(url=origin.url("one.bin")))
    )
    async with asyncio.timeout(20):
        while node.downloads.records[download.id].state != "done":
            await asyncio.sleep(0.05)

    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    await page.goto(portal.login_url())
    chart = page.get_by_role("img", name="Bytes per day, the last 14 days")
    await expect(chart).to_be_visible()
    await expect(page.locator("#traffic-desc")).to_contain_text("60.0 MiB from peers")
    today = page.locator(f'g[data-day="{days_ago(0)}"] rect[data-kind="origin"]')
    assert int(await today.get_attribute("data-value") or 0) >= 3 * MiB  # not flushed yet
    assert float(await today.get_attribute("height") or 0) > 0
    earlier = page.locator(f'g[data-day="{days_ago(3)}"] rect[data-kind="peer"]')
    assert float(await earlier.get_attribute("height") or 0) > 0
    await expect(page.locator("#saved-total")).to_have_text("60.0 MiB")
    await expect(page.locator("#saved-today")).to_have_text("0 B")
    await expect(page.locator("#last-speedup")).to_contain_text("faster than alone")
    await expect(page.locator("#traffic-table tbody tr")).to_have_count(14)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.locator("#traffic").screenshot(path=str(ARTIFACTS / "portal-traffic-chart.png"))
    await page.screenshot(path=str(ARTIFACTS / "portal-overview-traffic.png"), full_page=True)

    await page.goto(f"{portal.base_url}/downloads/{download.id}")
    await expect(page.locator("#speedup")).to_contain_text("estimate")
    await expect(page.locator("#saved")).to_have_text("0 B from peers")
    await context.close()

    phone = await browser.new_context(viewport={"width": PHONE, "height": 800}, is_mobile=True)
    page = await phone.new_page()
    await page.goto(portal.login_url())
    await expect(page.get_by_role("img", name="Bytes per day, the last 14 days")).to_be_visible()
    assert await page.evaluate(f"() => document.documentElement.scrollWidth <= {PHONE}")
    await page.screenshot(path=str(ARTIFACTS / "portal-phone-traffic.png"), full_page=True)
    await phone.close()
