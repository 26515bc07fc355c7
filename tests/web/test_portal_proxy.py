"""The portal behind a reverse proxy (``web.remote``): ``X-Forwarded-Host``/``-Proto`` are
believed from the configured proxies only, the forwarded name must still be allowed, the
portal's own listener serves no user API route, and bad settings are refused up front."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.addresses import parse_cidrs
from swarmget.core.errors import UsageError
from swarmget.node.daemon import Node, NodeConfig
from swarmget.run.node import open_node
from swarmget.web.remote import PortalAccess

ADDRESS = "127.0.0.5"
OpenNode = Callable[[str], AbstractAsyncContextManager[Node]]


@pytest.fixture
def node_with(tmp_path: Path) -> OpenNode:
    def opening(proxies: str) -> AbstractAsyncContextManager[Node]:
        config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
        access = PortalAccess(
            listen_host=ADDRESS,
            listen_port=0,
            allowed_hosts=("swarm.test",),
            trusted_proxies=parse_cidrs(proxies),
        )
        return open_node(config, access)

    return opening


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def status_of(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], **kw: Any
) -> tuple[int, aiohttp.typedefs.LooseHeaders]:
    method = "POST" if "data" in kw else "GET"
    async with session.request(method, url, headers=headers, allow_redirects=False, **kw) as r:
        return r.status, r.headers


async def test_a_trusted_proxy_forwards_an_allowed_name(
    node_with: OpenNode, session: aiohttp.ClientSession
) -> None:
    async with node_with("127.0.0.1/32") as node:  # our client connects from 127.0.0.1
        assert node.remote_portal_url is not None
        login = f"{node.remote_portal_url}login"
        own = {"Host": node.remote_portal_url.split("/")[2]}
        assert (await status_of(session, login, own))[0] == 200
        assert (await status_of(session, login, {**own, "X-Forwarded-Host": "swarm.test"}))[
            0
        ] == 200
        refused = {**own, "X-Forwarded-Host": "evil.test"}
        assert (await status_of(session, login, refused))[0] == 403

        # logging in through the proxy over https: the cookie is Secure
        form = {"token": node.api_token}
        headers = {
            **own,
            "X-Forwarded-Host": "swarm.test",
            "X-Forwarded-Proto": "https",
            "Origin": "https://swarm.test",
        }
        status, answer = await status_of(session, login, headers, data=form)
        assert status == 303
        assert "Secure" in str(answer.get("Set-Cookie"))

        # the portal's own listener serves the portal only
        api_route = node.remote_portal_url.replace("/portal/", "/v1/status")
        bearer = {**own, "Authorization": f"Bearer {node.api_token}"}
        assert (await status_of(session, api_route, bearer))[0] == 404


async def test_forwarded_headers_of_anyone_else_are_ignored(
    node_with: OpenNode, session: aiohttp.ClientSession
) -> None:
    async with node_with("127.0.0.9/32") as node:
        assert node.remote_portal_url is not None
        login = f"{node.remote_portal_url}login"
        own = {"Host": node.remote_portal_url.split("/")[2]}
        ignored = {**own, "X-Forwarded-Host": "evil.test"}
        assert (await status_of(session, login, ignored))[0] == 200  # Host decides
        assert (await status_of(session, login, {"Host": "evil.test"}))[0] == 403
        headers = {**own, "X-Forwarded-Proto": "https", "Origin": f"http://{own['Host']}"}
        status, answer = await status_of(session, login, headers, data={"token": node.api_token})
        assert status == 303
        assert "Secure" not in str(answer.get("Set-Cookie"))


async def test_without_remote_access_the_portal_stays_where_it_was(tmp_path: Path) -> None:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as node, aiohttp.ClientSession() as s:
        assert node.remote_portal_url is None
        url = f"{node.api_url}/portal/login"
        assert (await status_of(s, url, {"Host": "swarm.test"}))[0] == 403
        forwarded = {"X-Forwarded-Host": node.api_url.split("/")[2], "Host": "evil.test"}
        assert (await status_of(s, url, forwarded))[0] == 403


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls_cert": Path("c.pem")}, "go together"),
        ({"tls_cert": Path("c.pem"), "tls_key": Path("k.pem")}, "give --portal-listen"),
        ({"hosts": ("http://swarm.test",)}, "not a host name"),
        ({"proxies": ("10.0.0.1/8",)}, "10.0.0.1/8"),
        (
            {
                "listen_host": "0.0.0.0",
                "tls_cert": Path("/nonexistent/c.pem"),
                "tls_key": Path("/nonexistent/k.pem"),
            },
            "cannot use the portal's TLS certificate",
        ),
    ],  # fmt: skip
)
def test_bad_remote_access_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {
        "listen_host": None,
        "listen_port": 7403,
        "tls_cert": None,
        "tls_key": None,
        "hosts": (),
        "proxies": (),
        **changes,
    }
    with pytest.raises(UsageError, match=message):
        PortalAccess.from_settings(**settings)
