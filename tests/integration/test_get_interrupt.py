"""Ctrl-C on ``swarmget get`` (issue #16): a download handed to the node is cancelled there
(exit 130), or left running with ``--detach`` (then ``swarmget cancel ID`` stops it); the
same command run again resumes; ``get --hub`` exits 130 too. Real processes, real SIGINT."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
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
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=1 * MiB) as o:  # ~8 s alone: time to interrupt
        o.add_generated("f.bin", 8 * MiB + 1, seed=9)
        yield o


def _as_from_a_terminal() -> None:  # in the child, before exec
    # a background job of a non-interactive shell (a CI runner's) inherits SIGINT ignored,
    # and Python then leaves it ignored: the Ctrl-C under test would never arrive
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "XDG_STATE_HOME": "/nonexistent"},
        preexec_fn=_as_from_a_terminal,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def downloads(node: NodeHandle) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        _, listing = await NodeApi(session, node).call("GET", "/v1/downloads")
    return list(listing["downloads"])


async def until_running(node: NodeHandle) -> dict[str, Any]:
    """The node's running download, once it has bytes."""
    async with asyncio.timeout(30):
        while True:
            for d in await downloads(node):
                if d["state"] == "running" and (d.get("progress") or {}).get("done"):
                    return d
            await asyncio.sleep(0.1)


async def state_of(node: NodeHandle, download_id: str, *, settled: bool) -> str:
    async with asyncio.timeout(20):
        while True:
            record = next(d for d in await downloads(node) if d["id"] == download_id)
            if not settled or record["state"] not in ("starting", "running"):
                return str(record["state"])
            await asyncio.sleep(0.1)


async def test_ctrl_c_cancels_the_nodes_download_or_detaches(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        args = ("get", origin.url("f.bin"), "-o", str(target), "--state-dir", str(node.state_dir))
        proc = await start_cli(*args)
        record = await until_running(node)
        proc.send_signal(signal.SIGINT)
        rc, err = await finish(proc)
        assert rc == 130, err
        assert "cancelled" in err
        assert await state_of(node, record["id"], settled=True) == "cancelled"

        proc = await start_cli(*args, "--detach")  # resumes; Ctrl-C leaves it running
        record = await until_running(node)
        proc.send_signal(signal.SIGINT)
        rc, err = await finish(proc)
        assert rc == 130, err
        assert f"swarmget cancel {record['id']}" in err
        assert await state_of(node, record["id"], settled=False) in ("starting", "running")

        cancel = await start_cli("cancel", record["id"], "--state-dir", str(node.state_dir))
        rc, err = await finish(cancel)
        assert rc == 0, err
        assert await state_of(node, record["id"], settled=True) == "cancelled"

        rc, err = await finish(await start_cli(*args))  # the same command again: resumes
        assert rc == 0, err
    assert hashlib.sha256(target.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")


async def test_ctrl_c_on_get_with_hub_exits_130(origin: TestOrigin, tmp_path: Path) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        out = tmp_path / "out.bin"
        proc = await start_cli(
            "get", origin.url("f.bin"), "-o", str(out), "--hub", str(swarm.hub.info["url"]),
            "--secret-file", str(swarm.secret_file), "--source-address", "127.0.0.1",
        )  # fmt: skip
        async with asyncio.timeout(30):  # until it has written something
            while not any(p.name.startswith("out.bin") for p in tmp_path.iterdir()):
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        rc, err = await finish(proc)
    assert rc == 130, err
    assert "error" not in err
