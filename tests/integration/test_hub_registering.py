"""A real node whose hub has not answered its first registration yet: its status says
"registering" (before, it had no hub state at all, which ``swarmget status`` showed as
"not registered (None)" and ``swarmget doctor`` as a node without a hub). Real processes:
the node and the CLI; the "hub" is a socket that accepts and never answers, so the first
attempt lasts the hub client's whole timeout."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.silent import open_silent_server
from swarmget.testing.swarm import start_proc

pytestmark = pytest.mark.slow
CLI_ENV = {"COLUMNS": "400"}


async def test_a_node_whose_hub_has_not_answered_yet_is_registering(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "SWARMGET_SECRET": "s" * 32, "PYTHONUNBUFFERED": "1"}
    async with open_silent_server() as silent:
        hub = silent.url
        node = await start_proc(
            ["node", "--hub", hub, "--port", "0", "--api-port", "0", "--state-dir", str(state),
             "--download-dir", str(tmp_path / "d")],
            tmp_path / "node.log", env,
        )  # fmt: skip
        try:
            async with asyncio.timeout(10):
                await silent.asked.wait()  # the node's registration reached the silent hub
            rc, out, err = await run_cli("status", "--state-dir", str(state), "--json", env=CLI_ENV)
            assert rc == 0, err
            shown = json.loads(out)["node"]["hub"]
            # the hub client waits 10 s for an answer: the first attempt is still under way
            assert shown["state"] == "registering", shown
            assert (shown["registered"], shown["error"], shown["hub_url"]) == (False, None, hub)
            rc, out, err = await run_cli("status", "--state-dir", str(state), env=CLI_ENV)
            assert rc == 0, err
            assert f"hub: registering with {hub}" in out
        finally:
            await node.stop()
