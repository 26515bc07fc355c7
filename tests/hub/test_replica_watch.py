"""Replica watching (``swarmget.hub.replicas``, ``swarmget.net.replica_watch``): a node
heartbeating one hub replica hears from another one as soon as its replica is gone, and
moves there at once instead of at its next heartbeat.

The hubs are real aiohttp servers on 127.0.0.1 sharing one in-memory registry (as replicas
share one database), with their counters raised every 50 ms and judged after 0.3 s. A
*hung* replica is one whose counter stops (its store's raises block), a *stopped* one had
its server shut down (it deletes its row). The processes test (SIGSTOP of a real hub on a
shared SQLite file) is in ``tests/integration/test_replica_failover.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from swarmget.core.errors import HubRejected, HubUnavailable, StorageError
from swarmget.core.replicas import ReplicaState
from swarmget.hub.admission import Admission
from swarmget.hub.app import make_hub_app
from swarmget.hub.replicas import HubReplicas
from swarmget.net.hub_client import HubClient, HubPool, Registration
from swarmget.net.membership import MembershipState, run_membership
from swarmget.net.replica_watch import watch_replicas
from swarmget.protocol.hub import replica_watch_path
from swarmget.testing.fakes import MemoryRegistryStore, identity_of, nid

SECRET = b"replica-watch-secret-0123456789"
REG = Registration(port=7500, version="0.1.0", slots=2)


class _Gated:
    """One replica's view of the shared registry whose counter raises can be frozen (a
    hung process raises nothing; the others' rows stay readable)."""

    def __init__(self, shared: MemoryRegistryStore) -> None:
        self.shared = shared
        self.open = asyncio.Event()
        self.open.set()

    def __getattr__(self, name: str) -> object:
        return getattr(self.shared, name)

    async def beat_replica(self, replica: str) -> dict[str, int]:
        await self.open.wait()
        return await self.shared.beat_replica(replica)

    async def replica_beats(self) -> dict[str, int]:
        return await self.shared.replica_beats()

    async def forget_replicas(self, gone: Iterable[str]) -> None:
        await self.shared.forget_replicas(gone)


def _held_while(open_: asyncio.Event) -> Middleware:
    """Heartbeats wait until ``open_`` is set (a hung replica)."""

    @web.middleware
    async def held(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/heartbeat"):
            await open_.wait()
        return await handler(request)

    return held


@dataclass
class Hub:
    url: str
    runner: web.AppRunner
    replicas: HubReplicas
    view: _Gated

    def hang(self) -> None:
        """Its counter stops, and its heartbeats are held unanswered (as a SIGSTOPped
        process's kernel accepts them)."""
        self.view.open.clear()

    async def stop(self) -> None:
        await self.runner.cleanup()


class Hubs:
    def __init__(self, stack: AsyncExitStack, session: aiohttp.ClientSession) -> None:
        self.stack, self.session = stack, session
        self.store = MemoryRegistryStore()

    async def start(self, *, hold: float = 30.0, admission: Admission | None = None) -> Hub:
        view = _Gated(self.store)
        replicas = HubReplicas(store=view, every=0.05, dead_after=0.3, hold=hold)  # type: ignore[arg-type]
        app = make_hub_app(
            self.store, SECRET, ttl=180.0, nonces=self.store, replicas=replicas,
            admission=admission,
        )  # fmt: skip
        app.middlewares.append(_held_while(view.open))
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return Hub(f"http://{host}:{port}", runner, replicas, view)

    def pool(self, name: str, *urls: str, heartbeat_timeout: float = 2.0) -> HubPool:
        return HubPool(
            self.session, urls, SECRET, identity_of(nid(name)), timeout=60.0,
            heartbeat_timeout=heartbeat_timeout,
        )  # fmt: skip

    def client(self, name: str, url: str) -> HubClient:
        return HubClient(self.session, url, SECRET, identity_of(nid(name)))


@pytest.fixture
async def hubs() -> AsyncIterator[Hubs]:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Hubs(stack, session)


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _read_by(hub: Hub, *others: Hub) -> None:
    """Until ``hub`` has read every other's counter (a watch before that: unknown)."""
    now = time.monotonic
    await _until(
        lambda: all(
            hub.replicas.sightings.state(o.replicas.replica_id, now()) is ReplicaState.ALIVE
            for o in others
        )
    )


async def test_answers_name_the_replica_and_a_pool_knows_what_to_watch(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    assert a.replicas.replica_id != b.replicas.replica_id
    pool = hubs.pool("node", a.url, b.url)
    assert pool.watched() is None  # not registered yet
    await pool.register(REG)
    assert pool.watched() == (0, a.replicas.replica_id)
    await pool.heartbeat()
    assert pool.watched() == (0, a.replicas.replica_id)
    alone = hubs.pool("alone", a.url)
    await alone.register(REG)
    assert alone.watched() is None  # one hub: nowhere to move to, nothing to watch


async def test_a_hung_replica_is_told_to_its_watchers(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)
    watch = asyncio.create_task(hubs.client("node", b.url).watch(a.replicas.replica_id))
    await asyncio.sleep(0.8)  # several judgements: a live replica is not news
    assert not watch.done()
    a.hang()
    news = await asyncio.wait_for(watch, 10)
    assert (news.replica, news.state) == (a.replicas.replica_id, ReplicaState.GONE)
    # a watch asked after the news hears it at once
    again = await asyncio.wait_for(hubs.client("n2", b.url).watch(a.replicas.replica_id), 2)
    assert again.state is ReplicaState.GONE


async def test_a_stopped_replica_is_told_at_once(hubs: Hubs) -> None:
    """A replica that stops cleanly deletes its row: no wait for its counter to stand."""
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)
    watch = asyncio.create_task(hubs.client("node", b.url).watch(a.replicas.replica_id))
    await asyncio.sleep(0.1)
    await a.stop()
    assert a.replicas.replica_id not in await hubs.store.replica_beats()
    news = await asyncio.wait_for(watch, 10)
    assert news.state is ReplicaState.GONE


async def test_a_watch_is_answered_alive_after_the_hold(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start(hold=0.4)
    await _read_by(b, a)
    started = time.monotonic()
    news = await hubs.client("node", b.url).watch(a.replicas.replica_id)
    assert news.state is ReplicaState.ALIVE
    assert time.monotonic() - started >= 0.35  # held, not answered at once


async def test_unknown_replicas_self_watches_and_strangers(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)
    client = hubs.client("node", b.url)
    news = await asyncio.wait_for(client.watch("0123456789abcdef"), 2)
    assert news.state is ReplicaState.UNKNOWN  # never seen: not the same as gone
    with pytest.raises(HubRejected, match="cannot watch itself"):
        await client.watch(b.replicas.replica_id)
    async with hubs.session.get(b.url + replica_watch_path(a.replicas.replica_id)) as resp:
        assert resp.status == 401  # unsigned
    with pytest.raises(HubRejected):
        await client.watch("../../nodes")  # not a replica id: no such route
    stranger = HubClient(
        hubs.session, b.url, b"another-swarm-secret-0123456789", identity_of(nid("x"))
    )
    with pytest.raises(HubRejected):
        await stranger.watch(a.replicas.replica_id)


async def test_a_stopping_hub_answers_its_held_watches_at_once(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)
    watch = asyncio.create_task(hubs.client("node", b.url).watch(a.replicas.replica_id))
    await asyncio.sleep(0.2)
    stopping = asyncio.create_task(b.stop())
    news = await asyncio.wait_for(watch, 5)
    assert news.state is ReplicaState.ALIVE  # ask another replica
    await stopping


async def test_held_watches_are_not_load(hubs: Hubs) -> None:
    """A hub that counted held watches as requests in flight would shed everything once it
    holds a few: with room for 2 in flight, 4 held watches leave heartbeats and peer
    queries served."""
    a = await hubs.start()
    b = await hubs.start(admission=Admission(ttl=180.0, max_in_flight=2))
    await _read_by(b, a)
    watches = [
        asyncio.create_task(hubs.client(f"w{i}", b.url).watch(a.replicas.replica_id))
        for i in range(4)
    ]
    await asyncio.sleep(0.3)
    pool = hubs.pool("node", b.url)
    await pool.register(REG)
    await pool.heartbeat()
    assert await pool.peers() == []
    assert not any(w.done() for w in watches)
    for w in watches:
        w.cancel()
    await asyncio.gather(*watches, return_exceptions=True)


async def test_a_node_moves_at_once_when_its_replica_hangs(hubs: Hubs) -> None:
    """The node heartbeats every 60 s: without the watch it would notice A only then."""
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)
    pool = hubs.pool("node", a.url, b.url)
    states: list[MembershipState] = []
    moved = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_membership(pool, REG, dict, interval=60.0, on_state=states.append, wake=moved)
        ),
        asyncio.create_task(watch_replicas(pool, moved.set)),
    ]
    try:
        await _until(lambda: bool(states) and states[-1].registered is not None)
        assert states[-1].hub_url == a.url
        await asyncio.sleep(0.3)  # the watch is held on B
        a.hang()
        await _until(lambda: states[-1].hub_url == b.url and states[-1].error is None)
        assert pool.watched() == (1, b.replicas.replica_id)
        assert len(states) == 2  # one heartbeat at B moved it: no registration, no failure
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Latest(random.Random):
    """Every random delay is its upper bound (the latest a node may move)."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_the_teller_is_used_at_once_and_only_the_wake_waits_its_turn(hubs: Hubs) -> None:
    """Told its replica hangs, a node makes the teller its hub at once: a heartbeat that
    falls due during its turn in the spread goes there, not to the hung replica (where it
    would wait out its timeout), and the node is then not woken for a second one; a node
    whose heartbeat did not fall due is woken at the end of its turn."""
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)
    due, idle = hubs.pool("due", a.url, b.url), hubs.pool("idle", a.url, b.url)
    for pool in (due, idle):
        await pool.register(REG)
    woken: dict[str, float] = {}
    tasks = [
        asyncio.create_task(
            watch_replicas(
                p, lambda n=n: woken.setdefault(n, time.monotonic()), spread=1.0, rng=_Latest()
            )
        )
        for n, p in (("due", due), ("idle", idle))
    ]
    try:
        await asyncio.sleep(0.3)  # the watches are held on B
        hung = time.monotonic()
        a.hang()
        await _until(lambda: due.hub_url == b.url and idle.hub_url == b.url)
        assert not woken  # their moves wait their turn ...
        started = time.monotonic()
        await due.heartbeat()  # ... but one due now goes to B, at once
        assert time.monotonic() - started < 1.0  # (at A it would wait its 2 s timeout)
        assert due.watched() == (1, b.replicas.replica_id)
        await _until(lambda: "idle" in woken)
        assert woken["idle"] - hung >= 1.0  # at the end of its turn (1 s after the news)
        await asyncio.sleep(0.2)
        assert "due" not in woken  # it moved already: no second heartbeat
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_hub_that_cannot_watch_is_not_asked_in_a_loop(hubs: Hubs) -> None:
    """Hubs of another registry answer "unknown" at once: the node gives up on them for a
    while instead of asking again and again."""
    a = await hubs.start()
    other = Hubs(hubs.stack, hubs.session)  # another registry
    c = await other.start()
    pool = hubs.pool("node", a.url, c.url)
    await pool.register(REG)
    asked = 0
    real_watch = pool.clients[1].watch

    async def counted(replica: str) -> object:
        nonlocal asked
        asked += 1
        return await real_watch(replica)

    pool.clients[1].watch = counted  # type: ignore[method-assign]
    task = asyncio.create_task(watch_replicas(pool, lambda: None))
    try:
        await asyncio.sleep(1.5)
        assert asked == 1
        assert pool.hub_url == a.url
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _metric(text: str, name: str) -> float:
    [value] = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return value


async def test_metrics_show_replicas_watches_and_departures(hubs: Hubs) -> None:
    a, b = await hubs.start(), await hubs.start()
    await _read_by(b, a)

    async def scrape() -> str:
        async with hubs.session.get(b.url + "/metrics") as resp:
            return await resp.text()

    text = await scrape()
    assert _metric(text, "swarmget_hub_replicas_alive") == 2
    assert _metric(text, "swarmget_hub_replica_watches") == 0
    watch = asyncio.create_task(hubs.client("node", b.url).watch(a.replicas.replica_id))
    await _until(lambda: b.replicas.counts()[1] == 1)
    assert _metric(await scrape(), "swarmget_hub_replica_watches") == 1
    a.hang()
    await asyncio.wait_for(watch, 10)
    text = await scrape()
    assert _metric(text, "swarmget_hub_replicas_alive") == 1
    assert _metric(text, "swarmget_hub_replica_watches") == 0
    assert _metric(text, "swarmget_hub_replicas_gone_total") == 1


class _Away(MemoryRegistryStore):
    """A view of ``shared`` whose database can be away (every call: ``StorageError``)."""

    def __init__(self, shared: MemoryRegistryStore) -> None:
        super().__init__()
        self.shared, self.away = shared, False

    async def beat_replica(self, replica: str) -> dict[str, int]:
        if self.away:
            raise StorageError("database away")
        return await self.shared.beat_replica(replica)

    async def replica_beats(self) -> dict[str, int]:
        if self.away:
            raise StorageError("database away")
        return await self.shared.replica_beats()


async def test_a_database_outage_condemns_nobody() -> None:
    """The database slows down (a's raises hang first), then is away for 10 s: no replica
    raises its counter meanwhile. The one that reads first afterwards must not call the
    others gone for the spell."""
    shared, now = MemoryRegistryStore(), [0.0]
    a = HubReplicas(store=shared, clock=lambda: now[0])
    view = _Away(shared)
    b = HubReplicas(store=view, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(4):
        await a.tick()
        await b.tick()
        now[0] += 0.5
    for _ in range(3):  # the database slows down: a's raises hang first, b still reads
        await b.tick()
        now[0] += 0.5
    view.away = True
    for _ in range(20):
        await b.tick()  # (a cannot write either: it does not tick)
        now[0] += 0.5
    view.away = False
    for _ in range(3):  # b reads first, then a raises again
        await b.tick()
        assert b.sightings.state(a.replica_id, now[0]) is ReplicaState.ALIVE
        await a.tick()
        now[0] += 0.5
    assert b.counts() == (2, 0, 0)
    # and a replica that does stop is still found: 2 s of reads after the last raise
    for _ in range(6):
        await b.tick()
        now[0] += 0.5
    assert b.sightings.state(a.replica_id, now[0]) is ReplicaState.GONE
    assert b.counts()[2] == 1


async def test_a_hostile_hub_s_replica_answers_are_refused_not_believed(hubs: Hubs) -> None:
    """A "hub" naming a replica id that is not one, or answering a watch with a state that
    does not exist, is unavailable to the node (its answers are not what the API
    promises): nothing is parsed into a path, and the watch loop goes on."""

    async def beat(_request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "ttl": 15, "heartbeat_interval": 5, "replica": "../x"}
        )

    async def watch(_request: web.Request) -> web.Response:
        return web.json_response({"replica": "0123456789abcdef", "state": "dead"})

    app = web.Application()
    app.router.add_post("/v1/nodes/{node_id}/heartbeat", beat)
    app.router.add_get("/v1/replicas/{replica}/watch", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    hubs.stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    client = hubs.client("node", f"http://{host}:{port}")
    with pytest.raises(HubUnavailable, match="not what its API promises"):
        await client.heartbeat()
    assert client.replica is None
    with pytest.raises(HubUnavailable, match="not what its API promises"):
        await client.watch("0123456789abcdef")
