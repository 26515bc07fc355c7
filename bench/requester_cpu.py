"""The requester's CPU and event-loop lag with many rate-limited helpers (issues #14, #17).

What it measures
    A real requester node (127.0.0.2, ``--connections 1``) downloads one file from
    swarmget's test origin (a process; ``--rate-per-ip``: every client address capped to the
    rate) with N real helper nodes (127.0.0.3 ...), each also capped by its own
    ``--rate-limit`` (default 2 MiB/s), so what is available is (N + 1) x the rate. Hub and
    nodes are processes (``swarmget.testing.swarm``).
    What the helpers can send is measured, not assumed: before the download every helper
    streams ``CALIBRATE_SECONDS`` of its rate to its own ``curl`` at once, and the
    requester's address fetches as much from the origin (``what_they_can_send``).
    Reported per N: the received rate (file size / time from the request to the verified
    file) against that (and against (N + 1) x the rate), the requester process's CPU
    (utime + stime from ``/proc/PID/stat`` over the same interval) as a share of one core
    and per 10 MiB/s received, and the event loop's lag p50/p99/max inside the requester,
    read from its ``/metrics`` (the ``SWARMGET_LOOP_LAG_PROBE`` probe, every 10 ms,
    histogram diffed over the download; p50/p99 are bucket upper bounds), beside a control
    process's (``lag_control.py``: what the machine's load alone costs). The load average
    is printed with each run: CPU time is fairly robust to other load, lag is not.
    Also per run: the requester's threads' time on a CPU and waiting for one (the run queue,
    ``/proc/PID/task/TID/schedstat``), the main (event loop) thread apart: a loop that is
    late because its thread waits for a CPU is the machine's doing, not the loop's.

Priorities
    All the swarm's processes share this machine's cores; in a real swarm every helper and
    the origin run on machines of their own. With ``--helper-nice N`` the helpers and the
    hub run at nice N, so the requester is not given the share of one process among 66
    while it does 64 helpers' worth of receiving (issue #17: at nice 0 its event loop
    thread spent 3/4 of the download runnable and waiting for a CPU). The origin (a
    session, so an autogroup, of its own) is left alone: at nice 10 it starved. What the
    helpers can send is measured at the same nice. Default 0: all alike.

How to run it
    PYTHONPATH=src .venv/bin/python bench/requester_cpu.py --helpers 8,16,64 [--seconds 8]
    [--size 512M] [--rate 2M] [--helper-nice 10]
    [--profile DIR (py-spy record of the requester, if installed)] [--logs DIR]
    JSON lines go to ``--out`` (default bench/out/requester_cpu.jsonl).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    MiB,
    cached_sha256,
    ensure_test_file,
    lag_histogram,
    lag_quantile,
    load_average,
    parse_size,
    stop_process,
)

from swarmget.core.identity import NodeIdentity
from swarmget.net.signing import json_body, load_secret, signed_headers
from swarmget.protocol.peer import RANGE_PATH, RangeRequest
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm

PROBE_INTERVAL = "0.01"
#: seconds of the helpers' rate each streams to curl at once, to measure what they can send
CALIBRATE_SECONDS = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def renice(pid: int, nice: int) -> None:
    """Every thread of process ``pid`` at ``nice`` (Linux nice is per thread; threads it
    starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def sched_seconds(pid: int) -> dict[str, float]:
    """Seconds the process's threads (and its main thread, the event loop's) have been on a
    CPU and runnable waiting for one (``schedstat``; zeros without schedstats)."""
    totals = {"main_on_cpu": 0.0, "main_waiting": 0.0, "on_cpu": 0.0, "waiting": 0.0}
    totals |= {"main_user": 0.0, "main_sys": 0.0, "user": 0.0, "sys": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            on_cpu, waiting = (int(x) / 1e9 for x in (task / "schedstat").read_text().split()[:2])
            totals["on_cpu"] += on_cpu
            totals["waiting"] += waiting
            # user and kernel time apart: the kernel's share (socket reads, page-cache
            # copies) is not what Python code changes
            stat = (task / "stat").read_text().rpartition(")")[2].split()
            user, system = int(stat[11]) / TICKS, int(stat[12]) / TICKS
            totals["user"] += user
            totals["sys"] += system
            if task.name == str(pid):
                totals["main_on_cpu"], totals["main_waiting"] = on_cpu, waiting
                totals["main_user"], totals["main_sys"] = user, system
    return totals


@contextlib.contextmanager
def running_origin(data: Path, rate: int) -> Iterator[str]:
    """swarmget's test origin (a process) serving ``data``, each client address capped to
    ``rate`` by a token bucket. (nginx's ``limit_rate`` lets every response burst a second's
    worth first, so the requester's many short ranges went 10x over it.)"""
    cmd = [sys.executable, "-m", "swarmget.testing.origin", "--port", "0"]
    cmd += ["--real-file", f"{data.name}={data}", "--rate-per-ip", str(rate)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        base_url = json.loads(proc.stdout.readline())["base_url"]
        yield f"{base_url.rstrip('/')}/files/{data.name}"
    finally:
        stop_process(proc)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def lag_buckets(session: aiohttp.ClientSession, api_url: str) -> dict[str, Any]:
    async with session.get(f"{api_url}/metrics") as resp:
        buckets, lag_max = lag_histogram(await resp.text())
    return {"buckets": buckets, "max": lag_max}


async def wait_peers(api: NodeApi, n: int) -> list[dict[str, Any]]:
    for _ in range(1200):
        peers = await api.peers()
        if len(peers) >= n:
            return peers
        await asyncio.sleep(0.1)
    raise RuntimeError(f"only {len(await api.peers())} of {n} helpers registered")


async def what_they_can_send(
    swarm: LocalSwarm,
    peers: list[dict[str, Any]],
    url: str,
    size: int,
    rate: int,
    seconds: float,
) -> dict[str, float]:
    """Measured, not assumed: every helper streams ``seconds`` of its rate limit's worth
    (a range of its own) to curl, all at once, and the requester's address fetches the
    same from the origin; a C client, one process per stream, so the measure is what the
    helpers (and the origin, and this machine now) deliver, not what a Python requester
    can take in. Returns MiB/s: ``helpers`` (bytes / wall time of the slowest),
    ``origin`` (the requester's own link), and ``slowest_helper``."""
    secret = load_secret(swarm.secret_file)
    me = NodeIdentity.generate()
    want = int(rate * seconds)  # the helpers' --rate-limit for ``seconds``
    jobs: list[list[str]] = []
    for i, peer in enumerate(peers):
        start = (i * want) % max(1, size - want)
        body = json_body(
            RangeRequest(url=url, start=start, end=start + want, size=size).model_dump(mode="json")
        )
        target = f"{peer['url']}{RANGE_PATH}"
        headers = signed_headers(secret, me, "POST", target, body)
        cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}"]
        cmd += ["-X", "POST", "--data-binary", body.decode(), target]
        cmd += ["-H", "Content-Type: application/json"]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        jobs.append(cmd)
    origin = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}"]
    origin += ["--interface", "127.0.0.2", "-r", f"0-{want - 1}", url]
    t0 = time.monotonic()
    procs = [
        await asyncio.create_subprocess_exec(*c, stdout=subprocess.PIPE) for c in [*jobs, origin]
    ]
    results = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in procs)), timeout=seconds * 10 + 60
    )
    wall = time.monotonic() - t0
    outs = [out.decode().split() for out, _ in results]
    got = [(int(o[0]), float(o[1])) for o in outs]
    helper_bytes = sum(b for b, _ in got[:-1])
    return {
        "helpers": round(helper_bytes / wall / MiB, 1),
        "origin": round(got[-1][0] / got[-1][1] / MiB, 2),
        "slowest_helper": round(min(b / t for b, t in got[:-1]) / MiB, 2),
        "wall": round(wall, 2),
    }


def start_profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: no profile")
        return None
    cmd = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "speedscope"]
    cmd += ["--output", str(out), "--duration", str(int(seconds) + 1), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def one_run(
    n: int,
    url: str,
    digest: str,
    size: int,
    rate: int,
    root: Path,
    profile: Path | None,
    nice: int,
) -> dict[str, Any]:
    extra: dict[int, list[str]] = {0: ["--connections", "1"]}
    extra.update({i: ["--rate-limit", str(rate)] for i in range(1, n + 1)})
    async with (
        open_local_swarm(
            root, n + 1, node_extra=extra, hub_ttl=15.0, hub_extra=["--peers-limit", "64"]
        ) as swarm,
        aiohttp.ClientSession() as session,
    ):
        if nice:  # everything but the requester (node 0)
            for proc in [*swarm.hubs, *(h.proc for h in swarm.nodes[1:])]:
                renice(proc.pid, nice)
        return await _download(swarm, session, n, url, digest, size, rate, profile)


async def _download(
    swarm: LocalSwarm,
    session: aiohttp.ClientSession,
    n: int,
    url: str,
    digest: str,
    size: int,
    rate: int,
    profile: Path | None,
) -> dict[str, Any]:
    node = swarm.node(0)
    api = NodeApi(session, node)
    peers = await wait_peers(api, n)  # at most 64: the hub's largest answer
    helpers = [p["node_id"] for p in peers]
    measured = await what_they_can_send(swarm, peers, url, size, rate, CALIBRATE_SECONDS)
    load = load_average()
    lag0 = await lag_buckets(session, node.api_url)
    control = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parent / "lag_control.py"),
        PROBE_INTERVAL,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    cpu0, t0 = cpu_seconds(node.proc.pid), time.monotonic()
    sched0 = sched_seconds(node.proc.pid)
    spy = None
    if profile is not None:
        spy = start_profiler(
            node.proc.pid, profile / f"requester-{n}.json", max(10.0, 3 * size / rate / (n + 1))
        )
    download = await api.start(url, output="out.bin", checksums=[f"sha256:{digest}"],
                               helpers=helpers)  # fmt: skip
    result = await api.wait(download, limit=600.0)
    wall, cpu = time.monotonic() - t0, cpu_seconds(node.proc.pid) - cpu0
    sched1 = sched_seconds(node.proc.pid)
    lag1 = await lag_buckets(session, node.api_url)
    control_out, _ = await control.communicate(b"")  # its stdin closes: it reports
    control_lag = json.loads(control_out)
    if spy is not None:
        spy.wait(timeout=60)
    if result.get("state") != "done":
        raise RuntimeError(f"download failed: {result}")
    (node.download_dir / "out.bin").unlink()
    received = size / wall / MiB
    available = (n + 1) * rate / MiB
    can_send = measured["helpers"] + measured["origin"]
    return {
        "helpers": n,
        "size_mib": size / MiB,
        "load_before": load,
        "load_after": load_average(),
        "wall_s": round(wall, 2),
        "received_mib_s": round(received, 1),
        "available_mib_s": round(available, 1),
        "share_of_available": round(received / available, 3),
        "measured_can_send_mib_s": round(can_send, 1),
        "share_of_measured": round(received / can_send, 3),
        "calibration": measured,
        "helpers_used": len(_by_source(result)) - 1,
        "cpu_s": round(cpu, 2),
        "cpu_share": round(cpu / wall, 3),
        "cpu_per_10mib_s": round(cpu / wall / (received / 10), 4),
        "lag_p50_ms": _finite(1000 * lag_quantile(lag0["buckets"], lag1["buckets"], 0.5)),
        "lag_p99_ms": _finite(1000 * lag_quantile(lag0["buckets"], lag1["buckets"], 0.99)),
        "lag_max_ms": round(1000 * lag1["max"], 1),  # since the node started
        "lag_max_bucket_ms": _finite(1000 * lag_quantile(lag0["buckets"], lag1["buckets"], 1.0)),
        "control_lag_ms": control_lag,
        "requester_sched_s": {k: round(sched1[k] - sched0[k], 2) for k in sched0},
        "received_by_source_mib": _by_source(result),
        # ranges asked of all sources per MiB of the file (None from a node that does not
        # count them): each is a request of its own, the requester's cost per range
        "ranges_per_mib": _ranges_per_mib(result, size),
    }


def _ranges_per_mib(result: dict[str, Any], size: int) -> float | None:
    sources = (result.get("progress") or {}).get("sources", [])
    ranges = sum(int(s.get("ranges", 0)) for s in sources)
    return round(ranges / (size / MiB), 2) if ranges else None


def _finite(x: float) -> float | None:
    """``x``, or None beyond the last bucket or without a probe (JSON has no infinity or
    NaN)."""
    return x if x < float("inf") else None


def _by_source(result: dict[str, Any]) -> dict[str, float]:
    sources = (result.get("progress") or {}).get("sources", [])
    return {str(s["id"])[:8]: round(s["received"] / MiB, 1) for s in sources}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--helpers", default="8,16,64", help="comma-separated N")
    p.add_argument("--rate", type=parse_size, default=2 * MiB, help="per helper, bytes/s")
    p.add_argument("--size", type=parse_size, help="file size (default: --seconds of it all)")
    p.add_argument("--seconds", type=float, default=8.0, help="ideal download time")
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/swarmget-bench"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out/requester_cpu.jsonl")
    p.add_argument("--label", default="", help="a note in each JSON line (e.g. the commit)")
    p.add_argument("--profile", type=Path, help="py-spy profiles of the requester into DIR")
    p.add_argument(
        "--logs",
        type=Path,
        help="copy the requester's log into DIR (with SWARMGET_LOOP_STALL_LOG=S in the "
        "environment it holds the loop's stack at each stall)",
    )
    p.add_argument(
        "--helper-nice",
        type=int,
        default=0,
        choices=range(20),
        metavar="0-19",
        help="nice of the helpers and the hub (default 0: as the requester)",
    )
    p.add_argument(
        "--no-lag-probe",
        dest="lag_probe",
        action="store_false",
        help="no loop-lag probe in the nodes (its 100 wake-ups a second are CPU the requester "
        "spends for the bench only: the CPU figures as a user's node has them; lag: none)",
    )
    args = p.parse_args()
    if args.lag_probe:
        os.environ["SWARMGET_LOOP_LAG_PROBE"] = PROBE_INTERVAL  # the nodes inherit it
    else:
        os.environ.pop("SWARMGET_LOOP_LAG_PROBE", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in (int(x) for x in args.helpers.split(",")):
        want = args.size or int((n + 1) * args.rate * args.seconds)
        size = max(MiB, want // MiB * MiB)
        data = ensure_test_file(args.cache_dir, size)
        digest = cached_sha256(data)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="swarmget-bench-rcpu-") as tmp:
            with running_origin(data, args.rate) as url:
                root = Path(tmp) / "swarm"
                try:
                    row = asyncio.run(
                        one_run(
                            n, url, digest, size, args.rate, root, args.profile, args.helper_nice
                        )
                    )
                finally:
                    if args.logs is not None:  # the requester's log (a stall log, say)
                        args.logs.mkdir(parents=True, exist_ok=True)
                        shutil.copy(root / "node0.log", args.logs / f"requester-{n}.log")
        row["helper_nice"] = args.helper_nice
        row["lag_probe"] = args.lag_probe
        row["label"] = args.label
        print(json.dumps(row), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
