"""``python -m swarmget.hub`` as a real process on 127.0.0.1 with a SQLite file: it survives
SIGKILL with its registry intact, and a node's membership loop finds its way back to a hub
that forgot it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from swarmget.net.hub_client import HubClient, Registration
from swarmget.net.membership import MembershipState, run_membership
from swarmget.testing.fakes import identity_for, nid

SECRET = b"process-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)
START_TIMEOUT = 15.0


@dataclass
class HubProcess:
    process: asyncio.subprocess.Process
    url: str

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()


@dataclass
class Launcher:
    tmp_path: Path
    stack: AsyncExitStack

    async def start(self, db_name: str, port: int = 0) -> HubProcess:
        secret_file = self.tmp_path / "secret"
        secret_file.write_bytes(SECRET + b"\n")
        log = (self.tmp_path / f"hub-{db_name}.log").open("ab")
        self.stack.callback(log.close)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "swarmget.hub",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--db=sqlite+aiosqlite:///{self.tmp_path / db_name}",
            f"--secret-file={secret_file}",
            "--ttl=15",
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        self.stack.push_async_callback(_reap, process)
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = await process.stdout.readline()
        if not line:
            raise AssertionError(f"hub did not start: {log.name}")
        return HubProcess(process, json.loads(line)["url"])


async def _reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[Launcher]:
    async with AsyncExitStack() as stack:
        yield Launcher(tmp_path, stack)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _health(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/v1/health") as resp:
        answer = await resp.json()
    return int(answer["nodes"])


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_registry_survives_sigkill(
    launcher: Launcher, session: aiohttp.ClientSession
) -> None:
    first = await launcher.start("hub.db")
    a = HubClient(session, first.url, SECRET, identity_for("node-a"))
    b = HubClient(session, first.url, SECRET, identity_for("node-b"))
    await a.register(REG)
    await b.register(REG)
    await first.kill()

    second = await launcher.start("hub.db")
    b_again = HubClient(session, second.url, SECRET, identity_for("node-b"))
    assert [p.node_id for p in await b_again.peers()] == [nid("node-a")]
    assert await _health(session, second.url) == 2


async def test_membership_reregisters_with_a_hub_that_forgot(
    launcher: Launcher, session: aiohttp.ClientSession
) -> None:
    first = await launcher.start("first.db")
    port = int(first.url.rsplit(":", 1)[1])
    client = HubClient(session, first.url, SECRET, identity_for("node-a"), timeout=1.0)
    states: list[MembershipState] = []

    async def listed() -> bool:
        return await _health(session, first.url) == 1

    async with asyncio.TaskGroup() as tg:
        member = tg.create_task(
            run_membership(
                client,
                REG,
                dict,
                interval=0.1,
                backoff_initial=0.05,
                backoff_max=0.2,
                on_state=states.append,
            )
        )
        await _until(listed)
        await first.kill()
        second = await launcher.start("second.db", port=port)  # same URL, empty registry
        assert second.url == first.url
        await _until(listed)
        member.cancel()
    assert any(s.registered is None and s.error for s in states)  # it noticed the loss
    assert await _health(session, second.url) == 0  # and left when cancelled
