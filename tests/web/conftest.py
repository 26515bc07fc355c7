"""Debian's chromium for the portal's browser tests, launched once per test by Playwright.

``browser`` is a launched chromium (a module may widen its command line by overriding
``chromium_args``); ``page`` is a fresh 1280x900 page in a new context of it that accepts
the tests' self-signed certificates. Without chromium the browser tests are skipped, except
in CI, which installs it (there a missing browser must fail, not skip).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


@pytest.fixture
def chromium_args() -> list[str]:
    return list(CHROMIUM_ARGS)


@pytest.fixture
async def browser(chromium_args: list[str]) -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, ignore_https_errors=True
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()
