"""Fixtures shared by the node tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.node.daemon import Node, NodeConfig, open_node

#: ``api(method, path, body=None)``: a call to the ``node`` fixture's user API over
#: loopback with its token → (status, JSON answer).
UserApiCall = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to a node's APIs over loopback, closed after the test."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A real node in this process, with its own state and download directories (a test
    module that needs another configuration defines its own ``node``)."""
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


@pytest.fixture
def api(node: Node, session: aiohttp.ClientSession) -> UserApiCall:
    """Calls to ``node``'s user API (see ``UserApiCall``)."""

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {node.api_token}"}
        async with session.request(
            method, node.api_url + path, json=body, headers=headers
        ) as answer:
            return answer.status, await answer.json(content_type=None)

    return call
