"""The README's first command: a self-contained demo on loopback, no arguments needed.

Starts swarmget's test origin on 127.0.0.1 with a per-client-IP bandwidth cap (how a
per-machine internet cap is simulated on one machine), downloads a generated file with the
segmented engine, verifies it against the origin's own digest and prints a small table.
Everything runs in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from swarmget.core.digests import Digest
from swarmget.node.engine import DownloadResult, DownloadSpec
from swarmget.node.local import LocalOptions, open_local_download
from swarmget.progress import human_bytes, watch_progress
from swarmget.testing.origin import open_test_origin

MiB = 1024 * 1024


async def run_demo(size: int, cap: float, connections: int, console: Console) -> DownloadResult:
    async with open_test_origin(rate_per_ip=cap) as origin:
        origin.add_generated("demo.bin", size, seed=2026)
        console.print(
            f"test origin at {origin.base_url}: {human_bytes(size)} file, "
            f"each client IP capped at {human_bytes(cap)}/s"
        )
        expected = Digest("sha256", origin.expected_sha256("demo.bin"))
        with tempfile.TemporaryDirectory(prefix="swarmget-demo-") as tmp:
            spec = DownloadSpec(
                url=origin.url("demo.bin"), output=Path(tmp) / "demo.bin", checksums=(expected,)
            )
            options = LocalOptions(connections=connections)
            async with open_local_download(spec, options) as download:
                shown = console if console.is_terminal else None
                return await watch_progress(download, shown)


def _table(result: DownloadResult) -> Table:
    table = Table(title="swarmget demo: one host, capped origin")
    for col in ("source", "bytes", "failures"):
        table.add_column(col)
    for s in result.sources:
        table.add_row(s.source_id, human_bytes(s.claimed), str(s.failures))
    rate = result.size / result.elapsed if result.elapsed else 0.0
    table.caption = (
        f"{human_bytes(result.size)} in {result.elapsed:.1f}s ({human_bytes(rate)}/s), "
        f"{', '.join(result.verified)} verified"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarmget.demo", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=48)
    parser.add_argument("--cap-mib", type=float, default=8.0, help="per-IP cap, MiB/s")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    result = asyncio.run(
        run_demo(args.size_mib * MiB, args.cap_mib * MiB, args.connections, console)
    )
    console.print(_table(result))
    console.print(f"demo finished in {time.monotonic() - started:.1f}s; temporary files removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
