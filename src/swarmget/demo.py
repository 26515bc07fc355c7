"""The README's first command: a local demo swarm on loopback, no arguments needed.

Starts, on this machine: swarmget's test origin on 127.0.0.1, capping every client IP address
at 8 MiB/s (how a per-machine internet cap is simulated on one host), a hub, and four nodes
on 127.0.0.2 ... 127.0.0.5, each a separate process with its own source address. Node 1
downloads the same file twice through its local API: first alone, then with the swarm. Both
copies are verified against the origin's sha256. Prints a table, then stops everything and
removes its temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from swarmget.core.lifecycle import DownloadState, parse_state, still_going
from swarmget.core.units import human_bytes
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

MiB = 1024 * 1024


async def _download(
    api: NodeApi, origin: TestOrigin, label: str, helpers: list[str] | None, console: Console
) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    checksum = f"sha256:{origin.expected_sha256('demo.bin')}"
    download_id = await api.start(
        origin.url("demo.bin"), output=label, checksums=[checksum], helpers=helpers
    )
    columns = (BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)
        while True:
            _, data = await api.call("GET", f"/v1/downloads/{download_id}")
            progress = data.get("progress") or {}
            bar.update(task, completed=progress.get("done", 0), total=progress.get("size"))
            if not still_going(data):
                break
            await asyncio.sleep(0.2)
    if parse_state(data["state"]) is not DownloadState.DONE:
        raise RuntimeError(f"{label} download {data['state']}: {data['error']}")
    return time.monotonic() - started, data


async def _wait_for_peers(api: NodeApi, count: int) -> None:
    for _ in range(100):  # 20 s at most
        if len(await api.peers()) >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the nodes did not all register with the hub within 20 s")


async def run_demo(size: int, cap: float, nodes: int, console: Console) -> Table:
    async with open_test_origin(rate_per_ip=cap) as origin:
        origin.add_generated("demo.bin", size, seed=2026)
        console.print(
            f"origin {origin.base_url}: {human_bytes(size)} file, "
            f"every client IP capped at {human_bytes(cap)}/s"
        )
        with tempfile.TemporaryDirectory(prefix="swarmget-demo-") as tmp:
            async with (
                open_local_swarm(Path(tmp), nodes) as swarm,
                aiohttp.ClientSession() as session,
            ):
                console.print(
                    f"hub {swarm.hub.info['url']}, nodes on "
                    + ", ".join(n.address for n in swarm.nodes)
                )
                api = NodeApi(session, swarm.node(0))
                await _wait_for_peers(api, nodes - 1)
                alone_time, alone = await _download(api, origin, "alone.bin", [], console)
                console.print(f"alone: {alone_time:.1f}s")
                swarm_time, together = await _download(api, origin, "swarm.bin", None, console)
                console.print(f"with the swarm: {swarm_time:.1f}s")
                names = {n.node_id: f"{n.address} ({n.node_id})" for n in swarm.nodes}
                return _table(size, (alone_time, alone), (swarm_time, together), names)


def _table(
    size: int,
    alone: tuple[float, dict[str, Any]],
    swarm: tuple[float, dict[str, Any]],
    names: dict[str, str],
) -> Table:
    table = Table(title="swarmget demo: one file, alone vs. with the swarm")
    for col in ("run", "time", "rate", "speedup", "verified", "bytes fetched by each node"):
        table.add_column(col)
    for label, (seconds, data) in (("alone", alone), ("swarm", swarm)):
        shares = ", ".join(
            f"{names.get(s['id'], s['id']).split(' ')[0]}: {human_bytes(s['claimed'])}"
            for s in data["progress"]["sources"]
            if s["claimed"]
        )
        table.add_row(
            label,
            f"{seconds:.1f}s",
            f"{human_bytes(size / seconds)}/s",
            f"{alone[0] / seconds:.2f}x",
            ", ".join(data["result"]["verified"]) or "size",
            shares,
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarmget.demo", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--cap-mib", type=float, default=8.0, help="per-IP cap, MiB/s")
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    table = asyncio.run(run_demo(args.size_mib * MiB, args.cap_mib * MiB, args.nodes, console))
    console.print(table)
    console.print(f"demo finished in {time.monotonic() - started:.1f}s; everything stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
