"""Start-up and end of ``swarmget get URL -o FILE`` handed to the local node (issue #14).

What it measures
    ``swarmget get URL -o FILE --json`` for a small file (default 1 MiB) on loopback, handed
    to a node running on 127.0.0.2 (with its hub on 127.0.0.1, ``swarmget.testing.swarm``),
    the test origin in this process. With a small file the time is mostly the command's
    own: the interpreter, the imports, the hand-off to the node, and the way from the node's
    "verified" to the process's exit. Per run, from the command's ``--json``:

    - ``startup``: exec → ``get``'s code runs (Python and the imports, ``/proc/self/stat``);
    - ``accepted``: ``get``'s code runs → the node answered the ``POST`` (it took it);
    - ``verified → result``: the node's "verified" (file in place) → the command has the
      answer (``get``'s ``result`` minus ``accepted`` minus the node's timeline's
      ``verified``: the node counts from when it made the download, a few ms before its
      answer, so this is a slight over-estimate);
    - ``result → exit``: the rest of the wall time (printing, closing, the interpreter's
      end);
    - ``wall``: exec → exit, as this script saw it.

    Each variant is a source tree (``--src LABEL=DIR``, put first on ``PYTHONPATH`` of the
    ``get`` process only; the hub and node run this checkout). Variants alternate every
    round, ``--repeat`` rounds; the report is the median per variant.

How to run it
    PYTHONPATH=src .venv/bin/python bench/get_node_startup.py --src before=OLD/src \
        --src after=src --repeat 7
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
from typing import Any

from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import LocalSwarm, open_local_swarm

MiB = 1024 * 1024
COLUMNS = ("startup", "accepted", "verified → result", "result → exit", "wall")


async def _one_get(src: Path, url: str, swarm: LocalSwarm, out: Path) -> dict[str, float]:
    """The phases of one ``get`` run with ``src`` first on its path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    node = swarm.node(0)
    args = [
        sys.executable, "-m", "swarmget.cli", "get", url, "-o", str(out), "--json", "--force",
        "--state-dir", str(node.state_dir),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"get failed ({proc.returncode}): {stderr.decode()}")
    answer: dict[str, Any] = json.loads(stdout)
    if answer["route"]["route"] != "node":
        raise RuntimeError(f"not handed to the node: {answer['route']}")
    command, timeline = answer["command_timeline"], answer["timeline"]
    startup, accepted, result = command["startup"], command["accepted"], command["result"]
    return {
        "startup": startup,
        "accepted": accepted,
        "verified → result": result - accepted - timeline["verified"],
        "result → exit": wall - startup - result,
        "wall": wall,
    }


Runs = dict[str, list[dict[str, float]]]  # each variant's runs, each run's phases


async def run(variants: dict[str, Path], repeat: int, size: int) -> Runs:
    runs: Runs = {label: [] for label in variants}
    with tempfile.TemporaryDirectory(prefix="swarmget-bench-node-") as tmp:
        root = Path(tmp)
        async with open_test_origin() as origin, open_local_swarm(root / "swarm", 1) as swarm:
            origin.add_generated("small.bin", size, seed=7)
            for round_ in range(repeat):
                order = list(variants.items())
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for label, src in order:
                    out = swarm.node(0).download_dir / f"{label}.bin"
                    phases = await _one_get(src, origin.url("small.bin"), swarm, out)
                    digest = hashlib.sha256(out.read_bytes()).hexdigest()
                    if digest != origin.expected_sha256("small.bin"):
                        raise RuntimeError(f"{label}: wrong bytes")
                    runs[label].append(phases)
                    out.unlink()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", type=int, default=1 * MiB, help="bytes (default 1 MiB)")
    args = parser.parse_args()
    variants = {label: Path(d).resolve() for label, _, d in (s.partition("=") for s in args.src)}
    runs = asyncio.run(run(variants, args.repeat, args.size))
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min)")
    print("| variant (median s) | " + " | ".join(COLUMNS) + " | runs |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for label, phases in runs.items():
        cells = [f"{statistics.median(p[c] for p in phases):.3f}" for c in COLUMNS]
        print(f"| {label} | " + " | ".join(cells) + f" | {len(phases)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
