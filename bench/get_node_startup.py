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

import asyncio
import statistics
import tempfile
from pathlib import Path

import get_variants
from get_variants import GetRun, measure, run_get

from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import open_local_swarm

COLUMNS = ("startup", "accepted", "verified → result", "result → exit", "wall")


def _phases(run: GetRun) -> dict[str, float]:
    """The phases of one ``get`` handed to the node, from its ``--json``."""
    answer = run.answer
    if answer["route"]["route"] != "node":
        raise RuntimeError(f"not handed to the node: {answer['route']}")
    command, timeline = answer["command_timeline"], answer["timeline"]
    startup, accepted, result = command["startup"], command["accepted"], command["result"]
    return {
        "startup": startup,
        "accepted": accepted,
        "verified → result": result - accepted - timeline["verified"],
        "result → exit": run.wall - startup - result,
        "wall": run.wall,
    }


async def run(variants: dict[str, Path], repeat: int, size: int) -> dict[str, list[GetRun]]:
    with tempfile.TemporaryDirectory(prefix="swarmget-bench-node-") as tmp:
        root = Path(tmp)
        async with open_test_origin() as origin, open_local_swarm(root / "swarm", 1) as swarm:
            origin.add_generated("small.bin", size, seed=7)
            node = swarm.node(0)
            extra = ("--state-dir", str(node.state_dir))

            async def one(label: str, src: Path, out: Path) -> GetRun:
                return await run_get(src, origin.url("small.bin"), out, extra)

            expected = origin.expected_sha256("small.bin")
            return await measure(variants, repeat, expected, one, node.download_dir)


def main() -> int:
    args = get_variants.parser(__doc__.split("\n\n")[0], repeat=7).parse_args()
    runs = asyncio.run(run(get_variants.variants(args.src), args.repeat, args.size))
    print(get_variants.load_line())
    print("| variant (median s) | " + " | ".join(COLUMNS) + " | runs |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for label, done in runs.items():
        phases = [_phases(r) for r in done]
        cells = [f"{statistics.median(p[c] for p in phases):.3f}" for c in COLUMNS]
        print(f"| {label} | " + " | ".join(cells) + f" | {len(phases)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
