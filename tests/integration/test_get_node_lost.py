"""``swarmget get`` handed to the node, and the node killed mid-download (SIGKILL): the
command says the connection to the node was lost (``NodeLost``, in the error tree: exit 3),
never a framing library's text nor a traceback. Real processes, a real SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.cli import EXIT_FAILED
from swarmget.core.errors import NodeLost
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, NodeHandle, open_local_swarm

CLI = [sys.executable, "-m", "swarmget.cli"]
MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def slow_origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=1 * MiB) as o:  # ~8 s: time to kill the node
        o.add_generated("f.bin", 8 * MiB + 1, seed=5)
        yield o


async def until_running(node: NodeHandle) -> None:
    """Until the node's download has bytes."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            _, listing = await NodeApi(session, node).call("GET", "/v1/downloads")
            if any((d.get("progress") or {}).get("done") for d in listing["downloads"]):
                return
            await asyncio.sleep(0.1)


async def test_a_node_killed_mid_download_is_a_lost_node(
    slow_origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        proc = await asyncio.create_subprocess_exec(
            *CLI, "get", slow_origin.url("f.bin"), "-o", str(target), "--json",
            "--state-dir", str(node.state_dir),
            # an option `run.early` leaves to the command: the command itself sends the
            # download and follows it, the case under test (for a node that dies before
            # the command follows an early download: test_early_handoff.py)
            "--connections", "4",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "XDG_STATE_HOME": "/nonexistent"},
        )  # fmt: skip
        await until_running(node)
        node.proc.signal(signal.SIGKILL)
        await node.proc.process.wait()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == EXIT_FAILED, err
    assert b"Traceback" not in err
    answer = json.loads(out)
    assert answer["ok"] is False
    assert answer["error"] == NodeLost.code, answer
