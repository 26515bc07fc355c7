"""The CPU a node spends per MiB it SENDS (issues #15, #17): a helper forwarding origin
bytes, a LAN holder serving a file it keeps.

What it measures
    One real node process (127.0.0.2, ``--share-downloads``, hub and node from
    ``swarmget.testing.swarm``) and swarmget's test origin (a process, serving the file from
    disk). The node first downloads the file itself, so it keeps it and becomes its holder.
    Then, one at a time, a signed ``curl`` (a C client, a process of its own: the receiving
    side costs the node nothing) asks the node for the whole file:

    * ``helper``: ``POST /v1/range`` (``node.helper``: the node fetches the range from the
      origin and forwards it);
    * ``holder``: ``POST /v1/content-range`` (``node.holder``: the node reads its kept file).

    Reported per case: the node process's CPU (utime + stime from ``/proc/PID/stat``) over
    the request, in ms per MiB sent, and the wall time. The node's idle CPU (measured over
    ``IDLE_SECONDS`` before the cases: announcer, hub heartbeat ...) is reported beside it,
    not subtracted. Each case runs without a rate limit and with ``--rate-limit RATE``
    (many small writes: the realistic case), ``--repeat`` times. The load average is
    printed with each row: the machine is shared, CPU time is fairly robust to other load.

How to run it
    PYTHONPATH=src .venv/bin/python bench/send_cpu.py [--size 128M] [--limited-size 16M]
    [--rate 2M] [--repeat 3] [--label TEXT] [--profile DIR (py-spy of the node)]
    JSON lines go to ``--out`` (default bench/out/send_cpu.jsonl).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from common import MiB, ensure_test_file, load_average, parse_size
from requester_cpu import cpu_seconds, running_origin

from swarmget.core.content import ContentKey
from swarmget.core.identity import NodeIdentity
from swarmget.core.ranges import ByteRange
from swarmget.net.content_peer import content_range_body
from swarmget.net.origin import OriginClient
from swarmget.net.signing import json_body, load_secret, signed_headers
from swarmget.protocol.content import CONTENT_RANGE_PATH
from swarmget.protocol.peer import RANGE_PATH, RangeRequest
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm

IDLE_SECONDS = 8.0


def on_cpu_seconds(pid: int) -> float:
    """Seconds the process's live threads have run (``schedstat``: nanoseconds, where
    ``/proc/PID/stat`` counts 10 ms ticks; a thread gone takes its time with it)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


ORIGIN_RATE = 4096 * MiB  # per client address: no cap to speak of


def curl_command(requests: list[tuple[str, bytes, dict[str, str]]], limit: int | None) -> list[str]:
    """One curl process asking for every request in turn on one kept-alive connection."""
    cmd = ["curl", "-sS"]
    for i, (target, body, headers) in enumerate(requests):
        if i:
            cmd.append("--next")
        cmd += ["-o", "/dev/null", "-w", "%{http_code} %{size_download}\\n"]
        if limit is not None:
            cmd += ["--limit-rate", str(limit)]
        cmd += ["-X", "POST", "--data-binary", body.decode(), target]
        cmd += ["-H", "Content-Type: application/json"]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
    return cmd


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (collapsed stacks, for flamegraph.pl or a grep) of ``pid`` until SIGINT."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--rate", "500", "--format", "raw"]
    cmd += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def request_for(
    case: str, swarm: LocalSwarm, url: str, key: ContentKey, rng: ByteRange
) -> tuple[str, bytes]:
    """The route and body asking node 0 for ``rng`` of the file."""
    size = key.size
    assert size is not None
    peer_url = str(swarm.node(0).proc.info["peer_url"]).rstrip("/")
    if case == "helper":
        req = RangeRequest(url=url, start=rng.start, end=rng.end, size=size)
        return f"{peer_url}{RANGE_PATH}", json_body(req.model_dump(mode="json"))
    return f"{peer_url}{CONTENT_RANGE_PATH}", content_range_body(key, rng)


@dataclass(frozen=True)
class Shape:
    """How the file is asked for: ``streams`` curls at once, each reading its share of the
    file as ranges of ``range_size`` bytes, at most ``reader_rate`` bytes/s (None: fast)."""

    streams: int
    range_size: int
    reader_rate: int | None


def curl_jobs(
    swarm: LocalSwarm, case: str, url: str, key: ContentKey, shape: Shape
) -> list[list[str]]:
    assert key.size is not None
    secret = load_secret(swarm.secret_file)
    me = NodeIdentity.generate()
    share = key.size // shape.streams
    jobs = []
    for s in range(shape.streams):
        end = key.size if s == shape.streams - 1 else (s + 1) * share
        requests = []
        for start in range(s * share, end, shape.range_size):
            rng = ByteRange(start, min(end, start + shape.range_size))
            target, body = request_for(case, swarm, url, key, rng)
            requests.append((target, body, signed_headers(secret, me, "POST", target, body)))
        jobs.append(curl_command(requests, shape.reader_rate))
    return jobs


async def one_case(
    swarm: LocalSwarm,
    case: str,
    url: str,
    key: ContentKey,
    shape: Shape,
    idle: float,
    spy_dir: Path | None,
) -> dict[str, Any]:
    """One case; ``idle``: the node's CPU seconds per second with nothing to send."""
    jobs = curl_jobs(swarm, case, url, key, shape)
    pid = swarm.node(0).proc.pid
    spy = None
    if spy_dir is not None:
        spy = start_profiler(pid, spy_dir / f"{case}-{time.time():.0f}.txt")
        await asyncio.sleep(1.0)
    cpu0, t0, on0 = cpu_seconds(pid), time.monotonic(), on_cpu_seconds(pid)
    procs = [await asyncio.create_subprocess_exec(*j, stdout=subprocess.PIPE) for j in jobs]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 600)
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    on_cpu = on_cpu_seconds(pid) - on0
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        spy.wait(timeout=60)
    lines = [line.split() for out, _ in outs for line in out.decode().splitlines()]
    got = sum(int(n) for _, n in lines)
    if any(status != "200" for status, _ in lines) or got != key.size:
        raise RuntimeError(f"{case}: {lines[:5]} ..., {got} of {key.size} bytes")
    mib = got / MiB
    return {
        "requests": len(lines),
        "wall_s": round(wall, 2),
        "mib_s": round(mib / wall, 1),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_mib": round(1000 * cpu / mib, 2),
        "on_cpu_s": round(on_cpu, 4),
        "on_cpu_ms_per_mib": round(1000 * on_cpu / mib, 3),
        "idle_ms": round(1000 * idle * wall, 1),
        "net_ms_per_mib": round(1000 * (on_cpu - idle * wall) / mib, 3),
    }


async def run_mode(
    data: Path,
    url: str,
    rate: int | None,
    shapes: list[Shape],
    repeat: int,
    root: Path,
    spy_dir: Path | None,
    cases: list[str],
) -> list[dict[str, Any]]:
    extra = ["--share-downloads", "--slots", "16"]
    if rate is not None:
        extra += ["--rate-limit", str(rate)]
    rows = []
    async with (
        open_local_swarm(root, 1, node_extra=extra, hub_ttl=15.0) as swarm,
        aiohttp.ClientSession() as session,
    ):
        api = NodeApi(session, swarm.node(0))
        await api.download(url, "held.bin", limit=600.0)
        await api.until_sharing("kept_files", 1, limit=60.0)
        key = ContentKey.from_origin_info(await OriginClient(session).probe(url))
        pid = swarm.node(0).proc.pid
        on0 = on_cpu_seconds(pid)
        await asyncio.sleep(IDLE_SECONDS)
        idle = (on_cpu_seconds(pid) - on0) / IDLE_SECONDS
        for _ in range(repeat):
            for shape in shapes:
                for case in cases:
                    load = load_average()
                    row = await one_case(swarm, case, url, key, shape, idle, spy_dir)
                    rows.append(
                        {
                            "case": case,
                            "node_rate_limit": rate,
                            "size_mib": (key.size or 0) / MiB,
                            **asdict(shape),
                            **row,
                            "node_idle_cpu_ms_per_s": round(1000 * idle, 2),
                            "load_before": load,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=128 * MiB, help="unlimited runs")
    p.add_argument("--limited-size", type=parse_size, default=16 * MiB, help="limited runs")
    p.add_argument("--rate", type=parse_size, default=2 * MiB, help="--rate-limit, bytes/s")
    p.add_argument("--range", type=parse_size, default=4 * MiB, help="bytes per request")
    p.add_argument("--streams", default="1,4", help="comma-separated concurrent readers")
    p.add_argument("--reader-rate", type=parse_size, help="also: readers capped to this (curl)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--modes", default="unlimited,limited")
    p.add_argument("--cases", default="helper,holder")
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/swarmget-bench"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out/send_cpu.jsonl")
    p.add_argument("--label", default="", help="a note in each JSON line (e.g. the commit)")
    p.add_argument("--profile", type=Path, help="py-spy profiles of the node into DIR")
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    readers = [None] if args.reader_rate is None else [None, args.reader_rate]
    for mode in args.modes.split(","):
        rate = None if mode == "unlimited" else args.rate
        shapes = [
            Shape(streams=int(n), range_size=args.range, reader_rate=r)
            for n in args.streams.split(",")
            for r in (readers if rate is None else [None])
        ]
        data = ensure_test_file(args.cache_dir, args.size if rate is None else args.limited_size)
        with tempfile.TemporaryDirectory(prefix="swarmget-bench-send-") as tmp:
            with running_origin(data, ORIGIN_RATE) as url:
                rows = asyncio.run(
                    run_mode(
                        data,
                        url,
                        rate,
                        shapes,
                        args.repeat,
                        Path(tmp) / "swarm",
                        args.profile,
                        args.cases.split(","),
                    )
                )
        with args.out.open("a") as f:
            for row in rows:
                row["label"] = args.label
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
