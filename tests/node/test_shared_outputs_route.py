"""``POST /v1/shared-outputs`` on a real node's user API (``get --share-output``, #15): bad
input is a typed 400, a node without ``--share-output`` refuses, one with it keeps only
this user's regular file of the content's size (never a link), and serves it by range."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import aiohttp

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.protocol.content import ContentKeyModel
from swarmget.protocol.user import SHARED_OUTPUTS_PATH
from swarmget.testing.fakes import identity_for
from swarmget.testing.holders import HolderReader, loopback_config

SECRET = b"s" * 32
SIZE = 100 * 1024
DATA = random.Random(5).randbytes(SIZE)
KEY = ContentKey.from_probe(final_url="http://origin.test/o.bin", size=SIZE, etag='"o1"')


def _config(tmp_path: Path, **kw: Any) -> NodeConfig:
    return loopback_config(tmp_path, secret=SECRET, **kw)


async def _ask(
    session: aiohttp.ClientSession, node: Node, path: Path | str, key: Any = None
) -> tuple[int, dict[str, Any]]:
    body = {"path": str(path), "key": key or ContentKeyModel.of(KEY).model_dump(mode="json")}
    headers = {"Authorization": f"Bearer {node.api_token}"}
    url = node.api_url + SHARED_OUTPUTS_PATH
    async with session.post(url, json=body, headers=headers) as resp:
        data = await resp.json()
        assert isinstance(data, dict)
        return resp.status, data


def _saved(tmp_path: Path, data: bytes = DATA) -> Path:
    path = tmp_path / "elsewhere" / "o.bin"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


async def test_a_node_without_share_output_refuses(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with open_node(_config(tmp_path)) as node:
        status, answer = await _ask(session, node, _saved(tmp_path))
        assert (status, answer) == (200, {"kept": False, "refusal": "node_refuses"})
        assert node.holdings is not None
        assert node.holdings.names() == []


async def test_bad_requests_are_400(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with open_node(_config(tmp_path, share_output=True)) as node:
        status, answer = await _ask(session, node, "relative/o.bin")
        assert (status, answer["code"]) == (400, "bad_request")
        weak = {"url": KEY.url, "size": SIZE, "etag": 'W/"x"'}
        status, answer = await _ask(session, node, _saved(tmp_path), weak)
        assert (status, answer["code"]) == (400, "bad_request")
        headers = {"Authorization": f"Bearer {node.api_token}"}
        url = node.api_url + SHARED_OUTPUTS_PATH
        async with session.post(url, data=b"\xff{", headers=headers) as resp:
            assert resp.status == 400


async def test_a_node_with_share_output_keeps_and_serves_the_file(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    saved = _saved(tmp_path)
    link = saved.parent / "link.bin"
    link.symlink_to(saved)
    short = saved.parent / "short.bin"
    short.write_bytes(DATA[:-1])
    async with open_node(_config(tmp_path, share_output=True)) as node:
        assert node.share_cache is not None
        for refused in (link, short, saved.parent / "missing.bin"):
            status, answer = await _ask(session, node, refused)
            assert (status, answer) == (200, {"kept": False, "refusal": "not_kept"})
        status, answer = await _ask(session, node, saved)
        assert (status, answer) == (200, {"kept": True, "refusal": None})
        assert node.share_cache.keeps(KEY.index_name())
        holder = HolderReader.of(session, node, SECRET, identity_for("out-asker"))
        assert await holder.read(KEY, ByteRange(10, 5000)) == DATA[10:5000]
    os.stat(saved)  # the user's file stays
