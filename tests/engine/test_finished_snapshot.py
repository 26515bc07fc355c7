"""A finished download's snapshot stays as it was at its end (issue #16: in ``swarmget
status`` a finished download's elapsed time kept growing and its rate decayed)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import open_test_origin

MiB = 1024 * 1024


async def test_elapsed_and_rate_stop_at_the_end(tmp_path: Path) -> None:
    offset = [0.0]  # the test moves the engine's clock on after the end

    def clock() -> float:
        return time.monotonic() + offset[0]

    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 2 * MiB)
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(spec, client, sources=[OriginSource(client, 2)], clock=clock)
        await download.run()
    at_end = download.statistics()
    offset[0] += 3600.0
    later = download.statistics()
    assert later.elapsed == at_end.elapsed
    assert later.rate == at_end.rate
    assert [s.rate for s in later.sources] == [s.rate for s in at_end.sources]
