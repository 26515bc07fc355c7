"""What ``status``, ``peers`` and ``get --hub`` say when the hub cannot be reached: plain
words, never a library's ``repr`` (issue #16). Real processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import start_proc

DOWN = "http://127.0.0.9:7000"  # nothing listens there
PLAIN = "cannot connect to 127.0.0.9:7000: connection refused"
CLI_ENV = {"COLUMNS": "400", "SWARMGET_SECRET": "s" * 32}
pytestmark = pytest.mark.slow


async def test_an_unreachable_hub_in_plain_words(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "SWARMGET_SECRET": "s" * 32, "PYTHONUNBUFFERED": "1"}
    node = await start_proc(
        ["node", "--hub", DOWN, "--port", "0", "--api-port", "0", "--state-dir", str(state),
         "--download-dir", str(tmp_path / "d"), "--heartbeat-interval", "0.5"],
        tmp_path / "node.log", env,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):  # until the node has tried its hub
            while True:
                rc, out, err = await run_cli("status", "--state-dir", str(state), env=CLI_ENV)
                if "not registered" in out and "None" not in out.split("not registered")[1]:
                    break
                await asyncio.sleep(0.3)
        assert PLAIN in out
        rc, out, err = await run_cli("peers", "--state-dir", str(state), env=CLI_ENV)
        assert rc != 0
        assert PLAIN in err
        assert "ClientConnectorError" not in err
    finally:
        await node.stop()
    log = (tmp_path / "node.log").read_text()
    assert PLAIN in log
    assert "ClientConnectorError" not in log


async def test_get_with_an_unreachable_hub_in_plain_words(tmp_path: Path) -> None:
    async with open_test_origin() as origin:
        origin.add_generated("f.bin", 100_000)
        rc, _, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(tmp_path / "f.bin"), "--hub", DOWN,
            "--source-address", "127.0.0.1", env=CLI_ENV,
        )  # fmt: skip
    assert rc == 0, err
    assert "downloading alone" in err
    assert "ClientConnectorError" not in err
