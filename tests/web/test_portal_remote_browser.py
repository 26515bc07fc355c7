"""The portal from another machine, in Debian's chromium (issue #16, "Remote access"): a node
process serves the portal on an address of its own (127.0.0.5, standing for the LAN) with
``--portal-allowed-host swarm.test``; chromium maps ``swarm.test`` and ``evil.test`` to that
address (``--host-resolver-rules``). Under the allowed name the admin logs in, starts a
download, pauses and resumes it on its row and removes it with its file; under a name not
on the list the portal refuses to answer, and over HTTPS (a self-signed certificate, made
here with openssl) the session cookie is ``Secure``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import Proc, start_proc

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

ADDRESS = "127.0.0.5"
ENV = {**os.environ, "SWARMGET_SECRET": "r" * 32, "PYTHONUNBUFFERED": "1"}
MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
def chromium_args(chromium_args: list[str]) -> list[str]:
    # chromium resolves both names to the node's portal address
    return [
        *chromium_args,
        f"--host-resolver-rules=MAP swarm.test {ADDRESS}, MAP evil.test {ADDRESS}",
    ]


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("big.bin", 3 * MiB, seed=3)
        yield o


async def start_node(tmp_path: Path, *extra: str) -> Proc:
    args = [
        "node", "--listen", "127.0.0.1", "--port", "0", "--api-port", "0",
        "--state-dir", str(tmp_path / "state"), "--download-dir", str(tmp_path / "dl"),
        "--portal-listen", ADDRESS, "--portal-port", "0",
        "--portal-allowed-host", "swarm.test", *extra,
    ]  # fmt: skip
    return await start_proc(args, tmp_path / "node.log", ENV)


async def login_link(tmp_path: Path, base: str) -> str:
    """A one-time login link from `swarmget portal`, on the name the admin uses."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarmget.cli", "portal", "--state-dir", str(tmp_path / "state"),
        stdout=asyncio.subprocess.PIPE, env=ENV,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    token = out.decode().strip().rsplit("?token=", 1)[1]
    return f"{base}/portal/login?token={token}"


async def test_the_portal_through_an_allowed_host_name(
    tmp_path: Path, origin: TestOrigin, page: Page
) -> None:
    proc = await start_node(tmp_path)
    try:
        portal_url = str(proc.info["portal_url"])
        port = int(re.findall(r":(\d+)/portal/$", portal_url)[0])
        assert portal_url == f"http://{ADDRESS}:{port}/portal/"
        base = f"http://swarm.test:{port}"

        response = await page.goto(f"http://evil.test:{port}/portal/login")
        assert response is not None
        assert response.status == 403
        await expect(page.locator("body")).to_contain_text("not one of the portal's addresses")

        await page.goto(await login_link(tmp_path, base))
        await expect(page).to_have_url(f"{base}/portal/")
        origin.configure(rate_per_conn=256 * 1024)
        await page.fill("#url", origin.url("big.bin"))
        await page.click("#start")  # a POST: its Origin is http://swarm.test:PORT
        await expect(page).to_have_url(re.compile(rf"{re.escape(base)}/portal/downloads/\w+"))
        await expect(page.locator("#summary .badge")).to_have_text("running", timeout=15_000)

        await page.goto(f"{base}/portal/")
        row = page.locator("tr.dl")
        await expect(row).to_have_count(1)
        await row.locator('button[data-action="pause"]').click()
        await expect(row).to_have_attribute("data-state", "paused", timeout=15_000)
        await expect(row.locator('button[data-action="resume"]')).to_be_visible()
        await expect(row.locator('button[data-action="retry"]')).to_have_count(0)
        origin.configure(rate_per_conn=None)
        await row.locator('button[data-action="resume"]').click()
        await expect(row).to_have_attribute("data-state", "done", timeout=30_000)
        await expect(page.locator("tr.dl")).to_have_count(1)  # the same row, not a second
        saved = tmp_path / "dl" / "big.bin"
        assert saved.read_bytes() == origin.content("big.bin")

        async def accept(dialog: playwright_api.Dialog) -> None:
            await dialog.accept()  # "Remove … and DELETE its file?": yes

        page.on("dialog", accept)
        await row.locator('button[data-action="delete"]').click()
        await expect(page.locator("tr.empty")).to_be_visible()
        assert not saved.exists()
    finally:
        await proc.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_over_tls_the_session_cookie_is_secure(tmp_path: Path, page: Page) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=swarm.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    proc = await start_node(tmp_path, "--portal-tls-cert", str(cert), "--portal-tls-key", str(key))
    try:
        portal_url = str(proc.info["portal_url"])
        assert portal_url.startswith(f"https://{ADDRESS}:")
        port = int(re.findall(r":(\d+)/portal/$", portal_url)[0])
        base = f"https://swarm.test:{port}"
        await page.goto(await login_link(tmp_path, base))
        await expect(page).to_have_url(f"{base}/portal/")
        cookies = await page.context.cookies()
        assert [c["secure"] for c in cookies] == [True]
        assert [c["httpOnly"] for c in cookies] == [True]
    finally:
        await proc.stop()
