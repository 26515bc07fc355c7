"""The commands an operator runs: config show, status, peers, doctor — as real processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import open_local_swarm


async def test_config_show_reports_values_and_sources(tmp_path: Path) -> None:
    config = tmp_path / "swarmget.toml"
    config.write_text('secret_file = "/etc/s"\n[node]\nslots = 5\nconnections = 2\n')
    rc, out, _ = await run_cli(
        "--config", str(config), "config", "show", "node",
        env={"SWARMGET_NODE_CONNECTIONS": "7", "COLUMNS": "200"},
    )  # fmt: skip
    assert rc == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert "5" in rows["node.slots"]
    assert "file" in rows["node.slots"]
    assert "7" in rows["node.connections"]
    assert "SWARMGET_NODE_CONNECTIONS" in rows["node.connections"]
    assert "default" in rows["node.port"]


async def test_invalid_configuration_stops_the_node_at_start(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[node]\nslots = -1\n")
    rc, _, err = await run_cli("--config", str(config), "node")
    assert rc == 2
    assert "node.slots" in err
    rc, _, err = await run_cli("node", "--slots", "0", env={"SWARMGET_SECRET": "x" * 32})
    assert rc == 2
    assert "node.slots (from flag)" in err


@pytest.mark.slow
async def test_status_peers_and_doctor_against_a_running_swarm(tmp_path: Path) -> None:
    async with open_test_origin() as origin, open_local_swarm(tmp_path, 2) as swarm:
        origin.add_generated("x.bin", 100_000)
        state = str(swarm.node(0).state_dir)
        hub = str(swarm.hub.info["url"])
        for _ in range(100):  # until the other node is listed
            rc, out, _ = await run_cli("peers", "--state-dir", state, "--json")
            if rc == 0 and json.loads(out)["peers"]:
                break
            await asyncio.sleep(0.2)
        peers = json.loads(out)["peers"]
        assert [p["node_id"] for p in peers] == [swarm.node(1).node_id]
        assert {"slots", "address", "version", "last_seen"} <= set(peers[0])

        rc, out, _ = await run_cli("status", "--state-dir", state, "--json")
        assert rc == 0
        assert json.loads(out)["node"]["node_id"] == swarm.node(0).node_id

        env = {"SWARMGET_SECRET_FILE": str(swarm.secret_file), "COLUMNS": "200"}
        rc, out, err = await run_cli(
            "doctor", "--hub", hub, "--state-dir", state, "--url", origin.url("x.bin"), env=env
        )
        assert rc == 0, out + err
        assert "secret matches" in out
        assert "serves byte ranges" in out
        assert "✗" not in out

        wrong = tmp_path / "wrong-secret"
        wrong.write_text("a-different-secret-of-enough-length")
        env = {"SWARMGET_SECRET_FILE": str(wrong), "COLUMNS": "200"}
        rc, out, _ = await run_cli("doctor", "--hub", hub, "--state-dir", state, env=env)
        assert rc == 1
        assert "✗ hub accepts our signature" in out
        assert "same secret" in out
        # --secret-file (doctor's own advice asks for one) overrides the configured one
        rc, out, _ = await run_cli(
            "doctor", "--hub", hub, "--state-dir", state, "--secret-file",
            str(swarm.secret_file), env=env,
        )  # fmt: skip
        assert rc == 0, out
        assert "secret matches" in out
        assert f"✓ node's hub: registered with {hub}" in out  # the running node's own hub


async def test_status_without_a_node_says_so(tmp_path: Path) -> None:
    rc, _, err = await run_cli("status", "--state-dir", str(tmp_path))
    assert rc == 2
    assert "no running node" in err


async def test_doctor_with_a_bad_hub_url_is_one_line(tmp_path: Path) -> None:
    for bad in (["--hub", "bad-url"], ["--url", "ftp://x/y"]):
        rc, out, err = await run_cli("doctor", *bad, "--state-dir", str(tmp_path))
        assert rc == 2, out + err
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
