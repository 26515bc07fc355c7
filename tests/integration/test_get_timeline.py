"""``swarmget get --json`` shows the download's timeline on every route, and a download handed
to a node whose hub is gone says that it ran without helpers (real processes)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
PHASES = ("probe", "last_byte", "verified")


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 3 * MiB + 7, seed=5)
        yield o


def assert_timeline(result: dict[str, Any]) -> dict[str, Any]:
    timeline = result["timeline"]
    assert all(isinstance(timeline[p], float) for p in PHASES), timeline
    assert timeline["first_byte"], timeline  # at least one source sent bytes
    firsts = timeline["first_byte"].values()
    assert timeline["probe"] <= min(firsts) <= timeline["last_byte"] <= timeline["verified"]
    command = result["command_timeline"]
    # (negative: handed to the node before `get`'s code ran, by `run.early`)
    assert -command["startup"] <= command["accepted"] <= command["result"]
    assert 0 < command["startup"] < 60  # Python's start and imports (Linux: /proc)
    return dict(timeline)


async def test_get_alone_prints_the_timeline(origin: TestOrigin, tmp_path: Path) -> None:
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f.bin"), "--json", "--no-node",
        "--state-dir", str(tmp_path / "no-node"), timeout=120,
    )  # fmt: skip
    assert rc == 0, err
    result = json.loads(out)
    timeline = assert_timeline(result)
    assert timeline["hub"] is None  # no hub asked
    # each source: the ranges it was asked for and what they waited for a first byte
    (own,) = [s for s in result["sources"] if s["claimed"]]
    assert own["ranges"] >= 1
    assert 0 <= own["waited"] <= timeline["last_byte"] * own["ranges"]


async def wait_registered(api: NodeApi) -> None:
    async with asyncio.timeout(20):
        while True:
            _, status = await api.call("GET", "/v1/status")
            if status["hub"] and status["hub"]["registered"]:
                return
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_a_node_whose_hub_was_killed_says_it_downloaded_alone(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        async with aiohttp.ClientSession() as session:
            await wait_registered(NodeApi(session, node))
        # with the hub alive, the node's download says what it answered
        target = node.download_dir / "before.bin"
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(target), "--json",
            "--state-dir", str(node.state_dir), timeout=120,
        )  # fmt: skip
        assert rc == 0, err
        before = json.loads(out)
        assert before["route"]["route"] == "node"
        assert before["hub"]["status"] in ("answered", "no_answer")
        assert "without helpers" not in err
        assert_timeline(before)

        swarm.hub.signal(signal.SIGKILL)
        await swarm.hub.process.wait()
        hub_url = swarm.hub.info["url"]
        for n, flag in enumerate(("--json", "-q")):
            target = node.download_dir / f"after{n}.bin"
            rc, out, err = await run_cli(
                "get", origin.url("f.bin"), "-o", str(target), flag,
                "--state-dir", str(node.state_dir), timeout=120,
            )  # fmt: skip
            assert rc == 0, err
            assert hashlib.sha256(target.read_bytes()).hexdigest() == origin.expected_sha256(
                "f.bin"
            )
            warning = f"hub {hub_url} unreachable: downloaded without helpers"
            lines = [line for line in err.splitlines() if "without helpers" in line]
            assert lines == [f"warning: {warning}"], err
            if flag == "--json":
                after = json.loads(out)
                assert after["hub"]["status"] == "unavailable"
                assert after["hub"]["alone"] is True
                assert after["route"] == {"route": "node", "reason": warning, "fallback": True}
                assert assert_timeline(after)["hub"] is None  # it never answered
            else:
                assert out == ""


@pytest.mark.slow
async def test_get_hub_prints_the_timeline_with_the_hubs_answer(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        async with aiohttp.ClientSession() as session:
            await wait_registered(NodeApi(session, swarm.node(0)))
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(tmp_path / "f.bin"), "--json",
            "--hub", str(swarm.hub.info["url"]), "--secret-file", str(swarm.secret_file),
            "--source-address", "127.0.0.1", "--state-dir", str(tmp_path / "no-node"), timeout=120,
        )  # fmt: skip
    assert rc == 0, err
    result = json.loads(out)
    assert result["route"]["route"] == "swarm"
    timeline = assert_timeline(result)
    assert isinstance(timeline["hub"], float)  # the hub answered, with the peers it listed
    assert timeline["hub_peers"] == result["hub"]["peers"] >= 1
