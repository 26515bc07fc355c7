"""The node's downloads and the files they write: its max_size, a download's own max_size,
links planted in the download directory. A real node (in-process) and a real origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024
VICTIM = b"precious bytes of someone else\n"


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 3 * MiB, seed=2)
        yield o


async def download(
    session: aiohttp.ClientSession, node: Node, body: dict[str, Any]
) -> dict[str, Any]:
    """Start a download through the user API and wait for it to end; its description."""
    headers = {"Authorization": f"Bearer {node.api_token}"}
    async with session.post(node.api_url + "/v1/downloads", json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        created = await r.json()
    record = node.downloads.records[created["id"]]
    assert record.task is not None
    await record.task
    async with session.get(f"{node.api_url}/v1/downloads/{created['id']}", headers=headers) as r:
        return dict(await r.json())


def node_config(tmp_path: Path, **kw: Any) -> NodeConfig:
    return NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d", **kw)


async def test_the_nodes_max_size_refuses_larger_downloads(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with open_node(node_config(tmp_path, max_size=2 * MiB)) as node:
        detail = await download(session, node, {"url": origin.url("f.bin")})
        assert detail["state"] == "failed"
        assert detail["error"]["code"] == "too_large"
        # a download asking for a larger limit does not lift the node's
        detail = await download(session, node, {"url": origin.url("f.bin"), "max_size": 10 * MiB})
        assert detail["error"]["code"] == "too_large"
    assert list((tmp_path / "d").iterdir()) == []
    assert origin.stats().bytes_total == 0


async def test_a_download_may_ask_for_a_smaller_limit(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with open_node(node_config(tmp_path)) as node:
        detail = await download(session, node, {"url": origin.url("f.bin"), "max_size": MiB})
        assert detail["error"]["code"] == "too_large"
        detail = await download(session, node, {"url": origin.url("f.bin"), "max_size": 3 * MiB})
        assert detail["state"] == "done"
    assert (tmp_path / "d" / "f.bin").stat().st_size == 3 * MiB


async def test_a_link_planted_in_the_download_directory_is_not_written_through(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin.part").symlink_to(victim)
    async with open_node(node_config(tmp_path)) as node:
        detail = await download(session, node, {"url": origin.url("f.bin")})
        assert detail["error"]["code"] == "untrusted_file"
        assert node.downloads.active() == 0
    assert victim.read_bytes() == VICTIM
    assert not (tmp_path / "d" / "f.bin").exists()
