"""``swarmget.run.node``: the node with its portal; the daemon alone serves its APIs only."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from swarmget.node import daemon
from swarmget.node.daemon import NodeConfig
from swarmget.run.node import open_node
from swarmget.web.portal import Portal


def config(tmp_path: Path) -> NodeConfig:
    return NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")


async def portal_status(api_url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{api_url}/portal/login") as r:
        return r.status


async def test_the_run_node_serves_the_portal_on_the_user_apis_server(tmp_path: Path) -> None:
    async with open_node(config(tmp_path)) as node:
        assert isinstance(node.portal, Portal)
        assert node.portal.base_url == f"{node.api_url}/portal"  # bound once listening
        assert await portal_status(node.api_url) == 200


async def test_the_daemon_alone_has_no_portal(tmp_path: Path) -> None:
    async with daemon.open_node(config(tmp_path)) as node:
        assert node.portal is None
        # no portal sub-application: the user API's bearer check answers for the path
        assert await portal_status(node.api_url) == 401
