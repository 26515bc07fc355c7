"""How the portal looks and speaks (issue #16), in Debian's chromium: a narrow phone-sized
viewport scrolls only downwards, dark mode follows the system, progress bars are
``role=progressbar`` with their value, and a state change is read out by a live region.
Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarmget.node.daemon import Node, NodeConfig
from swarmget.protocol.user import CreateDownload
from swarmget.run.node import open_node
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.web.portal import Portal

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MiB = 1024 * 1024
pytestmark = pytest.mark.slow
PHONE = 375  # CSS pixels
# (a mobile browser widens its layout viewport to fit a page that is too wide: compare with
# the phone's own width, not with innerWidth)
NO_SIDEWAYS_SCROLL = f"() => document.documentElement.scrollWidth <= {PHONE}"
BACKGROUND = "() => getComputedStyle(document.body).backgroundColor"


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("small-file-with-a-rather-long-name-for-a-phone.bin", 64 * 1024, seed=1)
        o.add_generated("slow.bin", 8 * MiB, seed=2)
        yield o


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


def start(node: Node, url: str) -> str:
    portal = node.portal
    assert isinstance(portal, Portal)
    return portal.api.manager.create(portal.api.spec_from(CreateDownload(url=url))).id


async def until(node: Node, download_id: str, state: str) -> None:
    async with asyncio.timeout(20):
        while node.downloads.records[download_id].state != state:
            await asyncio.sleep(0.05)


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


async def test_phone_dark_mode_progress_bars_and_a_live_region(
    node: Node, origin: TestOrigin, browser: Any
) -> None:
    assert isinstance(node.portal, Portal)
    done = start(node, origin.url("small-file-with-a-rather-long-name-for-a-phone.bin"))
    await until(node, done, "done")
    origin.configure(rate_per_conn=64 * 1024)
    running = start(node, origin.url("slow.bin"))
    await until(node, running, "running")

    phone = await browser.new_context(
        viewport={"width": PHONE, "height": 800}, is_mobile=True, color_scheme="light"
    )
    page = await phone.new_page()
    await page.goto(node.portal.login_url())
    await expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    bars = page.get_by_role("progressbar")
    await expect(bars).to_have_count(2)
    await expect(page.locator(f"#dl-{done} [role=progressbar]")).to_have_attribute(
        "aria-valuenow", "100"
    )
    light = await page.evaluate(BACKGROUND)
    await shot(page, "portal-phone.png")
    await page.goto(f"{node.portal.base_url}/downloads/{running}")
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    await phone.close()

    dark = await browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = await dark.new_page()
    await page.goto(node.portal.login_url())
    await expect(page.locator("#live")).to_have_attribute("data-state", "on", timeout=10_000)
    background = await page.evaluate(BACKGROUND)
    assert background != light
    red, green, blue = (int(x) for x in background[4:-1].split(","))
    assert red + green + blue < 3 * 64  # dark
    await shot(page, "portal-dark.png")

    node.downloads.pause(running)  # changed elsewhere (the CLI): the page says so
    await expect(page.locator("#announce")).to_have_text("slow.bin: paused", timeout=10_000)
    await dark.close()
