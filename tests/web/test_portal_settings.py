"""The portal's settings form and fleet page over HTTP (issue #16): a POST without the
session's CSRF token changes nothing (403); a bad value is refused next to its field (400,
``aria-invalid``, the message linked by ``aria-describedby``); a good one is applied at once
and only the fields changed become "set here"; without a hub the fleet page shows this node
and says why there is no more."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.node.daemon import Node, NodeConfig
from swarmget.run.node import open_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(
        secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d", slots=3
    )
    async with open_node(config) as n:
        yield n


@pytest.fixture
async def session(node: Node) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        assert node.portal is not None
        async with s.get(node.portal.login_url()) as resp:
            assert resp.status == 200
        yield s


async def settings_form(session: aiohttp.ClientSession, node: Node) -> tuple[str, str]:
    async with session.get(f"{node.api_url}/portal/settings") as resp:
        assert resp.status == 200
        html = await resp.text()
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found[1], html


async def post(
    session: aiohttp.ClientSession, node: Node, form: dict[str, str]
) -> tuple[int, str, str]:
    async with session.post(
        f"{node.api_url}/portal/settings",
        data=form,
        headers={"Origin": node.api_url},
        allow_redirects=False,
    ) as resp:
        return resp.status, resp.headers.get("Location", ""), await resp.text()


async def test_a_post_without_the_csrf_token_changes_nothing(
    node: Node, session: aiohttp.ClientSession
) -> None:
    status, _, text = await post(session, node, {"slots": "9", "rate_limit": "", "daily_quota": ""})
    assert status == 403
    assert "CSRF" in text
    assert node.helper.limits.slots == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slots", "0", "a whole number from 1"),
        ("slots", "lots", "a whole number from 1"),
        ("rate_limit", "fast", "not a size"),
        ("rate_limit", "10", "at least 1.0 KiB"),
        ("daily_quota", "-5M", "not a size"),
    ],
)
async def test_a_bad_value_is_shown_on_its_field(
    node: Node, session: aiohttp.ClientSession, field: str, value: str, message: str
) -> None:
    csrf, _ = await settings_form(session, node)
    form = {"csrf": csrf, "slots": "3", "rate_limit": "", "daily_quota": "", field: value}
    status, _, html = await post(session, node, form)
    assert status == 400
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', html, re.S)
    assert f'aria-describedby="{field}-source {field}-error"' in html
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    assert error is not None
    assert message in error[1]
    assert node.helper.limits.slots == 3


async def test_a_good_form_applies_at_once_and_marks_only_what_changed(
    node: Node, session: aiohttp.ClientSession
) -> None:
    csrf, _ = await settings_form(session, node)
    form = {"csrf": csrf, "slots": "3", "rate_limit": "", "daily_quota": "2G"}
    status, location, _ = await post(session, node, form)
    assert (status, location) == (303, "/portal/settings?saved=1")
    assert node.helper.quota is not None
    assert node.helper.quota.limit == 2 * 1024**3
    _, html = await settings_form(session, node)
    assert 'id="daily_quota-source" data-source="runtime"' in html
    assert 'id="slots-source" data-source="config"' in html
    async with session.get(f"{node.api_url}{location}") as resp:
        assert 'id="saved" role="status"' in await resp.text()


async def test_the_fleet_page_without_a_hub(node: Node, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{node.api_url}/portal/fleet") as resp:
        assert resp.status == 200
        html = await resp.text()
    assert f'data-node="{node.node_id}"' in html
    assert "this node uses no hub" in html
