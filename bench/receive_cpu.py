"""The receive path alone: CPU per MiB of the requester's peer streams (issue #17).

What it measures
    One process (this one) plays the requester: ``--streams`` tasks each fetch
    ``--pieces`` ranges of ``--piece`` bytes, one after the other, with the node's own
    client (``net.peer_client.stream_range``: a signed ``POST /v1/range``, the answer's
    range header checked, the body read through ``CheckedBody``), and drop the bytes. The
    "helpers" are one server process (``--serve``, aiohttp, its CPU not counted) that
    answers every range at ``--rate`` bytes/s per stream, in writes of ``--burst`` bytes,
    as a rate-limited helper does. Reported: this process's CPU seconds (utime + stime) per
    MiB received, the body chunks per MiB (each one a pass through the Python per-chunk
    path in a real download), the wall time and the load average. No scheduler, no part
    file, no hashing: what is left is aiohttp, the body iterator and the requests.

How to run it
    PYTHONPATH=src .venv/bin/python bench/receive_cpu.py [--streams 192] [--rate 640K]
    [--piece 320K] [--pieces 4] [--burst 96K] [--label TEXT]
    JSON lines go to ``--out`` (default bench/out/receive_cpu.jsonl).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import KiB, MiB, load_average, parse_size, stop_process

from swarmget.core.identity import NodeIdentity
from swarmget.core.ranges import ByteRange
from swarmget.net.peer_client import stream_range
from swarmget.protocol.peer import RANGE_HEADER, RANGE_PATH, range_header


def serve(port: int, rate: int, burst: int) -> None:
    """The helpers' side: every range answered at ``rate``, ``burst`` bytes at a time."""
    block = bytes(burst)

    async def handle(request: web.Request) -> web.StreamResponse:
        ask = await request.json()
        start, end = int(ask["start"]), int(ask["end"])
        resp = web.StreamResponse(
            headers={RANGE_HEADER: range_header(start, end), "Content-Length": str(end - start)}
        )
        await resp.prepare(request)
        left, t0, sent = end - start, time.monotonic(), 0
        while left > 0:
            n = min(left, burst)
            await resp.write(block[:n])
            left -= n
            sent += n
            delay = t0 + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post(RANGE_PATH, handle)
    web.run_app(app, host="127.0.0.3", port=port, print=None, access_log=None)


class Sender:
    """A ``RangeSender``: the requester's session, secret and identity."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.secret = b"s" * 32
        self.identity = NodeIdentity.generate()
        self.read_timeout = 30.0


async def fetch(url: str, args: argparse.Namespace) -> dict[str, Any]:
    chunks = received = 0
    connector = aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        sender = Sender(session)

        async def one_stream(index: int) -> None:
            nonlocal chunks, received
            base = index * args.pieces * args.piece
            for k in range(args.pieces):
                rng = ByteRange(base + k * args.piece, base + (k + 1) * args.piece)
                body = json.dumps({"start": rng.start, "end": rng.end}).encode()
                async with stream_range(sender, url, body, rng, who="bench") as stream:
                    async for chunk in stream:
                        chunks += 1
                        received += len(chunk)

        t0, cpu0 = time.monotonic(), os.times()
        async with asyncio.TaskGroup() as tg:
            for i in range(args.streams):
                tg.create_task(one_stream(i))
        wall, cpu1 = time.monotonic() - t0, os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    mib = received / MiB
    return {
        "streams": args.streams,
        "rate_per_stream": args.rate,
        "piece": args.piece,
        "burst": args.burst,
        "mib": round(mib, 1),
        "wall_s": round(wall, 2),
        "mib_s": round(mib / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_mib": round(1000 * cpu / mib, 3),
        "chunks_per_mib": round(chunks / mib, 2),
    }


def wait_for(port: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            socket.create_connection(("127.0.0.3", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.3", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=192)
    p.add_argument("--rate", type=parse_size, default=640 * KiB, help="per stream, bytes/s")
    p.add_argument("--piece", type=parse_size, default=320 * KiB)
    p.add_argument("--pieces", type=int, default=4, help="ranges per stream, one by one")
    p.add_argument("--burst", type=parse_size, default=96 * KiB)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out/receive_cpu.jsonl")
    p.add_argument("--label", default="")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve is not None:
        serve(args.serve, args.rate, args.burst)
        return 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)]
        + ["--rate", str(args.rate), "--burst", str(args.burst)]
    )
    try:
        wait_for(port)
        load = load_average()
        result = asyncio.run(fetch(f"http://127.0.0.3:{port}{RANGE_PATH}", args))
    finally:
        stop_process(server)
    result |= {"load_before": load, "load_after": load_average(), "label": args.label}
    line = json.dumps(result)
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
