"""Start-up of ``swarmget get URL --hub``: wall time of a small download with a swarm.

What it measures
    The wall time (process start to exit) of ``swarmget get URL --hub HUB --json`` for a
    small file (default 1 MiB) on loopback: a hub and two helper nodes (processes on
    127.0.0.1-3, ``swarmget.testing.swarm``), the test origin in this process, the requester
    speaking from 127.0.0.1. With a small file the time is mostly start-up: the interpreter,
    the imports, and whatever the ``--hub`` route does before and after the bytes.

    Each variant is a source tree (``--src LABEL=DIR``, put first on ``PYTHONPATH`` of the
    ``get`` process only; the hub and nodes run this checkout). Variants alternate every
    round, ``--repeat`` rounds; the report is the median and the spread per variant. Compare
    an older checkout with ``--src before=/path/to/old/src --src after=src``. The machine's
    other load skews single runs: look at the median, not one run.

How to run it
    PYTHONPATH=src .venv/bin/python bench/get_hub_startup.py --src after=src --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm

MiB = 1024 * 1024


async def _wait_registered(swarm: LocalSwarm, nodes: int) -> None:
    """Until every node sees all the others (at most 30 s)."""
    async with aiohttp.ClientSession() as session:
        apis = [NodeApi(session, swarm.node(i)) for i in range(nodes)]
        for _ in range(300):
            if all([len(await api.peers()) == nodes - 1 for api in apis]):
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the nodes did not register within 30 s")


async def _one_get(src: Path, url: str, swarm: LocalSwarm, out: Path) -> float:
    """The wall time of one ``get --hub`` run with ``src`` first on its path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [
        sys.executable, "-m", "swarmget.cli", "get", url, "-o", str(out), "--json", "--force",
        "--hub", swarm.hub_urls()[0], "--secret-file", str(swarm.secret_file),
        "--source-address", "127.0.0.1",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"get failed ({proc.returncode}): {stderr.decode()}")
    json.loads(stdout)  # the result, as JSON: it did not fail
    return wall


async def run(variants: dict[str, Path], repeat: int, size: int) -> dict[str, list[float]]:
    walls: dict[str, list[float]] = {label: [] for label in variants}
    with tempfile.TemporaryDirectory(prefix="swarmget-bench-hub-") as tmp:
        root = Path(tmp)
        async with (
            open_test_origin() as origin,
            open_local_swarm(root / "swarm", 2) as swarm,
        ):
            origin.add_generated("small.bin", size, seed=7)
            await _wait_registered(swarm, 2)
            for round_ in range(repeat):
                order = list(variants.items())
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for label, src in order:
                    out = root / f"{label}.bin"
                    wall = await _one_get(src, origin.url("small.bin"), swarm, out)
                    digest = hashlib.sha256(out.read_bytes()).hexdigest()
                    if digest != origin.expected_sha256("small.bin"):
                        raise RuntimeError(f"{label}: wrong bytes")
                    walls[label].append(wall)
                    out.unlink()
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=1 * MiB, help="bytes (default 1 MiB)")
    args = parser.parse_args()
    variants = {label: Path(d).resolve() for label, _, d in (s.partition("=") for s in args.src)}
    walls = asyncio.run(run(variants, args.repeat, args.size))
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min)")
    print("| variant | median wall (s) | min | max | runs |")
    print("|---|---|---|---|---|")
    for label, values in walls.items():
        print(
            f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | "
            f"{max(values):.2f} | {len(values)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
