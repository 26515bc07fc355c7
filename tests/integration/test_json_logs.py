"""In JSON log mode every line a real hub writes to stderr is one JSON object: its own
lines, the server's, a failed start, an uncaught traceback and library loggers (aiohttp's
"Error handling request" with its traceback) alike; the hub logs its start and stop,
registrations and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.testing.swarm import Proc, hub_args, open_local_swarm, start_proc

pytestmark = pytest.mark.slow


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON (a line that is not fails the test, naming it)."""
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(entry, dict), line
        assert {"ts", "time", "level", "logger", "msg"} <= set(entry), line
        entries.append(entry)
    return entries


@pytest.fixture
async def json_hub(tmp_path: Path) -> AsyncIterator[tuple[Proc, Path]]:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    secret.chmod(0o600)
    args = [*hub_args(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", secret, 3.0)]
    args += ["--log-format", "json", "--log-level", "debug"]
    proc = await start_proc(args, tmp_path / "hub.log", dict(os.environ))
    try:
        yield proc, secret
    finally:
        await proc.stop()


async def test_a_hub_logs_only_json_lines_and_says_what_happens(
    json_hub: tuple[Proc, Path], tmp_path: Path
) -> None:
    hub, secret = json_hub
    url = str(hub.info["url"])
    port = int(url.rsplit(":", 1)[1])
    for garbage in (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"\x16\x03\x01junk\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(garbage)
        await writer.drain()
        async with asyncio.timeout(10):
            await reader.read()
        writer.close()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/nodes/register", data=b"{") as resp:
            assert resp.status == 401  # unsigned
    # the same port again: a second hub cannot start, and says so in JSON
    clash = subprocess.run(
        [sys.executable, "-m", "swarmget.cli", "hub", "--host", "127.0.0.1", "--port", str(port),
         "--db", f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", "--secret-file", str(secret),
         "--log-format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert clash.returncode != 0
    failed = json_lines(clash.stderr)
    assert any(e["level"] == "error" and "cannot start the hub" in e["msg"] for e in failed)
    await hub.stop()
    assert hub.process.returncode == 0
    entries = json_lines(hub.log_path.read_text())
    messages = [e["msg"] for e in entries]
    assert any(m.startswith("hub started: listening on ") for m in messages)
    assert "received SIGTERM: stopping" in messages
    # the hub's own last word (at --log-level debug, aiosqlite's worker thread may still
    # log "operation ... completed" after it: seen once in CI)
    ours = [e["msg"] for e in entries if e["logger"].startswith("swarmget")]
    assert ours[-1] == "hub stopped"
    assert any(e["logger"] == "swarmget.http" for e in entries)  # the malformed requests


async def test_a_node_and_its_hub_log_registration_in_json(tmp_path: Path) -> None:
    extra = ["--log-format", "json"]
    async with open_local_swarm(tmp_path, 1, node_extra=extra, hub_extra=extra) as swarm:
        node_id = swarm.node(0).node_id
        async with asyncio.timeout(15):
            while f"node registered: {node_id}" not in (tmp_path / "hub.log").read_text():
                await asyncio.sleep(0.1)
        await swarm.node(0).proc.stop()
        async with asyncio.timeout(15):
            while f"node left: {node_id}" not in (tmp_path / "hub.log").read_text():
                await asyncio.sleep(0.1)
    node_lines = json_lines((tmp_path / "node0.log").read_text())
    assert any(e["msg"] == "received SIGTERM: stopping" for e in node_lines)
    json_lines((tmp_path / "hub.log").read_text())


CRASH = """
import logging, warnings
from swarmget.logs import setup_logging
setup_logging("json", "info")
try:
    raise ConnectionResetError("peer went away")
except ConnectionResetError:
    logging.getLogger("aiohttp.server").exception("Error handling request")
logging.getLogger("asyncio").error("Task exception was never retrieved")
logging.getLogger("swarmget.test").debug("not shown at info")
warnings.warn("a library's warning", UserWarning, stacklevel=1)
raise RuntimeError("uncaught")
"""


def test_library_tracebacks_warnings_and_a_crash_are_json_lines() -> None:
    run = subprocess.run(
        [sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 1
    entries = json_lines(run.stderr)
    by_logger = {e["logger"]: e for e in entries}
    aiohttp_line = by_logger["aiohttp.server"]
    assert aiohttp_line["level"] == "error"
    assert "ConnectionResetError: peer went away" in aiohttp_line["exc"]
    assert "Traceback (most recent call last)" in aiohttp_line["exc"]
    assert by_logger["asyncio"]["msg"] == "Task exception was never retrieved"
    assert "a library's warning" in by_logger["py.warnings"]["msg"]
    assert "RuntimeError: uncaught" in by_logger["swarmget"]["exc"]
    assert "swarmget.test" not in by_logger  # below --log-level


def test_a_bad_log_level_is_refused_with_the_choices(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "swarmget.cli", "hub", "--log-level", "loud"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert "debug" in run.stderr
    assert "error" in run.stderr
