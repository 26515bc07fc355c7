"""``python -m swarmget.hub`` as a real process on 127.0.0.1 with a SQLite file: it survives
SIGKILL with its registry intact, and a node's membership loop finds its way back to a hub
that forgot it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from swarmget.net.hub_client import HubClient, Registration
from swarmget.net.membership import MembershipState, run_membership
from swarmget.testing.fakes import identity_for, nid
from swarmget.testing.swarm import HubProcs, Proc, open_hubs

SECRET = b"process-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)


@dataclass
class HubProcess:
    proc: Proc

    @property
    def url(self) -> str:
        return str(self.proc.info["url"])

    async def kill(self) -> None:
        self.proc.signal(signal.SIGKILL)
        await self.proc.process.wait()


@dataclass
class Launcher:
    tmp_path: Path
    hubs: HubProcs

    async def start(self, db_name: str, port: int = 0) -> HubProcess:
        db = f"sqlite+aiosqlite:///{self.tmp_path / db_name}"
        return HubProcess(await self.hubs.start(db, ttl=15, port=port))


@pytest.fixture
async def launcher(tmp_path: Path) -> AsyncIterator[Launcher]:
    async with open_hubs(tmp_path, SECRET.decode()) as hubs:
        yield Launcher(tmp_path, hubs)


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
