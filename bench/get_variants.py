"""What the ``get`` start-up benches share (``get_node_startup.py``, ``get_hub_startup.py``):
source-tree variants of the ``swarmget get`` process, run in alternating order, each run's
file checked against the origin's sha256.

A variant is ``LABEL=DIR`` (``--src``, repeatable): DIR goes first on ``PYTHONPATH`` of the
``get`` process only (the hub and nodes run this checkout), so an older checkout compares
with ``--src before=/old/src --src after=src``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class GetRun:
    """One ``get`` process: its wall time (exec → exit, as the bench saw it) and its
    ``--json`` answer."""

    wall: float
    answer: dict[str, Any]


def parser(description: str, *, repeat: int) -> argparse.ArgumentParser:
    """The common options: ``--src LABEL=DIR`` (repeatable), ``--repeat``, ``--size``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--src", action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--size", type=int, default=1 * MiB, help="bytes (default 1 MiB)")
    return p


def variants(specs: Sequence[str]) -> dict[str, Path]:
    """``LABEL=DIR`` specs as ``{label: resolved dir}``."""
    found: dict[str, Path] = {}
    for spec in specs:
        label, sep, where = spec.partition("=")
        if not sep or not label or not where:
            raise SystemExit(f"--src wants LABEL=DIR, not {spec!r}")
        found[label] = Path(where).resolve()
    return found


def rounds(chosen: dict[str, Path], repeat: int) -> Iterator[tuple[str, Path]]:
    """``repeat`` rounds over the variants, each round starting one further along, so that
    no variant always runs first (or right after another)."""
    order = list(chosen.items())
    for round_ in range(repeat):
        shift = round_ % len(order)
        yield from order[shift:] + order[:shift]


async def run_get(src: Path, url: str, out: Path, extra: Sequence[str]) -> GetRun:
    """``swarmget get URL -o OUT --json --force EXTRA...`` with ``src`` first on its path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, "-m", "swarmget.cli", "get", url, "-o", str(out), "--json", "--force"]
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, *extra, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"get failed ({proc.returncode}): {stderr.decode()}")
    answer: dict[str, Any] = json.loads(stdout)
    return GetRun(wall, answer)


async def measure(
    chosen: dict[str, Path],
    repeat: int,
    expected_sha256: str,
    one: Callable[[str, Path, Path], Awaitable[GetRun]],
    out_dir: Path,
) -> dict[str, list[GetRun]]:
    """Every variant's runs: ``one(label, src, out)`` per turn of ``rounds``; each file is
    checked against ``expected_sha256`` and removed."""
    runs: dict[str, list[GetRun]] = {label: [] for label in chosen}
    for label, src in rounds(chosen, repeat):
        out = out_dir / f"{label}.bin"
        run = await one(label, src, out)
        if hashlib.sha256(out.read_bytes()).hexdigest() != expected_sha256:
            raise RuntimeError(f"{label}: wrong bytes")
        runs[label].append(run)
        out.unlink()
    return runs


def load_line() -> str:
    return f"load average: {os.getloadavg()[0]:.2f} (1 min)"
