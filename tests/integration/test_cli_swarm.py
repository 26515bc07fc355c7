"""``swarmget get`` with a swarm: joining a hub in-process, or handing off to a running node."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=2 * MiB) as o:
        o.add_generated("f.bin", 12 * MiB + 3, seed=21)
        yield o


async def test_get_with_hub_joins_the_swarm(origin: TestOrigin, tmp_path: Path) -> None:
    async with (
        open_local_swarm(tmp_path / "swarm", 3) as swarm,
        aiohttp.ClientSession() as session,
    ):
        api = NodeApi(session, swarm.node(0))
        async with asyncio.timeout(15):
            while len(await api.peers()) < 2:
                await asyncio.sleep(0.2)
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(tmp_path / "out.bin"), "--json",
            "--hub", str(swarm.hub.info["url"]), "--secret-file", str(swarm.secret_file),
            "--source-address", "127.0.0.1", timeout=120,
        )  # fmt: skip
    assert rc == 0, err
    result = json.loads(out)
    data = (tmp_path / "out.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == origin.expected_sha256("f.bin")
    helpers = [s for s in result["sources"] if s["claimed"] > 0]
    assert len(helpers) >= 3, result["sources"]  # this process plus the nodes


async def test_get_hands_the_download_to_a_running_node(origin: TestOrigin, tmp_path: Path) -> None:
    async with open_local_swarm(tmp_path / "swarm", 2) as swarm:
        node = swarm.node(0)
        target = node.download_dir / "handed.bin"
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(target), "--json",
            "--state-dir", str(node.state_dir), timeout=120,
        )  # fmt: skip
        assert rc == 0, err
        assert json.loads(out)["path"] == str(target.resolve())
        assert hashlib.sha256(target.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
        async with aiohttp.ClientSession() as session:
            _, listing = await NodeApi(session, node).call("GET", "/v1/downloads")
        assert [d["state"] for d in listing["downloads"]] == ["done"]

        # outside the node's directory: downloaded by the CLI itself, with a notice
        elsewhere = tmp_path / "elsewhere.bin"
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(elsewhere), "--json",
            "--state-dir", str(node.state_dir), timeout=120,
        )  # fmt: skip
        assert rc == 0, err
        assert "downloading alone" in err  # said loudly, and in the JSON
        assert "outside" in json.loads(out)["route"]["reason"]
        assert json.loads(out)["route"]["fallback"] is True
        assert elsewhere.exists()


async def test_errors_from_the_node_keep_their_exit_code(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(node.download_dir / "x.bin"),
            "--checksum", "sha256:" + "0" * 64, "--json", "--state-dir", str(node.state_dir),
            timeout=120,
        )  # fmt: skip
        assert rc == 5, err
        assert json.loads(out)["error"] == "checksum_mismatch"
