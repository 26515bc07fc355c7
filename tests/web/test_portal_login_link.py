"""The portal's one-time login link is short-lived and reaches a terminal only (issue #12):
never the node's stdout (its announce line) or its log, which end up in the journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.testing.swarm import Proc, start_proc
from swarmget.web.security import PortalAuth

CLI = [sys.executable, "-m", "swarmget.cli"]
ENV = {**os.environ, "SWARMGET_SECRET": "s" * 32, "PYTHONUNBUFFERED": "1"}
LINK = re.compile(r"http://127\.0\.0\.1:\d+/portal/login\?token=[A-Za-z0-9_-]+")


def node_args(tmp_path: Path) -> list[str]:
    return [
        "node", "--listen", "127.0.0.1", "--port", "0", "--api-port", "0",
        "--state-dir", str(tmp_path / "state"), "--download-dir", str(tmp_path / "dl"),
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def running_node(tmp_path: Path) -> AsyncIterator[Proc]:
    proc = await start_proc(node_args(tmp_path), tmp_path / "node.log", ENV)
    try:
        for _ in range(200):  # node.json comes right after the announce line
            if (tmp_path / "state" / "node.json").exists():
                break
            await asyncio.sleep(0.05)
        yield proc
    finally:
        await proc.stop()


async def logs_in(link: str) -> bool:
    async with (
        aiohttp.ClientSession() as s,
        s.get(link, allow_redirects=False) as r,
    ):
        return r.status == 303 and r.headers.get("Location") == "/portal/"


def test_a_login_link_lasts_five_minutes() -> None:
    auth = PortalAuth("t" * 43)
    fresh, old = auth.login_link(now=1000.0), auth.login_link(now=1000.0)
    assert auth.redeem_link(fresh, now=1000.0 + 299) is not None
    assert auth.redeem_link(old, now=1000.0 + 301) is None


@pytest.mark.slow
async def test_no_login_link_in_the_announce_line_or_the_log(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        announced = json.dumps(node.info)
        proc = await asyncio.create_subprocess_exec(
            *CLI, "portal", "--state-dir", str(tmp_path / "state"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        link = out.decode().strip()
        assert LINK.fullmatch(link), link
        assert await logs_in(link)
        assert not await logs_in(link)  # one use
    log = (tmp_path / "node.log").read_text()
    assert "token=" not in announced
    assert "token=" not in log
    assert link.split("token=")[1] not in log


@pytest.mark.slow
async def test_a_node_on_a_terminal_prints_a_login_link_there(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *CLI, *node_args(tmp_path), stdout=subprocess.PIPE, stderr=slave, env=ENV
        )
        os.close(slave)
        slave = -1
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert "token=" not in line.decode()
            shown = await asyncio.wait_for(asyncio.to_thread(_read_until_link, master), 30)
            assert await logs_in(shown)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def _read_until_link(fd: int) -> str:
    seen = b""
    for _ in range(200):  # bounded: a few KiB of output at most before the link
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
        found = LINK.search(seen.decode(errors="replace"))
        if found:
            return found.group(0)
    raise AssertionError(f"no login link on the terminal: {seen!r}")
