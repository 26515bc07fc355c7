"""``swarmget get --share-output`` (fetch once per LAN, #15): a file ``get`` saved outside
the node's directories is served to the node's LAN group only when the user asked (the
flag) and the node allows it (``swarmget node --share-output``); real processes on
127.0.0.x: a hub, nodes, the ``get`` command, and a later requester that takes the file
over the LAN."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, NodeHandle, open_local_swarm

CLI = [sys.executable, "-m", "swarmget.cli"]
MiB = 1024 * 1024
SIZE = 4 * MiB + 3
SHARE = ["--share-downloads"]
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=23)
        yield o


async def _get(url: str, node: NodeHandle, out: Path, *flags: str) -> dict[str, Any]:
    """``swarmget get URL -o OUT --state-dir NODE --json`` saved outside the node's dirs."""
    env = dict(os.environ)
    proc = await asyncio.create_subprocess_exec(
        *CLI, "get", url, "-o", str(out), "--state-dir", str(node.state_dir), "--json", *flags,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    data = json.loads(stdout)
    assert isinstance(data, dict)
    return data


async def test_a_file_saved_elsewhere_is_shared_only_when_asked_and_allowed(
    origin: TestOrigin, tmp_path: Path
) -> None:
    extra = {0: [*SHARE, "--share-output"], 1: SHARE, 2: SHARE}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    url = origin.url("f.bin")
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path / "swarm", 3, node_extra=extra, hub_ttl=6) as swarm,
    ):
        allowing, refusing, later = swarm.node(0), swarm.node(1), swarm.node(2)
        # not asked: never shared, even by a node that allows it
        plain = await _get(url, allowing, outside / "a.bin")
        assert "shared_output" not in plain
        assert (await NodeApi(session, allowing).sharing())["kept_files"] == 0
        # asked, but the node does not share files saved outside its directories
        refused = await _get(url, refusing, outside / "b.bin", "--share-output")
        assert refused["shared_output"] == "node_refuses"
        assert (await NodeApi(session, refusing).sharing())["kept_files"] == 0
        # asked and allowed: kept, announced, and a later requester takes it over the LAN
        shared = await _get(url, allowing, outside / "c.bin", "--share-output")
        assert shared["shared_output"] == "shared"
        await NodeApi(session, allowing).until_sharing("announced", 1)
        assert (await NodeApi(session, allowing).sharing())["kept_files"] == 1
        done = await NodeApi(session, later).download(url, "d.bin")
        assert done["result"]["sharing"]["lan_bytes"] >= SIZE // 2
        data = (later.download_dir / "d.bin").read_bytes()
        assert hashlib.sha256(data).hexdigest() == origin.expected_sha256("f.bin")
    assert (outside / "c.bin").exists()  # the user's file: never moved or deleted
