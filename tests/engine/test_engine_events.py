"""The engine hands every event, as it happens, to whoever it was given as ``on_event``."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from swarmget.core import events as ev
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import open_test_origin

MiB = 1024 * 1024


async def test_a_download_reports_typed_events_and_they_are_counted(tmp_path: Path) -> None:
    seen: list[ev.Event] = []
    counters = ev.EventCounters()

    def on_event(event: ev.Event) -> None:
        seen.append(event)
        counters.count(event)

    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 3 * MiB)
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(spec, client, sources=[OriginSource(client, 2)], on_event=on_event)
        result = await download.run()
    assert result.path.read_bytes() == origin.content("f.bin")
    assert seen == list(download.events)
    assigned = [e for e in seen if isinstance(e, ev.Assigned)]
    assert assigned
    assert sum(e.range.length for e in assigned) >= 3 * MiB  # the ranges, as values
    assert isinstance(seen[-1], ev.Verified)
    assert seen[-1].path == str(result.path)
    assert (counters.stalls, counters.bans, counters.stream_failures) == (0, 0, 0)


async def test_a_dropped_stream_is_a_typed_failure_counted_once(tmp_path: Path) -> None:
    counters = ev.EventCounters()
    async with (
        open_test_origin(drop_after=256 * 1024, drop_count=1) as origin,
        aiohttp.ClientSession() as session,
    ):
        origin.add_generated("f.bin", 3 * MiB)
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(
            spec, client, sources=[OriginSource(client, 2)], on_event=counters.count
        )
        result = await download.run()
    assert result.path.read_bytes() == origin.content("f.bin")
    failures = [e for e in download.events if isinstance(e, ev.StreamFailed)]
    assert len(failures) == counters.stream_failures >= 1
    assert all(f.range.length > 0 and f.code for f in failures)
