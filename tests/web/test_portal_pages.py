"""The portal over HTTP, on a real node (in-process) and a real origin: login, forms, errors,
cross-site refusals, live updates."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.node.daemon import Node, NodeConfig
from swarmget.node.download_record import describe
from swarmget.run.node import open_node  # the node with its portal
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 2 * MiB, seed=5)
        yield o


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


@dataclass
class Browser:
    """An aiohttp client that behaves like the portal's own pages (Origin, cookie, CSRF)."""

    session: aiohttp.ClientSession
    node: Node
    csrf: str = ""

    @property
    def base(self) -> str:
        return f"{self.node.api_url}/portal"

    async def login(self) -> None:
        assert self.node.portal is not None
        async with self.session.get(self.node.portal.login_url()) as resp:
            assert resp.status == 200
            assert str(resp.url) == f"{self.base}/"
            self.csrf = csrf_of(await resp.text())

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.session.get(self.base + path, allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text()

    async def post(self, path: str, data: dict[str, Any], **kw: Any) -> Posted:
        """POST a form as our own pages do (with Origin and the CSRF token)."""
        headers = {"Origin": self.node.api_url, **kw.pop("headers", {})}
        async with self.session.post(
            self.base + path,
            data={"csrf": self.csrf, **data},
            headers=headers,
            allow_redirects=False,
            **kw,
        ) as resp:
            return Posted(resp.status, resp.headers.get("Location", ""), await resp.text())


@dataclass(frozen=True)
class Posted:
    status: int
    location: str
    text: str


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found[1]


@pytest.fixture
async def browser(node: Node) -> AsyncIterator[Browser]:
    # aiohttp keeps cookies of IP-address hosts only when "unsafe"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        b = Browser(s, node)
        await b.login()
        yield b


async def wait_state(node: Node, download_id: str, *states: str) -> None:
    async with asyncio.timeout(20):
        while node.downloads.records[download_id].state not in states:
            await asyncio.sleep(0.05)


def created_id(posted: Posted) -> str:
    assert posted.status == 303, posted.text
    assert posted.location.startswith("/portal/downloads/")
    return posted.location.rsplit("/", 1)[1]


# --- login -------------------------------------------------------------------------------------


async def test_the_login_link_works_once_and_sets_a_strict_httponly_cookie(node: Node) -> None:
    assert node.portal is not None
    link = node.portal.login_url()
    assert link.startswith(f"{node.api_url}/portal/login?token=")
    assert node.api_token not in link  # the link is not the API token
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(link, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/portal/"
            cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/portal" in cookie
        assert node.api_token not in cookie
        async with s.get(link) as again:  # used up: the login page says so
            assert "used already" in await again.text()


async def test_without_a_session_pages_lead_to_the_login_page(node: Node) -> None:
    base = f"{node.api_url}/portal"
    async with aiohttp.ClientSession() as s:
        for path in ("/", "/peers", "/downloads/x", "/live/downloads"):
            async with s.get(base + path, allow_redirects=False) as resp:
                assert resp.status == 303, path
                assert resp.headers["Location"] == "/portal/login"
        headers = {"Origin": node.api_url}
        async with s.post(base + "/downloads", data={"url": "http://x/"}, headers=headers) as r:
            assert r.status == 403
        async with s.get(base + "/login") as resp:
            assert resp.status == 200
            assert 'name="token"' in await resp.text()
        # the bearer token opens the API, not the portal; the API still needs it
        bearer = {"Authorization": f"Bearer {node.api_token}"}
        async with s.get(base + "/", headers=bearer, allow_redirects=False) as resp:
            assert resp.status == 303
        async with s.get(f"{node.api_url}/v1/downloads") as resp:
            assert resp.status == 401
    assert node.downloads.records == {}


async def test_logging_in_with_the_api_token(node: Node) -> None:
    base = f"{node.api_url}/portal"
    headers = {"Origin": node.api_url}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(base + "/login", data={"token": "nope"}, headers=headers) as resp:
            assert resp.status == 401
            assert "That is not this node" in await resp.text()
        async with s.post(base + "/login", data={"token": node.api_token}, headers=headers) as r:
            assert r.status == 200
            assert str(r.url) == f"{base}/"
        async with s.get(base + "/peers") as resp:
            assert resp.status == 200


async def test_logout_ends_the_session(browser: Browser) -> None:
    posted = await browser.post("/logout", {})
    assert posted.status == 303
    status, _ = await browser.get("/")
    assert status == 303


async def test_pages_forbid_framing_and_foreign_scripts(browser: Browser) -> None:
    async with browser.session.get(browser.base + "/") as resp:
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
    async with browser.session.get(browser.base + "/static/portal.js") as resp:
        assert resp.status == 200
        assert "EventSource" in await resp.text()


# --- the form ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"url": "ftp://example.org/f"}, "url", "not an http(s) URL"),
        ({"url": "not a url"}, "url", "whitespace"),
        ({"url": ""}, "url", "empty URL"),
        ({"url": "http://127.0.0.1:1/f", "output": "../escape.bin"}, "output", "outside"),
        ({"url": "http://127.0.0.1:1/f", "output": "/etc/passwd"}, "output", "outside"),
        ({"url": "http://127.0.0.1:1/f", "output": "a/../../x"}, "output", "outside"),
        ({"url": "http://127.0.0.1:1/f", "checksum": "sha256:zz"}, "checksum", "hexadecimal"),
        ({"url": "http://127.0.0.1:1/f", "helpers": "bad id!"}, "helpers", "not a node id"),
    ],
)
async def test_bad_input_is_shown_next_to_its_field(
    browser: Browser, fields: dict[str, str], field: str, message: str
) -> None:
    posted = await browser.post("/downloads", fields)
    assert posted.status == 400
    found = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', posted.text)
    assert found is not None, posted.text
    assert message in found[1]
    if field != "url":
        assert f'value="{fields["url"]}"' in posted.text  # what was typed is kept
    assert browser.node.downloads.records == {}


async def test_an_existing_file_needs_overwrite(browser: Browser, origin: TestOrigin) -> None:
    (browser.node.download_dir / "have.bin").write_bytes(b"x")
    fields = {"url": origin.url("f.bin"), "output": "have.bin"}
    posted = await browser.post("/downloads", fields)
    assert posted.status == 400
    assert "exists" in posted.text
    download_id = created_id(await browser.post("/downloads", {**fields, "force": "on"}))
    await wait_state(browser.node, download_id, "done")


async def test_a_fifo_as_output_is_refused_on_its_field(
    browser: Browser, origin: TestOrigin
) -> None:
    """The form follows the rules every download follows (destination.py): a FIFO is never
    replaced, not even with "overwrite" (the form used to see only regular files)."""
    os.mkfifo(browser.node.download_dir / "odd.bin")
    fields = {"url": origin.url("f.bin"), "output": "odd.bin"}
    for extra in ({}, {"force": "on"}):
        posted = await browser.post("/downloads", {**fields, **extra})
        assert posted.status == 400
        found = re.search(r'<p class="error" id="output-error">([^<]*)</p>', posted.text)
        assert found is not None, posted.text
    assert browser.node.downloads.records == {}


async def test_start_a_download_and_follow_it_live(browser: Browser, origin: TestOrigin) -> None:
    checksum = f"sha256:{origin.expected_sha256('f.bin')}"
    fields = {"url": origin.url("f.bin"), "output": "sub/f.bin", "checksum": checksum}
    download_id = created_id(await browser.post("/downloads", fields))
    parts: list[tuple[str, dict[str, str]]] = []
    async with browser.session.get(f"{browser.base}/live/downloads/{download_id}") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        kind = ""
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                parts.append((kind, json.loads(line.removeprefix("data: "))))
    kind, final = parts[-1]
    assert kind == "end"
    assert set(final) == {"summary", "verification", "piecemap", "chart", "sources", "timeline"}
    assert "100%" in final["summary"]
    assert "Verified: sha256" in final["verification"]
    assert f'data-source="{browser.node.node_id}"' in final["piecemap"]
    assert (browser.node.download_dir / "sub" / "f.bin").stat().st_size == 2 * MiB
    status, html = await browser.get(f"/downloads/{download_id}")
    assert status == 200
    assert "Verified: sha256" in html
    status, listing = await browser.get("/")
    assert f'id="dl-{download_id}" data-state="done"' in listing


async def test_the_same_download_asked_again_opens_the_running_one(
    browser: Browser, origin: TestOrigin
) -> None:
    """The form sent twice (a double click, a second tab) is one download: the second
    leads to the first's page; another request into the same file is shown as an error."""
    origin.configure(rate_per_conn=256 * 1024)
    fields = {"url": origin.url("f.bin"), "output": "twice.bin"}
    first = created_id(await browser.post("/downloads", fields))
    again = created_id(await browser.post("/downloads", fields))
    assert again == first
    checksum = f"sha256:{origin.expected_sha256('f.bin')}"
    posted = await browser.post("/downloads", {**fields, "checksum": checksum})
    assert posted.status == 400
    assert f"swarmget cancel {first}" in posted.text
    assert list(browser.node.downloads.records) == [first]
    origin.configure(rate_per_conn=None)
    await wait_state(browser.node, first, "done")


async def test_a_failing_download_is_shown_failed_with_its_reason(
    browser: Browser, origin: TestOrigin
) -> None:
    download_id = created_id(await browser.post("/downloads", {"url": origin.url("nope.bin")}))
    await wait_state(browser.node, download_id, "failed")
    _, listing = await browser.get("/")
    row = listing[listing.index(f'id="dl-{download_id}"') :].split("</tr>", 1)[0]
    assert 'data-state="failed"' in row
    # one plain line on the row; the server's own words behind a toggle
    reason = re.search(
        r'<details class="reason" data-code="origin_unusable"><summary class="error">'
        r'([^<]*)</summary>.*?<pre class="raw">([^<]*)</pre></details>',
        row,
        re.S,
    )
    assert reason is not None
    assert reason[1] == "The server refused the file (for example 404: not found)."
    assert "404" in reason[2]
    assert "Retry" in row
    _, details = await browser.get(f"/downloads/{download_id}")
    summary = details[details.index('id="summary"') : details.index('id="verification"')]
    assert "The server refused the file" in summary  # with the error, not as a verdict
    assert "Technical details" in summary
    verification = details[details.index('id="verification"') :].split("</section>", 1)[0]
    assert "Not verified: the download failed" in verification
    assert "404" not in verification


async def test_cancel_then_retry(browser: Browser, origin: TestOrigin) -> None:
    origin.configure(rate_per_conn=128 * 1024)
    download_id = created_id(await browser.post("/downloads", {"url": origin.url("f.bin")}))
    await wait_state(browser.node, download_id, "running")
    assert (await browser.post(f"/downloads/{download_id}/retry", {})).status == 409
    referer = f"{browser.base}/downloads/{download_id}"
    posted = await browser.post(
        f"/downloads/{download_id}/cancel", {}, headers={"Referer": referer}
    )
    assert posted.status == 303
    assert posted.location == f"/portal/downloads/{download_id}"
    await wait_state(browser.node, download_id, "cancelled")
    _, details = await browser.get(f"/downloads/{download_id}")
    assert "Cancelled" in details
    origin.configure(rate_per_conn=None)
    posted = await browser.post(f"/downloads/{download_id}/retry", {})
    assert posted.status == 303
    assert posted.location == "/portal/"  # the same download, the same row: no second one
    assert list(browser.node.downloads.records) == [download_id]
    await wait_state(browser.node, download_id, "done")
    stale = await browser.post(f"/downloads/{download_id}/retry", {})  # a button left over
    assert stale.status == 409
    assert "reload the page" in stale.text


async def test_peers_page_without_a_hub(browser: Browser) -> None:
    status, html = await browser.get("/peers")
    assert status == 200
    assert f'data-node="{browser.node.node_id}"' in html
    assert "this node" in html


# --- cross-site requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "with_csrf", "why"),
    [
        ({"Origin": "http://evil.example"}, True, "cross-site"),
        ({"Origin": "null"}, True, "cross-site"),
        ({"Origin": ""}, True, "cross-site"),
        ({"Origin": None, "Referer": "http://evil.example/page"}, True, "cross-site"),
        ({}, False, "CSRF"),
        ({"csrf": "wrong"}, False, "CSRF"),
        ({"Host": "evil.example:{port}"}, True, "addresses"),
    ],
)
async def test_cross_site_posts_are_refused(
    browser: Browser, origin: TestOrigin, headers: dict[str, Any], with_csrf: bool, why: str
) -> None:
    port = browser.node.api_url.rsplit(":", 1)[1]
    data: dict[str, str] = {"url": origin.url("f.bin")}
    if "csrf" in headers:
        data["csrf"] = headers.pop("csrf")
    sent = {"Origin": browser.node.api_url}
    for name, value in headers.items():
        if value is None:
            sent.pop(name)
        else:
            sent[name] = value.format(port=port)
    form = {"csrf": browser.csrf, **data} if with_csrf else data
    async with browser.session.post(
        browser.base + "/downloads", data=form, headers=sent, allow_redirects=False
    ) as resp:
        assert resp.status == 403
        assert why in await resp.text()
    assert browser.node.downloads.records == {}


async def test_no_origin_and_no_referer_is_refused_but_our_referer_is_enough(
    browser: Browser, origin: TestOrigin
) -> None:
    form = {"csrf": browser.csrf, "url": origin.url("f.bin")}
    url = browser.base + "/downloads"
    async with browser.session.post(url, data=form, allow_redirects=False) as resp:
        assert resp.status == 403
    referer = {"Referer": f"{browser.base}/"}
    async with browser.session.post(url, data=form, headers=referer, allow_redirects=False) as r:
        assert r.status == 303


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.2:{port}"])
async def test_a_foreign_host_header_is_refused_even_for_reading(
    browser: Browser, host: str
) -> None:
    port = browser.node.api_url.rsplit(":", 1)[1]
    status, text = await browser.get("/", headers={"Host": host.format(port=port)})
    assert status == 403
    assert "addresses" in text
    status, _ = await browser.get("/", headers={"Host": f"localhost:{port}"})
    assert status == 200


# --- history: pause and resume, filters, remove, clear (issue #16) -----------------------------


def row_html(html: str, download_id: str) -> str:
    found = re.search(rf'<tr class="dl" id="dl-{download_id}".*?</tr>', html, re.S)
    assert found is not None, html
    return found[0]


async def test_pause_and_resume_are_one_toggle_on_one_row(
    browser: Browser, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=128 * 1024)
    download_id = created_id(await browser.post("/downloads", {"url": origin.url("f.bin")}))
    await wait_state(browser.node, download_id, "running")
    record = browser.node.downloads.records[download_id]
    async with asyncio.timeout(20):
        while (progress := record.progress()) is None or progress.done < 256 * 1024:
            await asyncio.sleep(0.05)
    _, html = await browser.get("/")
    assert 'data-action="pause"' in row_html(html, download_id)
    assert 'data-action="resume"' not in row_html(html, download_id)
    assert (await browser.post(f"/downloads/{download_id}/pause", {})).status == 303
    await wait_state(browser.node, download_id, "paused")
    _, html = await browser.get("/")
    row = row_html(html, download_id)
    assert 'data-action="resume"' in row
    assert 'data-action="pause"' not in row
    assert 'data-action="retry"' not in row
    origin.configure(rate_per_conn=None)
    assert (await browser.post(f"/downloads/{download_id}/resume", {})).status == 303
    await wait_state(browser.node, download_id, "done")
    assert list(browser.node.downloads.records) == [download_id]
    assert record.result is not None
    assert record.result.resumed_bytes > 0  # it went on from the bytes kept
    assert (await browser.post(f"/downloads/{download_id}/resume", {})).status == 409


async def test_filters_remove_and_clear_finished(browser: Browser, origin: TestOrigin) -> None:
    done = created_id(await browser.post("/downloads", {"url": origin.url("f.bin")}))
    await wait_state(browser.node, done, "done")
    failed = created_id(
        await browser.post("/downloads", {"url": origin.url("nothing.bin"), "output": "x.bin"})
    )
    await wait_state(browser.node, failed, "failed")
    _, html = await browser.get("/?state=done")
    assert f"dl-{done}" in html
    assert f"dl-{failed}" not in html
    _, html = await browser.get("/?q=NOTHING")
    assert f"dl-{failed}" in html
    assert f"dl-{done}" not in html
    assert 'data-live="/portal/live/downloads?q=NOTHING"' in html
    _, html = await browser.get("/?since=2999-01-01")
    assert "No download matches these filters" in html
    _, html = await browser.get("/?until=2000-01-01")
    assert "dl-" not in html
    status, html = await browser.get("/?since=yesterday")
    assert status == 200
    assert "cannot be read" in html

    path = browser.node.download_dir / "f.bin"
    assert path.exists()
    posted = await browser.post(f"/downloads/{done}/remove", {"delete_file": "on"})
    assert posted.status == 303
    assert not path.exists()
    assert done not in browser.node.downloads.records
    assert (await browser.post("/downloads/clear-finished", {})).status == 303
    assert browser.node.downloads.records == {}


async def test_the_details_page_charts_the_rate_over_time(
    browser: Browser, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=256 * 1024)  # a few seconds: a few samples
    download_id = created_id(await browser.post("/downloads", {"url": origin.url("f.bin")}))
    await wait_state(browser.node, download_id, "done")
    _, details = await browser.get(f"/downloads/{download_id}")
    chart = details[details.index('id="chart"') :].split("</section>", 1)[0]
    assert '<svg viewBox="0 0 600 120"' in chart
    assert '<polygon class="area c0"' in chart
    assert 'role="img" aria-label="rate over' in chart
    record = browser.node.downloads.records[download_id]
    assert "rates" not in describe(record, events=0)  # the list stays small
    assert len(describe(record)["rates"]) >= 2


async def test_the_details_page_says_the_download_ran_without_its_hub(
    tmp_path: Path, origin: TestOrigin
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: the hub is gone
        s.bind(("127.0.0.1", 0))
        hub_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = NodeConfig(
        secret=b"k" * 32,
        state_dir=tmp_path / "s",
        download_dir=tmp_path / "d",
        hub_urls=(hub_url,),
    )
    async with (
        open_node(config) as node,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
    ):
        browser = Browser(session, node)
        await browser.login()
        download_id = created_id(await browser.post("/downloads", {"url": origin.url("f.bin")}))
        await wait_state(node, download_id, "done")
        _, details = await browser.get(f"/downloads/{download_id}")
    summary = details[details.index('id="summary"') :].split("</section>", 1)[0]
    lines = re.findall(r'<p class="small hub warn" data-hub="unavailable">([^<]*)</p>', summary)
    assert lines == [f"hub {hub_url} unreachable: downloaded without helpers"]
