"""The settings form and the fleet page in Debian's chromium (issue #16): on a real hub and
real node processes, the admin changes a node's slots and pauses helping in the form (a bad
value is refused next to its field, the good ones are saved and shown as set here, and the
fleet page shows the change); the fleet page lists the three nodes (screenshots in
test-artifacts/portal-settings.png, portal-fleet.png); neither page scrolls sideways on a phone."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.swarm import NodeApi, open_local_swarm

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

PHONE = 375  # CSS pixels
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.slow


async def test_settings_form_and_fleet_page(tmp_path: Path, page: Page) -> None:
    extra = {0: ["--slots", "2"], 1: ["--slots", "4", "--rate-limit", "3M"], 2: ["--slots", "5"]}
    async with (
        open_local_swarm(tmp_path, 3, node_extra=extra, hub_ttl=60) as swarm,
        aiohttp.ClientSession() as session,
    ):
        api = NodeApi(session, swarm.node(0))
        _, link = await api.call("POST", "/v1/portal-link")
        await page.goto(link["url"])
        base = f"{swarm.node(0).api_url}/portal"

        await page.goto(f"{base}/settings")
        await expect(page.locator("#slots")).to_have_value("2")
        await expect(page.locator("#slots-source")).to_have_attribute("data-source", "config")
        await page.fill("#slots", "zero")
        await page.click("#save")
        await expect(page.locator("#slots")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#slots-error")).to_contain_text("a whole number from 1")
        await page.fill("#slots", "6")
        await page.fill("#rate_limit", "2M")
        await page.check("#helping_paused")
        await page.click("#save")
        await expect(page.locator("#saved")).to_be_visible()
        await expect(page.locator("#slots")).to_have_value("6")
        await expect(page.locator("#slots-source")).to_have_attribute("data-source", "runtime")
        await expect(page.locator("#daily_quota-source")).to_have_attribute("data-source", "config")
        await expect(page.locator("#helping_paused")).to_be_checked()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "portal-settings.png"), full_page=True)
        _, view = await api.call("GET", "/v1/settings")
        assert view["slots"] == {"value": 6, "source": "runtime"}
        assert view["rate_limit"] == {"value": 2 * 1024 * 1024, "source": "runtime"}
        assert view["helping_paused"] == {"value": True, "source": "runtime"}

        await page.goto(f"{base}/fleet")
        fleet = page.locator("tr.fleet-node")
        await expect(fleet).to_have_count(3, timeout=20_000)
        own = page.locator(f'tr[data-node="{swarm.node(0).node_id}"]')
        await expect(own.locator(".health")).to_have_text("helping paused")
        await expect(own.locator(".streams")).to_have_text("0 / 6")
        await expect(own.locator(".rate-limit")).to_have_text("2.0 MiB/s")
        other = page.locator(f'tr[data-node="{swarm.node(1).node_id}"]')
        await expect(other.locator(".streams")).to_have_text("0 / 4")
        await expect(other.locator(".rate-limit")).to_have_text("3.0 MiB/s")
        await expect(other.locator(".group-saved-today")).to_have_text("0 B")  # no LAN bytes
        await page.screenshot(path=str(ARTIFACTS / "portal-fleet.png"), full_page=True)

        await page.goto(f"{base}/settings")
        await page.click("#reset")
        await expect(page.locator("#slots")).to_have_value("2")
        await expect(page.locator("#slots-source")).to_have_attribute("data-source", "config")

        await page.set_viewport_size({"width": PHONE, "height": 800})  # a phone: no sideways page
        for path in ("/settings", "/fleet"):
            await page.goto(base + path)
            assert await page.evaluate(f"() => document.documentElement.scrollWidth <= {PHONE}")
