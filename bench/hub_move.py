"""What a node's move costs the hub replica it moves to (issue #17): CPU per move.

When a replica hangs, its nodes heartbeat another replica of the same registry (told by a
replica watch, ``swarmget.net.replica_watch``): that survivor then takes each node's *move*
(what ``HubPool.heartbeat`` sends after ``replica_gone``: a heartbeat signed with the node
key, since the node holds no session there, and whatever the client does to get a session
there). This measures the survivor's CPU per move, and per ordinary heartbeat, without
thousands of nodes:

1. starts two hub replicas (``python -m swarmget.hub``, A and B) on one PostgreSQL
   (``--db``; its hub tables emptied first), as real processes on 127.0.0.1;
2. makes ``--nodes`` nodes in this process, each a real ``HubPool`` over [A, B] with its own
   client session and source address (``hub_load.address_of``: 7 per address), and
   registers them all with A (``REGISTER_CONCURRENCY`` at a time);
3. each node opens a keep-alive connection to B (``GET /v1/health``: a real node's replica
   watch on B holds one, which its move then reuses), then A is SIGSTOPped (the fault);
4. B's CPU is read from /proc over ``--idle`` s of nothing (its own timers), then over the
   moves: every node is told A is gone (``HubPool.replica_gone``) and heartbeats, with
   ``--concurrency`` nodes moving at a time (a closed loop: ``moves_per_s`` is what B and
   this generator manage together on this machine, not B's capacity alone);
5. after a pause (B's liveness and nonce flushes), ``--beats`` rounds of every node
   heartbeating B again (with the session it has there, if any): CPU per ordinary heartbeat.

CPU figures are B's user+system seconds from /proc (10 ms ticks: a few hundred moves are
needed for a steady figure), divided by the moves (or heartbeats); ``_net`` subtracts what
B spent idle at the same rate. ``--src DIR`` runs the hubs from another checkout's ``src``
(run this script with that ``src`` on ``PYTHONPATH`` too to get that checkout's client);
``--py-spy FILE`` records B with py-spy during the moves only (raw collapsed stacks; the
sampling slows B, so CPU figures of such a run are not comparable); ``--profile FILE`` runs B
under cProfile (its whole life: use ``--beats 0``). ``b_writes``: B's write histograms
(``/metrics``: per kind, batches, their mean size, wait and transaction ms). One JSON line on stdout
(and appended to ``--out``). Bounded: at most ``--nodes`` moves and ``--beats`` rounds, each
call with the client's timeouts; a hub that does not start ends the run.

    PYTHONPATH=src .venv/bin/python bench/hub_move.py --db "$SWARMGET_TEST_PG" --nodes 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from cpu_budget import process_cpu_seconds
from hub_load import SECRET, address_of, fresh_pg, hub_process, percentiles, write_means

from swarmget.core.identity import NodeIdentity
from swarmget.net.hub_client import HubPool, Registration, hub_connector

_T = TypeVar("_T")
REGISTRATION = Registration(port=7500, version="0.1.0", slots=4)
#: Registrations with A at a time (more: A sheds some, and they register with B instead).
REGISTER_CONCURRENCY = 16


def identity(index: int) -> NodeIdentity:
    return NodeIdentity.from_seed(hashlib.sha256(b"hub-move\n%d" % index).digest())


@contextlib.asynccontextmanager
async def open_pools(
    count: int, hubs: list[str]
) -> AsyncIterator[list[tuple[HubPool, aiohttp.ClientSession]]]:
    """``count`` pools over ``hubs``, each with its own session (as a node has)."""
    sessions: list[aiohttp.ClientSession] = []
    try:
        for index in range(count):
            local = (address_of(index, 50), 0)
            sessions.append(aiohttp.ClientSession(connector=hub_connector(local)))
        yield [(HubPool(s, hubs, SECRET, identity(i)), s) for i, s in enumerate(sessions)]
    finally:
        for session in sessions:
            await session.close()


async def each(
    items: list[_T], concurrency: int, work: Callable[[_T], Awaitable[Any]]
) -> list[Any]:
    """``work(item)`` for every item, ``concurrency`` at a time; exceptions returned."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: _T) -> Any:
        async with gate:
            return await work(item)

    return await asyncio.gather(*(one(i) for i in items), return_exceptions=True)


async def register(pool: HubPool) -> None:
    """With A (a pool that found A unavailable registers with B: left out of the moves)."""
    await pool.register(REGISTRATION)


def _at_a(pool: HubPool) -> bool:
    watched = pool.watched()
    return watched is not None and watched[0] == 0


def cpu_window(pid: int) -> Callable[[], tuple[float, float]]:
    """Start a window; the returned function ends it: (B's CPU seconds, wall seconds)."""
    cpu0, wall0 = process_cpu_seconds(pid), time.perf_counter()
    return lambda: (process_cpu_seconds(pid) - cpu0, time.perf_counter() - wall0)


async def timed(latencies: list[float], call: Awaitable[Any]) -> None:
    started = time.perf_counter()
    await call
    latencies.append(time.perf_counter() - started)


def failures(results: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for result in results:
        if isinstance(result, BaseException):
            out[type(result).__name__] = out.get(type(result).__name__, 0) + 1
    return out


@contextlib.contextmanager
def py_spy(pid: int, output: str | None) -> Any:
    """py-spy recording ``pid`` while the block runs (nothing without ``output``)."""
    if output is None:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "-p", str(pid), "-r", "250", "-f", "raw", "-o", output]
    proc = subprocess.Popen([*cmd, "-d", "120"], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # (attached)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


async def measure(args: argparse.Namespace, hubs: list[str], pids: list[int]) -> dict[str, Any]:
    async with open_pools(args.nodes, hubs) as nodes:
        started = time.perf_counter()
        reg = await each([p for p, _ in nodes], REGISTER_CONCURRENCY, register)
        register_s = time.perf_counter() - started
        at_a = [(p, s) for (p, s), r in zip(nodes, reg, strict=True) if r is None and _at_a(p)]

        async def warm(node: tuple[HubPool, aiohttp.ClientSession]) -> None:
            async with node[1].get(hubs[1] + "/v1/health") as response:
                await response.read()

        await each(at_a, args.concurrency, warm)
        movers = [p for p, _ in at_a]
        os.kill(pids[0], signal.SIGSTOP)
        await asyncio.sleep(1.0)
        idle = cpu_window(pids[1])
        await asyncio.sleep(args.idle)
        idle_cpu, idle_wall = idle()
        idle_rate = idle_cpu / idle_wall
        move_ms: list[float] = []

        async def move(pool: HubPool) -> None:
            index, replica = pool.watched() or (0, "")
            pool.replica_gone(index, replica, told_by=1)
            await timed(move_ms, pool.heartbeat({}))

        with py_spy(pids[1], args.py_spy):
            window = cpu_window(pids[1])
            moved = await each(movers, args.concurrency, move)
            move_cpu, move_wall = window()
        keyed = sum(p.clients[1].session is not None for p in movers)
        ok_moves = sum(r is None for r in moved)
        await asyncio.sleep(args.pause)
        beat_ms: list[float] = []
        beat_results: list[Any] = []
        window = cpu_window(pids[1])
        for _ in range(args.beats):
            beat = lambda p: timed(beat_ms, p.heartbeat({}))  # noqa: E731
            beat_results += await each(movers, args.concurrency, beat)
        beat_cpu, beat_wall = window()
        ok_beats = sum(r is None for r in beat_results)
        writes = await write_means(hubs[1])
    per = lambda cpu, wall, n: round((cpu / max(n, 1)) * 1e6)  # noqa: E731
    net = lambda cpu, wall, n: round(((cpu - idle_rate * wall) / max(n, 1)) * 1e6)  # noqa: E731
    return {
        "nodes": args.nodes,
        "registered_at_a": len(at_a),
        "register_s": round(register_s, 2),
        "moved": ok_moves,
        "move_failures": failures(moved),
        "keyed_at_b": keyed,
        "move_wall_s": round(move_wall, 3),
        "moves_per_s": round(ok_moves / move_wall, 1),
        "hub_cpu_us_per_move": per(move_cpu, move_wall, ok_moves),
        "hub_cpu_us_per_move_net": net(move_cpu, move_wall, ok_moves),
        "move_ms": percentiles(move_ms),
        "beats": ok_beats,
        "beat_failures": failures(beat_results),
        "beats_per_s": round(ok_beats / beat_wall, 1),
        "hub_cpu_us_per_beat": per(beat_cpu, beat_wall, ok_beats),
        "hub_cpu_us_per_beat_net": net(beat_cpu, beat_wall, ok_beats),
        "beat_ms": percentiles(beat_ms),
        "idle_cpu": round(idle_rate, 3),
        "b_writes": writes,
        "concurrency": args.concurrency,
        "load_avg": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True, help="a PostgreSQL URL (its hub tables are emptied)")
    p.add_argument("--nodes", type=int, default=600, help="nodes that move (1-1000)")
    p.add_argument("--concurrency", type=int, default=16, help="nodes moving at a time")
    p.add_argument("--beats", type=int, default=2, help="rounds of heartbeats after the moves")
    p.add_argument("--idle", type=float, default=2.0, help="seconds of B's idle CPU measured")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between moves and beats")
    p.add_argument("--src", help="PYTHONPATH for the hub processes (another checkout's src)")
    p.add_argument("--py-spy", help="record B during the moves into this file (raw stacks)")
    p.add_argument(
        "--profile", help="run B under cProfile, its stats into this file (with --beats 0)"
    )
    p.add_argument("--label", default="", help="a note in the JSON line")
    p.add_argument("--out", help="append the JSON line to this file too")
    args = p.parse_args()
    if not 1 <= args.nodes <= 1000 or not 1 <= args.concurrency <= 64 or not 0 <= args.beats <= 5:
        p.error("--nodes 1-1000, --concurrency 1-64, --beats 0-5")
    if not args.db.startswith("postgresql"):
        p.error("--db must be PostgreSQL (replicas share it)")
    logging.basicConfig(level=logging.ERROR)  # (every pool logs its move)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    asyncio.run(fresh_pg(args.db))
    with tempfile.TemporaryDirectory(prefix="hub-move-") as tmp, contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                hub_process(args.db, args.src, Path(tmp), [], args.profile if i else None)
            )
            for i in range(2)
        ]
        result = asyncio.run(measure(args, [u for u, _ in started], [p for _, p in started]))
    result |= {"src": args.src or "this tree", "label": args.label}
    line = json.dumps(result)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    main()
