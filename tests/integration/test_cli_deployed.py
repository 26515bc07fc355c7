"""The CLI as deployed (issue #16): the commands find the node where the configuration puts
it, a user of the node's group reaches a node run as another user, and a download that does
not go the way it was set up says so, on stderr and in ``--json``. Real processes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import open_local_swarm

MiB = 1024 * 1024
GROUP = 4242  # a group of the node's state directory (needs no name)
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 2 * MiB + 5, seed=3)
        yield o


def no_default_node(tmp_path: Path) -> dict[str, str]:
    """An environment whose per-user default state directory holds no node."""
    return {"XDG_STATE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


async def test_status_peers_and_get_find_the_node_the_config_names(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        node = swarm.node(0)
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'[node]\nstate_dir = "{node.state_dir}"\n')
        env = no_default_node(tmp_path)
        for command in (["status", "--json"], ["peers", "--json"]):
            rc, out, err = await run_cli(
                "--config", str(cfg), *command, env=env, cwd="/", timeout=120
            )
            assert rc == 0, err
        rc, out, _ = await run_cli(
            "status", "--json", env={**env, "SWARMGET_NODE_STATE_DIR": str(node.state_dir)},
            cwd="/", timeout=120,
        )  # fmt: skip
        assert rc == 0
        assert json.loads(out)["node"]["node_id"] == node.node_id
        target = node.download_dir / "f.bin"
        rc, out, err = await run_cli(
            "--config", str(cfg), "get", origin.url("f.bin"), "-o", str(target), "--json",
            env=env, cwd="/", timeout=120,
        )  # fmt: skip
        assert rc == 0, err
        assert json.loads(out)["route"] == {"route": "node", "reason": None, "fallback": False}
        # without -o, from inside the node's directory: the file lands where the user is
        here = node.download_dir / "sub"
        here.mkdir()
        rc, out, err = await run_cli(
            "--config", str(cfg), "get", origin.url("f.bin"), "--json",
            env=env, cwd=here, timeout=120,
        )  # fmt: skip
        assert rc == 0, err
        assert json.loads(out)["path"] == str((here / "f.bin").resolve())
        rc, out, _ = await run_cli("--config", str(cfg), "doctor", env=env, cwd="/", timeout=120)
        assert "no running node" not in out


async def test_get_joins_the_configured_hub_without_a_node(
    origin: TestOrigin, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path / "swarm", 1) as swarm:
        cfg = tmp_path / "config.toml"
        hub = swarm.hub.info["url"]
        cfg.write_text(f'secret_file = "{swarm.secret_file}"\n[node]\nhub = ["{hub}"]\n')
        rc, out, err = await run_cli(
            "--config", str(cfg), "get", origin.url("f.bin"), "-o", str(tmp_path / "f.bin"),
            "--json", "--source-address", "127.0.0.1",
            env=no_default_node(tmp_path), cwd="/", timeout=120,
        )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["route"] == {"route": "swarm", "reason": None, "fallback": False}


async def test_a_download_alone_says_why_loudly_and_in_json(
    origin: TestOrigin, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    cfg.write_text(f'secret_file = "{secret}"\n[node]\nhub = ["http://127.0.0.1:9"]\n')  # down
    rc, out, err = await run_cli(
        "--config", str(cfg), "get", origin.url("f.bin"), "-o", str(tmp_path / "f.bin"),
        "--json", "--source-address", "127.0.0.1",
        env=no_default_node(tmp_path), cwd="/", timeout=120,
    )  # fmt: skip
    assert rc == 0, err
    route = json.loads(out)["route"]
    assert route["route"] == "alone"
    assert route["fallback"] is True
    assert "127.0.0.1:9" in route["reason"]
    assert "warning" in err
    assert "downloading alone" in err
    # nothing set up: alone, and the JSON says why
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "g.bin"), "--json",
        env=no_default_node(tmp_path), cwd="/", timeout=120,
    )  # fmt: skip
    assert rc == 0, err
    route = json.loads(out)["route"]
    assert route["route"] == "alone"
    assert "no node runs" in route["reason"]
    assert route["fallback"] is False
    assert "warning" not in err  # nothing was set up: nothing to warn about


def can_switch_user() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(not can_switch_user(), reason="needs root and setpriv to act as another user")
async def test_a_member_of_the_nodes_group_reaches_it(tmp_path: Path) -> None:
    """The node runs as one user (root here) with --api-group-access; another user in the
    state directory's group reaches it; a user outside the group does not."""
    root = Path(tempfile.mkdtemp(prefix="swarmget-group-"))  # others may traverse it
    try:
        root.chmod(0o755)
        state = root / "node0"
        state.mkdir(mode=0o750)
        os.chown(state, -1, GROUP)
        async with open_local_swarm(root, 1, node_extra=["--api-group-access"]) as swarm:
            node = swarm.node(0)
            member = ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={GROUP}"]
            stranger = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            env = {"SWARMGET_NODE_STATE_DIR": str(node.state_dir), "HOME": "/"}
            rc, out, err = await run_cli(
                "status", "--json", env=env, prefix=member, cwd="/", timeout=120
            )
            assert rc == 0, err
            assert json.loads(out)["node"]["node_id"] == node.node_id
            rc, _, err = await run_cli(
                "status", "--json", env=env, prefix=stranger, cwd="/", timeout=120
            )
            assert rc != 0
            assert "no running node" in err
            assert (state / "node-key").stat().st_mode & 0o077 == 0  # the key stays private
    finally:
        shutil.rmtree(root, ignore_errors=True)
