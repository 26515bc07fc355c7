"""``swarmget get`` of a download the node already runs follows it (a note says so)
instead of failing on its part file: the download the node resumed when it restarted, or
one another command started. Ctrl-C then leaves it running (it is not this command's);
another request into that output is refused with the download's id. Real node process,
real origin, the real program."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.cli.app import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from swarmget.core.errors import WrongState
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, NodeHandle, open_local_swarm

CLI = [sys.executable, "-m", "swarmget.cli"]
MiB = 1024 * 1024
SIZE = 6 * MiB + 3
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=1 * MiB) as o:  # ~6 s alone: time to act
        o.add_generated("f.bin", SIZE, seed=31)
        yield o


def _as_from_a_terminal() -> None:  # in the child, before exec (see test_get_interrupt)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "XDG_STATE_HOME": "/nonexistent"},
        preexec_fn=_as_from_a_terminal,
    )  # fmt: skip


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, dict[str, Any] | None, str]:
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else None, err.decode()


async def _downloads(node: NodeHandle) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        _, listing = await NodeApi(session, node).call("GET", "/v1/downloads")
    return list(listing["downloads"])


async def _running(node: NodeHandle, origin: TestOrigin) -> str:
    """The id of a download of ``f.bin`` started on ``node`` through its API, once it runs."""
    async with aiohttp.ClientSession() as session:
        download_id = await NodeApi(session, node).start(origin.url("f.bin"), output="f.bin")
    await _until_running(node, download_id)
    return download_id


async def _until_running(node: NodeHandle, download_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            view = next((d for d in await _downloads(node) if d["id"] == download_id), None)
            if view and view["state"] == "running" and (view.get("progress") or {}).get("done"):
                return
            await asyncio.sleep(0.1)


def _get(origin: TestOrigin, node: NodeHandle, *more: str) -> list[str]:
    target = node.download_dir / "f.bin"
    return [
        "get",
        origin.url("f.bin"),
        "-o",
        str(target),
        "--state-dir",
        str(node.state_dir),
        *more,
    ]


async def test_a_get_after_the_node_restarted_follows_the_download_it_resumed(
    tmp_path: Path, origin: TestOrigin
) -> None:
    """The case that used to fail (exit 6, "FILE.part is being written by another swarmget
    process"): the node stopped in the middle of a download and resumed it when it started
    again; the user's ``get`` of the same URL and file follows it to the verified file. The
    resumed download asks the hub for helpers once the node registered again (not before,
    as a stranger the hub refuses), and gets its peer."""
    async with open_local_swarm(tmp_path / "swarm", 2) as swarm:
        node = swarm.node(0)
        first = await _running(node, origin)
        node = await swarm.restart_node(0)
        code, answer, said = await _finish(await _start_cli(*_get(origin, node, "--json")))
        listing = await _downloads(node)
    assert code == EXIT_OK, said
    assert answer is not None
    assert answer["route"]["route"] == "node"
    assert answer["route"]["joined"] is True
    assert answer["route"]["fallback"] is False, answer["hub"]  # (a warning: it ran alone)
    assert (answer["hub"]["status"], answer["hub"]["peers"]) == ("answered", 1)
    assert f"download {first}" in said  # the note names the download followed
    assert [(d["id"], d["state"]) for d in listing] == [(first, "done")]  # one, resumed
    data = (node.download_dir / "f.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == origin.expected_sha256("f.bin")
    assert answer["resumed_bytes"] > 0  # resumed from its part file, not fetched anew


async def test_ctrl_c_leaves_a_followed_download_running(
    tmp_path: Path, origin: TestOrigin
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        first = await _running(node, origin)
        proc = await _start_cli(*_get(origin, node))
        assert proc.stderr is not None
        seen: list[str] = []
        async with asyncio.timeout(60):
            while not any(line.startswith("note:") for line in seen):
                line = (await proc.stderr.readline()).decode()
                assert line, "".join(seen)  # (the command ended without the note)
                seen.append(line)
        proc.send_signal(signal.SIGINT)
        code, _, said = await _finish(proc)
        views = {d["id"]: d["state"] for d in await _downloads(node)}
        async with aiohttp.ClientSession() as session:  # (then stopped, not to wait for it)
            await NodeApi(session, node).call("DELETE", f"/v1/downloads/{first}")
    assert code == EXIT_INTERRUPTED, said
    assert views == {first: "running"}
    assert f"swarmget cancel {first}" in "".join(seen) + said


async def test_another_request_into_that_output_is_refused_with_the_downloads_id(
    tmp_path: Path, origin: TestOrigin
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        async with aiohttp.ClientSession() as session:
            first = await NodeApi(session, node).start(origin.url("f.bin"), output="f.bin")
            digest = f"sha256:{origin.expected_sha256('f.bin')}"
            code, answer, said = await _finish(
                await _start_cli(*_get(origin, node, "--checksum", digest, "--json"))
            )
            ended = await NodeApi(session, node).wait(first, limit=60)
    assert code == EXIT_USAGE, said
    assert answer is not None
    assert answer["error"] == WrongState.code
    assert first in answer["message"]
    assert ended["state"] == "done"  # the running download went on, untouched
    data = (node.download_dir / "f.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == origin.expected_sha256("f.bin")
