"""A signed load generator for one hub process (issue #17): N nodes, real HTTP, real hub.

It starts ``python -m swarmget.hub`` on 127.0.0.1 with a SQLite file (or a PostgreSQL URL:
``--db``), then runs N simulated nodes in this process. Each node signs its requests like a
real one (``swarmget.net.signing``), registers, heartbeats at the interval the hub asks for
(the default TTL/3), and asks for its peers about once a minute (random phase). Nodes come
from 127.X.Y.Z in groups of ``--group-size`` (one /16 per group, at most 7 nodes per address:
the hub allows 8 per address), so the hub groups them by address as on a real LAN.
``--hubs K`` starts K replicas on one (PostgreSQL) database and each node uses the one its
id's hash picks, as a node with ``spread_hubs`` does; hub CPU is then their sum.

Session keys (issue #17): each node sends an ephemeral X25519 key with its registration and
signs its heartbeats and peers queries with the session key the hub agrees
(``swarmget.core.session_auth``), as ``HubClient`` does; a 401 to a session-signed call is
sent again signed with the node key, then the node re-keys (counted: ``rekeyed``). A
heartbeat signed with the node key (after a 401, or the first to a replica the node moved
to) asks for a session in its body, as ``HubClient`` does since 2026-12-07; a hub that
answers none (older) is asked with ``POST /v1/nodes/{id}/session`` (before 2026-12-07 a node
that moved never re-keyed here: it signed with its node key until a 401).
``--no-session``: every request signed with the node key (Ed25519), as before. Nodes keep
idle hub connections open ``--keepalive`` seconds (a node's ``HUB_KEEPALIVE``, 60; 15 before
2026-12-06, aiohttp's default).

What a node does with each answer is what ``swarmget.net.hub_client`` does: 2xx is fine; 404
``unknown_node`` → register again (counted: ``reregistered``); 503/429 with Retry-After →
wait that long plus up to half of it (counted: ``shed``); anything else, or no answer within
``--timeout`` (``--beat-timeout`` for heartbeats and peers: the client's defaults) → an ``error``,
then 1-5 s later the next heartbeat (``--old-client``: a registration, as the client before
issue #17 did); with several replicas, no answer or a 5xx without Retry-After moves the node
to the next replica, which it heartbeats at once (registering on a 404), as ``HubPool`` does.
``--hub-cpu F`` gives every hub process F of one core (a cgroup of its own:
``bench/cpu_budget.py``), so that what a second replica adds shows on a machine without a
core per replica; the run then reports how often each hit its budget (``throttled``). With
PostgreSQL the database server's CPU (all its processes) is reported too (``db_cpu``).
``--fault kill|stop`` (with ``--hubs 2+``) SIGKILLs or SIGSTOPs the first replica
``--fault-after`` seconds into the measuring and reports ``failover_s``: per node that was
registered there, the seconds until another replica answered it (p50/p90/max). With
several replicas each node also holds a replica watch (``swarmget.hub.replicas``) on the
replica after its own, as ``swarmget.net.replica_watch`` does: told that its replica is
gone, it makes the one that told it its hub at once and heartbeats it after a random
0-``--move-spread`` seconds (``--no-watch``: nodes notice only at their next heartbeat,
as before 2026-12-07; ``watches`` counts the answers while measuring).

After ``--ramp`` seconds of staggered registrations it measures for ``--duration`` seconds:
heartbeat and peers latency p50/p99/max, errors, re-registrations, sheds, the hub's CPU
(user+system seconds per wall second, from /proc), its CPU per answered request
(``hub_cpu_us_per_answer``: steadier than latency on a shared machine) and RSS, and the
generator's own CPU (at
1.0 it is saturated itself, and its latencies include its own event loop's lag). One JSON
line on stdout per run; ``--src DIR`` runs the hub from another checkout's ``src`` (a
before/after comparison on the same machine). Bounded: the run ends after ramp + duration
(+ a few seconds to stop).

    PYTHONPATH=src .venv/bin/python bench/hub_load.py --nodes 2000 --duration 60
    PYTHONPATH=src .venv/bin/python bench/hub_load.py --nodes 2000 --db "$(cat /tmp/pgurl)"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from common import lag_histogram, lag_quantile
from cpu_budget import (
    BudgetUnavailable,
    CpuBudget,
    Throttling,
    cpu_budget,
    family_cpu_seconds,
    process_cpu_seconds,
)
from sqlalchemy.ext.asyncio import create_async_engine

from swarmget.core.identity import NodeIdentity
from swarmget.core.session_auth import (
    EphemeralKey,
    SessionKey,
    decode_public_key,
    session_signed_headers,
)
from swarmget.net.hub_client import DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_TIMEOUT, HUB_KEEPALIVE
from swarmget.net.looplag import LoopLagProbe
from swarmget.net.replica_watch import MOVE_SPREAD
from swarmget.net.signing import json_body, new_nonce, signed_headers

SECRET = b"hub-load-secret-0123456789abcdef"
PER_ADDRESS = 7
PEERS_EVERY = 60.0
HUB_START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


@dataclass
class Stats:
    """What the nodes saw while measuring (``measuring`` False during the ramp)."""

    measuring: bool = False
    heartbeat: list[float] = field(default_factory=list)
    peers: list[float] = field(default_factory=list)
    peers_listed: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    reregistered: int = 0
    rekeyed: int = 0
    shed: dict[str, int] = field(default_factory=dict)
    intervals: list[float] = field(default_factory=list)
    answers: int = 0  # requests answered (any status) while measuring
    watches: dict[str, int] = field(default_factory=dict)  # watch answers by state
    #: --fault: when the fault came (monotonic), and per node on the faulted hub its
    #: seconds from then to its registration at another replica (None: not yet)
    fault_at: float | None = None
    moved: dict[int, float | None] = field(default_factory=dict)
    #: ... per such node, when it first needed the hub after the fault (the start of its
    #: first request that failed: no answer, or a 5xx), and its seconds from then to the
    #: other replica's answer: how long the node was without a hub while it wanted one
    tried: dict[int, float] = field(default_factory=dict)
    moved_after_try: dict[int, float] = field(default_factory=dict)

    def error(self, what: str) -> None:
        if self.measuring:
            self.errors[what] = self.errors.get(what, 0) + 1

    def answered(self, kind: str, a: Answer) -> bool:
        """Count a non-2xx answer (503/429 with Retry-After: shed; else an error)."""
        if a.status < 300:
            return True
        if a.status in (429, 503) and a.retry_after is not None:
            if self.measuring:
                self.shed[kind] = self.shed.get(kind, 0) + 1
        elif a.status != 404:
            self.error(f"{kind}: {a.status} {a.body.get('code')}")
        return False


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: float | None


class Node:
    """One simulated node: its identity, its session (shared by its address) and loop."""

    def __init__(self, index: int, session: aiohttp.ClientSession, hubs: list[str]) -> None:
        seed = hashlib.sha256(b"hub-load\n%d" % index).digest()
        self.index = index
        self.identity = NodeIdentity.from_seed(seed)
        self.session = session
        self.registered = False
        #: the session key agreed with the current hub (None: the node key signs)
        self.keyed: SessionKey | None = None
        self.hubs = hubs
        #: the replica it uses: the one its id's hash picks (``HubPool(spread=True)``)
        digest = hashlib.sha256(self.identity.node_id.encode()).digest()
        self.current = int.from_bytes(digest[:8], "big") % len(hubs)
        self.asked_at = 0.0  # when its latest request to a hub started (monotonic)
        self.asked = self.current  # the replica its latest request went to
        #: the replica id its hub's latest register or heartbeat answer named
        self.replica: str | None = None
        #: set by the watch (our replica is gone): the node's wait ends at once
        self.wake = asyncio.Event()
        #: whether it agrees session keys (``--no-session``: never)
        self.sessions = True

    async def nap(self, seconds: float) -> None:
        """Wait ``seconds``, or until the watch wakes us."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        self.wake.clear()

    @property
    def hub(self) -> str:
        return self.hubs[self.current]

    def move_on(self) -> bool:
        """After an unavailable hub (no answer, 5xx without Retry-After): the next replica,
        unless something else moved us already (as ``HubPool._move_on``); False with one hub."""
        if len(self.hubs) == 1:
            return False
        if self.current == self.asked:
            self.current = (self.current + 1) % len(self.hubs)
            self.keyed = None
        return True

    def agree(self, mine: EphemeralKey, grant: dict[str, Any] | None) -> None:
        """The session from the hub's grant (None: the hub keyed none)."""
        hub_key = decode_public_key(str((grant or {}).get("hub_key", "")))
        if grant is None or hub_key is None:
            self.keyed = None
            return
        node_id, session_id = self.identity.node_id, str(grant["session_id"])
        self.keyed = mine.agree(
            hub_key, node_id=node_id, session_id=session_id, node_public=mine.public
        )

    async def rekey(self, hub: str, limit: float, stats: Stats) -> None:
        """A new session with ``hub`` after it refused ours (best effort)."""
        mine = EphemeralKey()
        path = f"/v1/nodes/{self.identity.node_id}/session"
        a = await timed(
            stats, "session", self.call(hub, "POST", path, {"session_key": mine.public_b64}, limit)
        )
        if a is not None and a.status == 200:
            self.agree(mine, a.body)
            stats.rekeyed += stats.measuring

    async def quick(
        self,
        stats: Stats,
        kind: str,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        limit: float,
    ) -> Answer | None:
        """A heartbeat or peers query: with the session when the node holds one; a 401 to
        it: again with the node key at once, then a new session (as ``HubClient``). A
        heartbeat signed with the node key asks for a session in its body (a node that moved
        here); a hub that answers none (older) is asked with the re-key route after it."""
        hub, session = self.hub, self.keyed
        if session is not None:
            call = self.call(hub, method, path, payload, limit, session=session)
            a = await timed(stats, kind, call)
            if a is None or a.status != 401:
                return a
            self.keyed = None
        mine = EphemeralKey() if self.sessions and kind == "heartbeat" else None
        if mine is not None:
            payload = (payload or {}) | {"session_key": mine.public_b64}
        a = await timed(stats, kind, self.call(hub, method, path, payload, limit))
        if a is None or a.status >= 300 or not self.sessions:
            return a
        if mine is not None and isinstance(a.body.get("session"), dict):
            self.agree(mine, a.body["session"])
            stats.rekeyed += stats.measuring
        elif session is not None or mine is not None:
            await self.rekey(hub, limit, stats)
        return a

    async def call(
        self,
        hub: str,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        limit: float,
        *,
        session: SessionKey | None = None,
    ) -> Answer:
        self.asked_at = time.monotonic()
        if hub in self.hubs and not path.startswith("/v1/replicas/"):
            self.asked = self.hubs.index(hub)
        body = json_body(payload) if payload is not None else b""
        if session is None:
            headers = signed_headers(SECRET, self.identity, method, hub + path, body)
        else:
            headers = session_signed_headers(
                SECRET,
                session,
                node_id=self.identity.node_id,
                method=method,
                path=path,
                body=body,
                now=time.time(),
                nonce=new_nonce(),
            )
        if payload is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            hub + path,
            data=body or None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=limit),
        ) as response:
            raw = await response.read()
            wait = response.headers.get("Retry-After")
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {}
            return Answer(response.status, parsed, float(wait) if wait else None)


def address_of(index: int, group_size: int) -> str:
    """Node ``index``'s source address: a /16 per group (the hub's default grouping),
    ``PER_ADDRESS`` nodes per address."""
    group, member = divmod(index, group_size)
    return f"127.{1 + group}.{member // PER_ADDRESS // 250}.{1 + member // PER_ADDRESS % 250}"


async def timed(stats: Stats, kind: str, coro: Any) -> Answer | None:
    """Await ``coro`` (a ``Node.call``), record its latency under ``kind``; None on failure."""
    started = time.perf_counter()
    try:
        answer: Answer = await coro
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        stats.error(f"{kind}: {type(exc).__name__}")
        return None
    stats.answers += stats.measuring
    if stats.measuring and kind in ("heartbeat", "peers"):
        getattr(stats, kind).append(time.perf_counter() - started)
    return answer


async def run_node(node: Node, args: argparse.Namespace, stats: Stats) -> None:
    """Register, heartbeat and ask for peers until cancelled (see module doc)."""
    reg = {"node_id": node.identity.node_id, "port": 7500, "version": "0.1.0", "slots": 4}
    next_peers = time.monotonic() + random.uniform(0, PEERS_EVERY)
    while True:
        if not node.registered:
            mine = None if args.no_session else EphemeralKey()
            body = reg | ({"session_key": mine.public_b64} if mine else {})
            call = node.call(node.hub, "POST", "/v1/nodes/register", body, args.timeout)
            a = await timed(stats, "register", call)
            if a is not None and stats.answered("register", a):
                node.registered = True
                node.replica = a.body.get("replica")
                if mine is not None:
                    node.agree(mine, a.body.get("session"))
                moved(node, stats)
                await node.nap(float(a.body["heartbeat_interval"]))
            elif unavailable(a) and fail_over(node, stats):
                continue  # the next replica at once, as HubPool.register does
            else:
                await node.nap(backoff(a))
            continue
        if time.monotonic() >= next_peers:
            next_peers += PEERS_EVERY
            a = await node.quick(stats, "peers", "GET", "/v1/peers", None, args.beat_timeout)
            if a is not None and stats.answered("peers", a) and stats.measuring:
                stats.peers_listed.append(len(a.body.get("peers", [])))
            elif unavailable(a) and fail_over(node, stats):
                continue  # the heartbeat goes to the next replica at once
        path = f"/v1/nodes/{node.identity.node_id}/heartbeat"
        beat = {"stats": {"slots": 4}}
        a = await node.quick(stats, "heartbeat", "POST", path, beat, args.beat_timeout)
        if a is not None and a.status < 300:
            node.replica = a.body.get("replica")
            moved(node, stats)
        await node.nap(after_heartbeat(node, a, stats, old=args.old_client))


async def run_watch(node: Node, stats: Stats, spread: float) -> None:
    """Hold a replica watch on the replica after ours; told ours is gone, make the teller
    our hub and wake the node (``swarmget.net.replica_watch``, simplified: one asker; a
    failed watch is tried again after 1, 2, 4 ... 30 s with jitter). Watch answers and
    failures are counted in ``watches``, not in the errors."""
    failures = 0
    while True:
        if not node.registered or node.replica is None:
            await asyncio.sleep(1.0)
            continue
        at, watched = node.current, node.replica
        asker = (at + 1) % len(node.hubs)
        path = f"/v1/replicas/{watched}/watch"
        try:
            a: Answer | None = await node.call(node.hubs[asker], "GET", path, None, 75.0)
        except (TimeoutError, aiohttp.ClientError, OSError):
            a = None
        state = str(a.body.get("state")) if a is not None and a.status == 200 else "failed"
        if stats.measuring:
            stats.watches[state] = stats.watches.get(state, 0) + 1
        failures = failures + 1 if state == "failed" else 0
        if state == "gone" and (node.current, node.replica) == (at, watched):
            # the teller is our hub now (a heartbeat due meanwhile goes there); which
            # replica that is, its next answer says; the node is woken after its turn
            node.current, node.keyed, node.replica = asker, None, None
            await asyncio.sleep(random.uniform(0.0, spread))  # (``MOVE_SPREAD``)
            if node.current == asker and node.replica is None:  # (not moved meanwhile)
                node.wake.set()
        elif state == "failed":
            await asyncio.sleep(min(30.0, 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0))
        elif state not in ("alive", "gone"):
            await asyncio.sleep(60.0)


def moved(node: Node, stats: Stats) -> None:
    """After an answer: a node of the faulted replica answered by another one has moved."""
    if node.current != 0 and stats.fault_at is not None and node.index in stats.moved:
        if stats.moved[node.index] is None:
            now = time.monotonic()
            stats.moved[node.index] = now - stats.fault_at
            if node.index in stats.tried:
                stats.moved_after_try[node.index] = now - stats.tried[node.index]


def fail_over(node: Node, stats: Stats) -> bool:
    """The hub did not answer ``node``: the next replica (``Node.move_on``); after the
    fault, a node of the faulted replica notes when it first wanted a hub and had none."""
    if stats.fault_at is not None and node.index in stats.moved and node.index not in stats.tried:
        stats.tried[node.index] = max(node.asked_at, stats.fault_at)
    return node.move_on()


def unavailable(a: Answer | None) -> bool:
    """What makes ``HubPool`` move on: no answer, or a 5xx without Retry-After."""
    return a is None or (a.status >= 500 and a.retry_after is None)


def backoff(a: Answer | None) -> float:
    """After a failure: the hub's Retry-After plus up to half of it, else 1-5 s."""
    if a is not None and a.retry_after is not None:
        return a.retry_after * random.uniform(1.0, 1.5)
    return random.uniform(1, 5)


def after_heartbeat(node: Node, a: Answer | None, stats: Stats, *, old: bool) -> float:
    """What a node does with a heartbeat's answer (``old``: as the client of commit
    4925e3b did, registering again after any failure); the seconds to the next one."""
    if a is not None and stats.answered("heartbeat", a):
        given = float(a.body["heartbeat_interval"])
        if stats.measuring:
            stats.intervals.append(given)
        return given * random.uniform(0.95, 1.05)
    if a is not None and a.status == 404:
        stats.reregistered += stats.measuring
        node.registered = False
        return 0.0
    if unavailable(a) and fail_over(node, stats):
        return 0.0  # the next replica at once, a heartbeat (404 there: register), as HubPool
    if old:
        node.registered = False
    return backoff(a)


# --- the hub process ----------------------------------------------------------------------------


@contextlib.contextmanager
def hub_process(
    db: str,
    src: str | None,
    work: Path,
    extra: list[str],
    profile: str | None = None,
    budget: CpuBudget | None = None,
) -> Iterator[tuple[str, int]]:
    """A hub on 127.0.0.1 (any port): (url, pid); stopped (SIGTERM, then SIGKILL) on exit.
    With ``budget`` the process runs within it from its first instructions' next tick."""
    secret = work / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
    cmd += ["-m", "swarmget.hub", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--db", db, "--secret-file", str(secret), "--connections-per-address", "64", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        if budget is not None:
            budget.add(proc.pid)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise SystemExit(f"the hub did not start: {cmd}")
        yield json.loads(line)["url"], proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # --fault stop
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "n": len(ordered),
        "p50": round(pick(0.50) * scale, 1),
        "p99": round(pick(0.99) * scale, 1),
        "max": round(ordered[-1] * scale, 1),
    }


@contextlib.asynccontextmanager
async def open_sessions(
    nodes: int, group_size: int, keepalive: float = HUB_KEEPALIVE, *, watching: bool = False
) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """One client session per source address; ``watching``: room for every node's held
    watch besides its calls."""
    sessions: dict[str, aiohttp.ClientSession] = {}
    try:
        for index in range(nodes):
            ip = address_of(index, group_size)
            if ip not in sessions:
                connector = aiohttp.TCPConnector(
                    local_addr=(ip, 0),
                    limit=PER_ADDRESS * (2 if watching else 1) + 2,
                    keepalive_timeout=keepalive,
                )
                sessions[ip] = aiohttp.ClientSession(connector=connector)
        yield sessions
    finally:
        for session in sessions.values():
            await session.close()


async def fresh_pg(url: str) -> None:
    """Empty the hub's tables on a PostgreSQL URL (a run starts from an empty registry)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("hub_nodes", "hub_nonces", "hub_replicas"):
                await conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        await engine.dispose()


async def write_means(hub: str) -> dict[str, dict[str, float]]:
    """The hub's write histograms (``/metrics``, whole run): per kind, how many and the
    mean batch size, wait (ms) and transaction time (ms)."""
    async with aiohttp.ClientSession() as session, session.get(f"{hub}/metrics") as response:
        text = await response.text()
    sums: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("swarmget_hub_write_") or "_bucket" in line:
            continue
        name, value = line.rsplit(" ", 1)
        metric, _, label = name.partition('{kind="')
        what, _, stat = metric.removeprefix("swarmget_hub_write_").rpartition("_")
        sums[label.rstrip('"}'), what, stat] = float(value)
    out: dict[str, dict[str, float]] = {}
    for (kind, what, stat), value in sums.items():
        count = sums.get((kind, what, "count"), 0.0)
        if stat != "sum" or not count:
            continue
        scale = 1.0 if what == "batch_size" else 1000.0
        out.setdefault(kind, {})[f"{what}_n"] = count
        out[kind][f"{what}_mean"] = round(value / count * scale, 2)
    return out


async def lag_buckets(hub: str) -> dict[float, float]:
    """The hub's event-loop lag histogram (cumulative counts by bucket bound), when it runs
    a probe (``SWARMGET_LOOP_LAG_PROBE`` in its environment); empty otherwise."""
    async with aiohttp.ClientSession() as session, session.get(f"{hub}/metrics") as response:
        return lag_histogram(await response.text())[0]


def lag_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, Any] | None:
    """p50/p99 (bucket upper bounds, ms) and the largest bucket reached, between two reads
    of a lag histogram; None without a probe."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if not total:
        return None

    def bound(q: float) -> float | None:
        b = lag_quantile(before, after, q)
        return round(b * 1000, 1) if math.isfinite(b) else None

    return {"n": int(total), "p50_ms": bound(0.5), "p99_ms": bound(0.99), "max_ms": bound(1.0)}


async def inject_fault(args: argparse.Namespace, stats: Stats, nodes: list[Node], pid: int) -> None:
    """``--fault``: after ``--fault-after`` seconds of measuring, SIGKILL or SIGSTOP the
    first replica; its registered nodes are then watched until they register elsewhere."""
    await asyncio.sleep(args.fault_after)
    stats.moved = {n.index: None for n in nodes if n.current == 0 and n.registered}
    stats.fault_at = time.monotonic()
    os.kill(pid, signal.SIGKILL if args.fault == "kill" else signal.SIGSTOP)


def failover(stats: Stats) -> dict[str, Any]:
    """How the faulted replica's nodes moved: how many, seconds p50/p90/max from the fault
    to another replica's answer, and (``from_first_try``) from the start of the node's first
    request that went unanswered to that answer."""

    def spread(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
        return {"p50": pick(0.5), "p90": pick(0.9), "max": round(ordered[-1], 2)} if ordered else {}

    seconds = [t for t in stats.moved.values() if t is not None]
    out: dict[str, Any] = {"nodes": len(stats.moved), "moved": len(seconds)} | spread(seconds)
    tries = list(stats.moved_after_try.values())
    return out | {"from_first_try": {"n": len(tries)} | spread(tries)}


def throttled(before: list[Throttling], after: list[Throttling]) -> dict[str, Any]:
    """``--hub-cpu``: per replica, the share of periods it hit its budget in, and the
    seconds it waited for the next (while measuring)."""
    return {
        "share": [
            round((b.throttled - a.throttled) / max(b.periods - a.periods, 1), 3)
            for a, b in zip(before, after, strict=True)
        ],
        "waited_s": [
            round(b.throttled_s - a.throttled_s, 2) for a, b in zip(before, after, strict=True)
        ],
    }


async def measure(
    args: argparse.Namespace, hubs: list[str], pids: list[int], budgets: list[CpuBudget]
) -> dict[str, Any]:
    stats = Stats()
    watching = len(hubs) > 1 and not args.no_watch
    async with open_sessions(
        args.nodes, args.group_size, args.keepalive, watching=watching
    ) as sessions:
        nodes = [Node(i, sessions[address_of(i, args.group_size)], hubs) for i in range(args.nodes)]
        for node in nodes:
            node.sessions = not args.no_session
        async with asyncio.TaskGroup() as tasks:
            running = []
            for index, node in enumerate(nodes):
                running.append(tasks.create_task(run_node(node, args, stats)))
                if watching:
                    running.append(tasks.create_task(run_watch(node, stats, args.move_spread)))
                # ten nodes per step: the whole ramp is ``--ramp`` seconds (before 2026-12-06
                # this slept ramp / nodes per ten nodes: the ramp took a tenth of --ramp)
                await asyncio.sleep(args.ramp * 10 / args.nodes if index % 10 == 9 else 0)
            await asyncio.sleep(5.0)
            # the generator's own garbage collections (up to ~0.3 s each, with 5,000 nodes'
            # sessions in its heap) would stall its loop and be counted as the hub's latency:
            # none while measuring (bounded: ``--duration`` seconds of garbage)
            gc.collect()
            gc.freeze()
            gc.disable()
            stats.measuring = True
            if args.fault:
                running.append(tasks.create_task(inject_fault(args, stats, nodes, pids[0])))
            cpu0, wall0, own0 = (
                [process_cpu_seconds(p) for p in pids],
                time.monotonic(),
                time.process_time(),
            )
            on_pg = args.db.startswith("postgresql")
            db0, thr0 = family_cpu_seconds("postgres"), [b.throttling() for b in budgets]
            # the hubs' own loop lag (when they run a probe: SWARMGET_LOOP_LAG_PROBE), and
            # ours: a pause that only the generator had is not the hub's latency
            lag0 = [await lag_buckets(hub) for hub in hubs]
            own_probe = LoopLagProbe(0.01)
            own_lag = tasks.create_task(own_probe.run())
            await asyncio.sleep(args.duration)
            own_lag.cancel()
            alive = pids[1:] if args.fault else pids
            cpu1, wall1, own1 = (
                [
                    process_cpu_seconds(p) if p in alive else c
                    for p, c in zip(pids, cpu0, strict=True)
                ],
                time.monotonic(),
                time.process_time(),
            )
            db1, thr1 = family_cpu_seconds("postgres"), [b.throttling() for b in budgets]
            stats.measuring = False
            gc.enable()
            gc.unfreeze()
            rss = [rss_mib(p) for p in alive]
            live_hub = hubs[1] if args.fault else hubs[0]
            health = await nodes[0].call(live_hub, "GET", "/v1/health", None, 30.0)
            writes = [await write_means(hub) for hub in (hubs[1:] if args.fault else hubs)]
            lag1 = [await lag_buckets(hub) if hub in (hubs[1:] if args.fault else hubs) else {}
                    for hub in hubs]  # fmt: skip
            for task in running:
                task.cancel()
    wall = wall1 - wall0
    hub_cpu = sum(cpu1) - sum(cpu0)
    return {
        "nodes": args.nodes,
        "db": "postgresql" if args.db.startswith("postgresql") else "sqlite",
        "heartbeat_ms": percentiles(stats.heartbeat),
        "peers_ms": percentiles(stats.peers),
        "peers_listed_max": max(stats.peers_listed, default=0),
        "errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "reregistered": stats.reregistered,
        "rekeyed": stats.rekeyed,
        "sessions": not args.no_session,
        "keepalive_s": args.keepalive,
        "shed": stats.shed,
        "heartbeat_interval_max": max(stats.intervals, default=None),
        "hubs": len(hubs),
        "hub_cpu": round(hub_cpu / wall, 2),
        "hub_cpu_each": [round((b - a) / wall, 2) for a, b in zip(cpu0, cpu1, strict=True)],
        "answers_per_s": round(stats.answers / wall, 1),
        "watching": watching,
        "move_spread_s": args.move_spread if watching else None,
        "watches": stats.watches,
        "hub_cpu_us_per_answer": round(hub_cpu / max(stats.answers, 1) * 1e6),
        "hub_rss_mib": round(max(rss), 1),
        "loadgen_cpu": round((own1 - own0) / wall, 2),
        "db_cpu": round((db1 - db0) / wall, 2) if on_pg else None,
        "hub_cpu_budget": args.hub_cpu,
        "throttled": throttled(thr0, thr1) if budgets else None,
        "live_at_end": health.body.get("nodes"),
        "writes": writes,
        "hub_lag": [lag_summary(a, b) for a, b in zip(lag0, lag1, strict=True)],
        "loadgen_lag_max_ms": round(own_probe.max_lag * 1000, 1),
        "duration_s": args.duration,
    } | ({"fault": args.fault, "failover_s": failover(stats)} if args.fault else {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--group-size", type=int, default=50)
    p.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    p.add_argument("--ramp", type=float, default=20.0, help="seconds to register everyone")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="a request's timeout")
    p.add_argument(
        "--beat-timeout",
        type=float,
        help="a heartbeat's timeout (default: the client's, swarmget.net.hub_client: "
        f"{DEFAULT_HEARTBEAT_TIMEOUT} s with several hubs, --timeout with one)",
    )
    p.add_argument(
        "--fault",
        choices=("kill", "stop"),
        help="with --hubs >= 2: SIGKILL or SIGSTOP the first replica while measuring",
    )
    p.add_argument("--fault-after", type=float, default=10.0, help="seconds into the measuring")
    p.add_argument("--db", default="", help="database URL (default: a new SQLite file)")
    p.add_argument("--src", help="PYTHONPATH for the hub process (another checkout's src)")
    p.add_argument("--hub-arg", action="append", default=[], help="extra hub argument")
    p.add_argument("--label", default="", help="a note in the JSON line")
    p.add_argument("--profile", help="run the hub under cProfile, stats into this file")
    p.add_argument(
        "--hubs",
        type=int,
        default=1,
        choices=range(1, 5),
        help="replicas on one database (PostgreSQL); each node uses the one its id picks",
    )
    p.add_argument(
        "--hub-cpu",
        type=float,
        help="give every hub process this fraction of one core (a cgroup of its own, "
        "bench/cpu_budget.py): what K replicas add, each with the same budget, on a machine "
        "without a core per replica",
    )
    p.add_argument(
        "--keepalive",
        type=float,
        default=HUB_KEEPALIVE,
        help="seconds a node keeps an idle hub connection (default: a node's, "
        f"{HUB_KEEPALIVE}; before 2026-12-06 nodes kept aiohttp's 15)",
    )
    p.add_argument(
        "--no-session",
        action="store_true",
        help="sign every request with the node key (no session keys: the hub before them)",
    )
    p.add_argument(
        "--move-spread",
        type=float,
        default=MOVE_SPREAD,
        help=f"seconds over which the nodes told of a gone replica spread their moves "
        f"(default: a node's, {MOVE_SPREAD}; 0: all at once, as on 2026-12-07 before it)",
    )
    p.add_argument(
        "--no-watch",
        action="store_true",
        help="with --hubs >= 2: no replica watches (nodes notice a dead replica at their next "
        "heartbeat, as before 2026-12-07)",
    )
    p.add_argument(
        "--old-client",
        action="store_true",
        help="nodes register again after any failed heartbeat (the client before issue #17)",
    )
    args = p.parse_args()
    if not 1 <= args.nodes <= 250 * args.group_size or not 1 <= args.duration <= 3600:
        p.error("--nodes is 1..250 groups, --duration 1..3600")
    if args.beat_timeout is None:
        args.beat_timeout = DEFAULT_HEARTBEAT_TIMEOUT if args.hubs > 1 else args.timeout
    if args.fault and (args.hubs < 2 or not 0 < args.fault_after < args.duration):
        p.error("--fault needs --hubs 2 or more and 0 < --fault-after < --duration")
    # a SIGTERM (``timeout``, a stopped sweep) unwinds like Ctrl-C: the hubs are stopped and
    # their CPU budgets' cgroups removed, not left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="hub-load-") as tmp:
        if not args.db:
            args.db = f"sqlite+aiosqlite:///{tmp}/hub.db"
        elif args.db.startswith("postgresql"):
            asyncio.run(fresh_pg(args.db))
        with contextlib.ExitStack() as stack:
            try:
                budgets = [
                    stack.enter_context(cpu_budget(f"swarmget-hub-load-{os.getpid()}-{i}", cpu))
                    for i, cpu in enumerate([args.hub_cpu] * args.hubs if args.hub_cpu else [])
                ]
            except BudgetUnavailable as exc:
                raise SystemExit(f"--hub-cpu: {exc}") from exc
            started = [
                stack.enter_context(
                    hub_process(
                        args.db,
                        args.src,
                        Path(tmp),
                        args.hub_arg,
                        args.profile,
                        budgets[i] if budgets else None,
                    )
                )
                for i in range(args.hubs)
            ]
            result = asyncio.run(
                measure(args, [u for u, _ in started], [p for _, p in started], budgets)
            )
    result["label"] = args.label
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
