"""The local user API's token reaches the node that owns it and nobody else (issue #12).

A node that crashed leaves ``node.json`` behind, naming a TCP port any local user may bind.
The CLI talks to the node on ``api.sock`` in its 0700 state directory instead, the token is
new at every start, and the state directory and its files are private.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from swarmget.node.daemon import NodeConfig, open_node
from swarmget.testing.cli import run_cli
from swarmget.testing.fakes import identity_for, nid
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import start_proc

SECRET = "s" * 32
CLI_ENV = {"SWARMGET_SECRET": SECRET}


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 200_000, seed=5)
        yield o


class FakeNode:
    """A plain TCP server on the port a dead node recorded: it keeps what it receives and
    answers every request like a node would (200, JSON)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(5):
                self.received += await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        body = b'{"node_id": "fake", "peers": [], "downloads": []}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()


async def _crashed_node(tmp_path: Path) -> tuple[Path, int, str]:
    """Start a real node process, SIGKILL it: its state dir, recorded API port, token."""
    state = tmp_path / "state"
    args = [
        "node", "--listen", "127.0.0.1", "--port", "0", "--api-port", "0",
        "--state-dir", str(state), "--download-dir", str(tmp_path / "downloads"),
    ]  # fmt: skip
    proc = await start_proc(args, tmp_path / "node.log", {**os.environ, "SWARMGET_SECRET": SECRET})
    for _ in range(200):  # node.json is written just after the announce line
        if (state / "node.json").exists():
            break
        await asyncio.sleep(0.05)
    proc.signal(signal.SIGKILL)
    await proc.process.wait()
    info = json.loads((state / "node.json").read_text())  # left behind by the crash
    port = URL(info["api_url"]).port
    assert port is not None
    return state, port, (state / "api-token").read_text().strip()


@pytest.mark.slow
async def test_a_stale_node_json_never_sends_the_token_to_whoever_binds_the_port(
    tmp_path: Path, origin: TestOrigin
) -> None:
    state, port, token = await _crashed_node(tmp_path)
    fake = FakeNode()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port)
    async with server:
        rc_status, _, _ = await run_cli("status", "--state-dir", str(state), "--json", env=CLI_ENV)
        rc_peers, _, _ = await run_cli("peers", "--state-dir", str(state), "--json", env=CLI_ENV)
        out = tmp_path / "got.bin"
        rc_get, _, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(out), "-q", "--state-dir", str(state), env=CLI_ENV
        )
    assert token.encode() not in bytes(fake.received)
    assert b"Authorization" not in bytes(fake.received)
    assert fake.connections == 0  # the CLI does not even talk to the recorded port
    assert rc_status != 0  # no node answers: said so
    assert rc_peers != 0
    assert rc_get == 0, err  # nobody to hand it to: downloaded here
    assert out.read_bytes() == origin.content("f.bin")


async def test_a_state_dir_others_may_write_is_not_trusted_with_the_token(
    tmp_path: Path,
) -> None:
    """A node ran and stopped; someone made its directory writable by all and planted a
    socket: the CLI refuses (exit 2) and sends nothing to that socket."""

    state = tmp_path / "state"
    config = NodeConfig(secret=SECRET.encode(), state_dir=state, download_dir=tmp_path / "d")
    async with open_node(config):
        pass
    (state / "node.json").write_text(json.dumps({"api_url": "", "download_dir": str(tmp_path)}))
    os.chmod(state, 0o777)
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    planted.bind(str(state / "api.sock"))
    planted.listen(4)
    planted.setblocking(False)
    try:
        rc, _, err = await run_cli("status", "--state-dir", str(state), env=CLI_ENV)
        with pytest.raises(BlockingIOError):
            planted.accept()  # nobody connected
    finally:
        planted.close()
    assert rc == 2, err
    assert "writable by other users" in err


async def test_every_start_makes_a_new_token_and_the_old_one_is_refused(
    tmp_path: Path,
) -> None:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as first:
        old = first.api_token
    assert (config.state_dir / "api-token").read_text().strip() == old
    async with open_node(config) as second, aiohttp.ClientSession() as session:
        assert second.api_token != old
        assert (config.state_dir / "api-token").read_text().strip() == second.api_token
        for token, expected in ((old, 401), (second.api_token, 200)):
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(second.api_url + "/v1/status", headers=headers) as r:
                assert r.status == expected
            unix = aiohttp.UnixConnector(path=str(config.state_dir / "api.sock"))
            async with (
                aiohttp.ClientSession(connector=unix) as local,
                local.get("http://node/v1/status", headers=headers) as r,
            ):
                assert r.status == expected


async def test_the_state_dir_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    state = tmp_path / "s"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    # the node's key, kept from an earlier start (written 0600, as the node writes it) ...
    key = os.open(state / "node-key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(key, identity_for("old-node").seed().hex().encode() + b"\n")
    os.close(key)
    # ... and a file left readable by others (an older version's node id file)
    (state / "node-id").write_text("old-node\n")
    os.chmod(state / "node-id", 0o644)
    config = NodeConfig(
        secret=b"k" * 32, state_dir=state, download_dir=tmp_path / "d", daily_quota=10**9
    )
    async with open_node(config) as node:
        assert node.node_id == nid("old-node")  # the kept key's
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert stat.S_ISSOCK(os.lstat(state / "api.sock").st_mode)
        assert stat.S_IMODE(os.lstat(state / "api.sock").st_mode) == 0o600
        names = {"node-key", "node-id", "api-token"}
        assert names <= set(os.listdir(state))
        for name in names:
            assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name
    quota = state / "quota.json"  # saved when the node stops
    assert stat.S_IMODE(os.stat(quota).st_mode) == 0o600
    assert not (state / "api.sock").exists()


async def test_a_second_node_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    from swarmget.core.errors import UsageError

    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as node:
        with pytest.raises(UsageError):
            async with open_node(config):
                pass
        assert (config.state_dir / "api-token").read_text().strip() == node.api_token
