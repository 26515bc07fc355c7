"""Deferred nonces (``swarmget.hub.nonce_log``) and the heartbeat's own timeout.

With real ``python -m swarmget.hub`` processes: a replayed heartbeat is refused by the hub
that saw it at once and, once its nonce is flushed, by the other replica too; a replayed
registration is refused by both replicas at once (its nonce is written before the answer, as
before); a hung hub (SIGSTOP) fails a heartbeat within the heartbeat's timeout, not the
client's general one, and a ``HubPool`` moves to the next replica (a pool of one hub
waits the general timeout). The ``NonceLog`` itself on
the in-memory registry: which kinds it defers, what a flush writes and counts.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.errors import HubUnavailable, UnknownNode
from swarmget.hub.admission import RequestKind
from swarmget.hub.batched_writes import Nonce
from swarmget.hub.metrics import HubMetrics
from swarmget.hub.nonce_log import NonceLog
from swarmget.net.hub_client import HubClient, HubPool, HubSwitched, Registration
from swarmget.net.signing import json_body, signed_headers
from swarmget.testing.fakes import MemoryRegistryStore, identity_for, nid
from swarmget.testing.swarm import HubProcs, open_hubs

SECRET = b"nonce-log-test-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)
TTL = 2.0  # flushes every TTL/6
T0 = 1_000_000.0
#: Bounds of the waits below (not timing asserts: far above what they take).
PATIENCE = 20.0


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[HubProcs]:
    async with open_hubs(tmp_path, SECRET.decode()) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _start(hubs: HubProcs, db_url: str) -> str:
    return str((await hubs.start(db_url, ttl=TTL)).info["url"])


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
    return 0.0


async def _send(
    session: aiohttp.ClientSession, hub: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    async with session.post(hub + path, data=body, headers=headers) as resp:
        return resp.status, (await resp.json()).get("code")


async def test_a_replayed_heartbeat_is_refused_here_at_once_and_there_once_flushed(
    hubs: HubProcs, session: aiohttp.ClientSession, pg_url: str
) -> None:
    first, second = await _start(hubs, pg_url), await _start(hubs, pg_url)
    await HubClient(session, first, SECRET, identity_for("node-a")).register(REG)
    path = f"/v1/nodes/{nid('node-a')}/heartbeat"
    body = json_body({"stats": {}})
    headers = signed_headers(SECRET, identity_for("node-a"), "POST", path, body)
    assert await _send(session, first, path, body, headers) == (200, None)
    assert await _send(session, first, path, body, headers) == (401, "replayed")
    flushed = 'swarmget_hub_write_batch_size_count{kind="nonce_log"}'

    async def written() -> bool:
        return await _metric(session, first, flushed) >= 1

    await _until(written)  # the first hub's flush wrote the heartbeat's nonce
    assert await _send(session, second, path, body, headers) == (401, "replayed")


async def test_a_replayed_registration_is_refused_by_both_replicas_at_once(
    hubs: HubProcs, session: aiohttp.ClientSession, pg_url: str
) -> None:
    first, second = await _start(hubs, pg_url), await _start(hubs, pg_url)
    path = "/v1/nodes/register"
    body = json_body(REG.as_json(nid("node-a")))
    headers = signed_headers(SECRET, identity_for("node-a"), "POST", path, body)
    headers["Content-Type"] = "application/json"
    codes = [await _send(session, hub, path, body, headers) for hub in (first, second, first)]
    assert codes == [(200, None), (401, "replayed"), (401, "replayed")]


async def test_a_heartbeat_replayed_within_a_flush_is_counted(
    hubs: HubProcs, session: aiohttp.ClientSession, pg_url: str
) -> None:
    """Sent to both replicas at once, a heartbeat is accepted by both when neither flushed
    in between (the weakening ``swarmget.hub.nonce_log`` documents), and a flush then counts
    it as a late replay; or refused by the second when a flush came first. Either way,
    never accepted twice unseen."""
    first, second = await _start(hubs, pg_url), await _start(hubs, pg_url)
    await HubClient(session, first, SECRET, identity_for("node-a")).register(REG)
    path = f"/v1/nodes/{nid('node-a')}/heartbeat"
    body = json_body({"stats": {}})
    headers = signed_headers(SECRET, identity_for("node-a"), "POST", path, body)
    codes = await asyncio.gather(*(_send(session, h, path, body, headers) for h in (first, second)))
    if sorted(codes) == [(200, None), (200, None)]:
        name = "swarmget_hub_late_replays_total"

        async def counted() -> bool:
            return sum([await _metric(session, h, name) for h in (first, second)]) == 1

        await _until(counted)
    else:
        assert sorted(codes) == [(200, None), (401, "replayed")]


async def test_a_hung_hub_fails_a_heartbeat_within_its_own_timeout(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The client's general timeout is far longer than the heartbeat's: the heartbeat to a
    SIGSTOPped hub (the kernel still accepts) fails with the heartbeat's, and a pool moves
    on to the next hub (here one with its own registry: it asks us to register)."""
    hung = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", ttl=15)
    other = await _start(hubs, f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    urls = [str(hung.info["url"]), other]
    pool = HubPool(
        session, urls, SECRET, identity_for("node-a"), timeout=600, heartbeat_timeout=0.5
    )
    await pool.register(REG)
    hung.signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(PATIENCE):  # not the 600 s of the general timeout
            with pytest.raises(HubSwitched) as caught:
                await pool.heartbeat()
            # moved on from the hung hub; the other (its own registry) does not know us
            assert isinstance(caught.value.__cause__, UnknownNode)
            assert pool.hub_url == other
            await pool.register(REG)
            await pool.heartbeat()
    finally:
        hung.signal(signal.SIGCONT)


async def test_a_pool_of_one_hub_waits_its_general_timeout_for_a_heartbeat(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """One hub has nowhere to move to: its heartbeat gets the general timeout (here the
    short one), not the heartbeat's (here far longer)."""
    hung = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", ttl=15)
    pool = HubPool(
        session, [str(hung.info["url"])], SECRET, identity_for("node-a"), timeout=0.5,
        heartbeat_timeout=600,
    )  # fmt: skip
    await pool.register(REG)
    hung.signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(PATIENCE):  # not the 600 s of the heartbeat's timeout
            with pytest.raises(HubUnavailable):
                await pool.heartbeat()
    finally:
        hung.signal(signal.SIGCONT)


async def test_a_hung_hub_fails_a_peers_query_within_the_short_timeout(
    hubs: HubProcs, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A peers query is answered from memory too: with somewhere to move to, a hung hub
    fails it within the heartbeat's timeout and the pool asks the next hub."""
    hung = await hubs.start(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", ttl=15)
    other = await _start(hubs, f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    helper = HubClient(session, other, SECRET, identity_for("helper"))
    await helper.register(REG)
    urls = [str(hung.info["url"]), other]
    pool = HubPool(
        session, urls, SECRET, identity_for("requester"), timeout=600, heartbeat_timeout=0.5,
        requester_only=True,
    )  # fmt: skip
    hung.signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(PATIENCE):  # not the 600 s of the general timeout
            assert [p.node_id for p in await pool.peers()] == [nid("helper")]
        assert pool.hub_url == other
    finally:
        hung.signal(signal.SIGCONT)


# --- the NonceLog on the in-memory registry ----------------------------------------------------


async def test_only_heartbeats_and_peers_queries_are_deferred() -> None:
    store, metrics = MemoryRegistryStore(), HubMetrics()
    log = NonceLog(store, metrics)
    assert log.defer(RequestKind.HEARTBEAT, "a", "nonce-000000000001", T0 + 30)
    assert log.defer(RequestKind.PEERS, "a", "nonce-000000000002", T0 + 30)
    assert not log.defer(RequestKind.REGISTER, "a", "nonce-000000000003", T0 + 30)
    assert not log.defer(RequestKind.FREE, "a", "nonce-000000000004", T0 + 30)
    assert len(log) == 2
    assert await log.flush(T0) == 2
    assert len(log) == 0
    # written: the registry refuses them now, and takes the one not deferred
    assert not await store.remember_nonce("a", "nonce-000000000001", expires_at=T0 + 30, now=T0)
    assert not await store.remember_nonce("a", "nonce-000000000002", expires_at=T0 + 30, now=T0)
    assert await store.remember_nonce("a", "nonce-000000000003", expires_at=T0 + 30, now=T0)
    assert metrics.late_replays == 0


async def test_a_flush_counts_nonces_recorded_already() -> None:
    store, metrics = MemoryRegistryStore(), HubMetrics()
    await store.remember_nonce("a", "nonce-000000000001", expires_at=T0 + 30, now=T0)
    log = NonceLog(store, metrics)
    log.defer(RequestKind.HEARTBEAT, "a", "nonce-000000000001", T0 + 30)  # seen elsewhere
    log.defer(RequestKind.HEARTBEAT, "a", "nonce-000000000002", T0 + 30)
    assert await log.flush(T0) == 2
    assert metrics.late_replays == 1


class _CommitsThenWaits(MemoryRegistryStore):
    """A registry whose nonce write is done (as a database thread finishes a commit) before
    the awaiting flush learns it: a flush cancelled then put them back, written."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = True
        self.written = asyncio.Event()

    async def record_nonces(self, items: Sequence[Nonce], now: float) -> list[bool]:
        out = await super().record_nonces(items, now)
        if self.hold:
            self.written.set()
            await asyncio.Event().wait()  # until cancelled
        return out


async def test_a_flush_cancelled_after_its_write_does_not_report_replays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hub stopping cancels a flush whose write was done; the last flush writes the same
    nonces again and finds them: that is not a replay (it was reported as 500 of them)."""
    store, metrics = _CommitsThenWaits(), HubMetrics()
    log = NonceLog(store, metrics)
    log.defer(RequestKind.HEARTBEAT, "a", "nonce-000000000001", T0 + 30)
    log.defer(RequestKind.PEERS, "a", "nonce-000000000002", T0 + 30)
    flushing = asyncio.create_task(log.flush(T0))
    await asyncio.wait_for(store.written.wait(), PATIENCE)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert len(log) == 2  # put back, for the next flush
    store.hold = False
    assert await log.flush(T0) == 2
    assert metrics.late_replays == 0
    assert "replayed" not in caplog.text
    # a real replay is still one: a nonce recorded before, deferred again, flushed
    log.defer(RequestKind.HEARTBEAT, "a", "nonce-000000000001", T0 + 30)
    assert await log.flush(T0) == 1
    assert metrics.late_replays == 1


async def test_over_max_pending_nonces_are_written_at_once() -> None:
    log = NonceLog(MemoryRegistryStore(), HubMetrics(), max_pending=2)
    kept = [
        log.defer(RequestKind.HEARTBEAT, "a", f"nonce-00000000000{i}", T0 + 30) for i in range(3)
    ]
    assert kept == [True, True, False]
    await log.flush(T0)
    assert log.defer(RequestKind.HEARTBEAT, "a", "nonce-000000000009", T0 + 30)
