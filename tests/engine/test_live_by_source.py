"""A download's bytes by kind of source are live (#15, "Visible"): the progress counts them
with every chunk, not only at the end, so a display can show origin vs LAN bytes while the
download runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from swarmget.core.byte_sources import BytesBySource
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import open_test_origin

MiB = 1024 * 1024
SIZE = 3 * MiB
POLLS = 400  # at most, 0.05 s apart


async def test_the_counts_grow_while_the_download_runs(tmp_path: Path) -> None:
    async with (
        open_test_origin(rate_per_ip=1 * MiB) as origin,
        aiohttp.ClientSession() as session,
    ):
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(spec, client, sources=[OriginSource(client, 2)])
        seen: list[tuple[int, BytesBySource]] = []
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            running = tg.create_task(download.run())
            for _ in range(POLLS):
                if running.done():
                    break
                now = download.statistics()
                if 0 < now.done < SIZE:
                    seen.append((now.done, now.by_source))
                await asyncio.sleep(0.05)
    assert seen, "never saw the download half-way"
    for done, counts in seen:  # mid-way: the counts cover what is done, nothing from the LAN
        assert counts.origin >= done
        assert counts.lan == counts.helper == 0
    final = download.statistics().by_source
    assert final.origin >= SIZE > seen[0][1].origin
