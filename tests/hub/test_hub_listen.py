"""``swarmget hub`` as a real process on 127.0.0.1 under attack: half-sent requests under a
small ``RLIMIT_NOFILE``, a flood of malformed requests, X-Forwarded-For from a trusted proxy
and a forged one, and the refused ``--trust-proxy``."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from swarmget.net.auth import json_body, signed_headers
from swarmget.net.hub_client import Registration
from swarmget.testing.fakes import identity_for, nid

SECRET = b"listen-test-secret-0123456789"
START_TIMEOUT = 15.0
PATIENCE = 15.0  # bound on every wait for the hub to act
HALF_HEAD = b"POST /v1/nodes/register HTTP/1.1\r\nHost: hub\r\nX-Slow: "
NOFILE = 256  # the hub's descriptor limit in the half-open test
MAX_LOG_LINES = 22  # swarmget.net.serve.LOG_BURST lines, and the announce of the rest


@dataclass
class Hub:
    process: asyncio.subprocess.Process
    url: str
    port: int
    log: Path

    async def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(PATIENCE):
            await self.process.wait()
        return self.log.read_text(errors="replace")


@dataclass
class Launcher:
    tmp_path: Path
    stack: AsyncExitStack

    def env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMGET_")}
        env["XDG_CONFIG_HOME"] = str(self.tmp_path / "no-config")  # no user config file
        return env | dict(extra)

    async def run(self, *args: str, nofile: int | None = None, **env: str) -> Hub:
        secret_file = self.tmp_path / "secret"
        secret_file.write_bytes(SECRET + b"\n")
        log = self.tmp_path / "hub.log"

        def limit_files() -> None:  # in the child, before exec
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "swarmget.cli", "hub", "--host=127.0.0.1", "--port=0"],
                f"--db=sqlite+aiosqlite:///{self.tmp_path / 'hub.db'}",
                f"--secret-file={secret_file}",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=self.env(env),
                preexec_fn=limit_files,
            )
        self.stack.push_async_callback(_reap, process)
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = await process.stdout.readline()
        if not line:
            raise AssertionError(f"hub did not start: {log.read_text()}")
        url = json.loads(line)["url"]
        return Hub(process, url, int(url.rsplit(":", 1)[1]), log)


async def _reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[Launcher]:
    async with AsyncExitStack() as stack:
        yield Launcher(tmp_path, stack)


async def _health(hub: Hub, source: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        asyncio.timeout(5.0),
        session.get(hub.url + "/v1/health") as resp,
    ):
        return resp.status


async def _half_open(hub: Hub, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port, local_addr=(source, 0))
    writer.write(HALF_HEAD)
    await writer.drain()
    return reader, writer


REFUSED = b"503 or reset"


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """What the hub said before it closed: b"" (nothing), or REFUSED (a 503, or a reset
    when it closed with our half-sent head unread, which loses the 503)."""
    try:
        async with asyncio.timeout(PATIENCE):
            answer = await reader.read()
    except ConnectionResetError:
        return REFUSED
    return REFUSED if answer.startswith(b"HTTP/1.1 503 ") else answer


async def test_half_sent_requests_do_not_stop_a_hub_short_of_descriptors(
    launcher: Launcher,
) -> None:
    """More half-sent requests than the hub has descriptors: before, it stopped accepting
    (EMFILE) and every other client hung; now one address gets at most 64 connections,
    the rest a 503, and the half-sent ones are closed after the head timeout."""
    hub = await launcher.run(nofile=NOFILE, SWARMGET_HUB_HEAD_TIMEOUT="2")
    held = [await _half_open(hub, "127.0.0.1") for _ in range(NOFILE + 50)]
    try:
        assert await _health(hub, "127.0.0.2") == 200
        answers = [await _answer(reader) for reader, _ in held]
        assert answers.count(b"") == 64  # the hub's cap per address, closed as slow heads
        assert answers.count(REFUSED) == len(held) - 64
        assert await _health(hub, "127.0.0.1") == 200  # the address is welcome again
    finally:
        for _, writer in held:
            writer.close()
    assert "Traceback" not in await hub.stop()


async def test_a_flood_of_malformed_requests_logs_a_few_lines(launcher: Launcher) -> None:
    hub = await launcher.run()
    garbage = [
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: \x01\r\n\r\n",
        b"POST /v1/nodes/register HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{",
    ]
    for i in range(300):
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(garbage[i % len(garbage)])
        await writer.drain()
        if garbage[i % len(garbage)].endswith(b"{"):
            writer.close()  # hangs up in the middle of the body
            continue
        async with asyncio.timeout(PATIENCE):
            assert (await reader.read()).startswith(b"HTTP/1.")
        writer.close()
    assert await _health(hub, "127.0.0.1") == 200
    log = await hub.stop()
    assert "Traceback" not in log
    server_lines = [line for line in log.splitlines() if " swarmget.http: " in line]
    assert 1 <= len(server_lines) <= MAX_LOG_LINES


async def _register_through(hub: Hub, source: str, forwarded_for: str) -> str:
    url = hub.url + "/v1/nodes/register"
    body = json_body(Registration(port=7500, version="0.1.0", slots=2).as_json(nid("node-a")))
    headers = signed_headers(SECRET, identity_for("node-a"), "POST", url, body)
    headers["X-Forwarded-For"] = forwarded_for
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        asyncio.timeout(PATIENCE),
        session.post(url, data=body, headers=headers) as resp,
    ):
        assert resp.status == 200
        return str((await resp.json())["address"])


async def test_trusted_proxy_hop_is_used_and_a_forged_one_is_not(launcher: Launcher) -> None:
    hub = await launcher.run("--trusted-proxy", "127.0.0.1", "--trusted-proxy=10.0.0.0/30")
    # through the proxy: the client forged "6.6.6.6", the proxy appended 10.20.30.40
    assert await _register_through(hub, "127.0.0.1", "6.6.6.6, 10.20.30.40") == "10.20.30.40"
    # not through a trusted proxy: the header is not read
    assert await _register_through(hub, "127.0.0.2", "10.20.30.40") == "127.0.0.2"


@pytest.mark.parametrize("module", ["swarmget.cli", "swarmget.hub"])
async def test_trust_proxy_is_refused_with_a_pointer(launcher: Launcher, module: str) -> None:
    secret_file = launcher.tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    command = [sys.executable, "-m", module] + (["hub"] if module == "swarmget.cli" else [])
    process = await asyncio.create_subprocess_exec(
        *command,
        "--port=0",
        f"--secret-file={secret_file}",
        "--trust-proxy",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=launcher.env({}),
    )
    async with asyncio.timeout(START_TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode == 2
    assert out == b""
    assert b"--trusted-proxy" in err
