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

import asyncio
import statistics
import tempfile
from pathlib import Path

import aiohttp
import get_variants
from get_variants import GetRun, measure, run_get

from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm


async def _wait_registered(swarm: LocalSwarm, nodes: int) -> None:
    """Until every node sees all the others (at most 30 s)."""
    async with aiohttp.ClientSession() as session:
        apis = [NodeApi(session, swarm.node(i)) for i in range(nodes)]
        for _ in range(300):
            if all([len(await api.peers()) == nodes - 1 for api in apis]):
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the nodes did not register within 30 s")


async def run(variants: dict[str, Path], repeat: int, size: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="swarmget-bench-hub-") as tmp:
        root = Path(tmp)
        async with (
            open_test_origin() as origin,
            open_local_swarm(root / "swarm", 2) as swarm,
        ):
            origin.add_generated("small.bin", size, seed=7)
            await _wait_registered(swarm, 2)
            extra = (
                "--hub", swarm.hub_urls()[0], "--secret-file", str(swarm.secret_file),
                "--source-address", "127.0.0.1",
            )  # fmt: skip

            async def one(label: str, src: Path, out: Path) -> GetRun:
                return await run_get(src, origin.url("small.bin"), out, extra)

            expected = origin.expected_sha256("small.bin")
            runs = await measure(variants, repeat, expected, one, root)
    return {label: [r.wall for r in done] for label, done in runs.items()}


def main() -> int:
    args = get_variants.parser(__doc__.split("\n\n")[0], repeat=5).parse_args()
    walls = asyncio.run(run(get_variants.variants(args.src), args.repeat, args.size))
    print(get_variants.load_line())
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
