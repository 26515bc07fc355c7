"""A download's timeline (``engine.Timeline``): every phase marked on the engine's clock, in
the order the phases happen, with a first byte for every source that sent one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import open_test_origin
from swarmget.testing.sources import ScriptedSource

MiB = 1024 * 1024
BOUND = 30.0


async def test_a_segmented_download_marks_every_phase_in_order(tmp_path: Path) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 4 * MiB)
        content = origin.content("f.bin")
        client = OriginClient(session)
        helper = ScriptedSource("helper", content, slots=2)
        spec = DownloadSpec(
            url=origin.url("f.bin"),
            output=tmp_path / "f.bin",
            scheduler=SchedulerConfig(min_piece=256 * 1024),
        )
        download = Download(spec, client, sources=[OriginSource(client, 2)])
        download.add_source(helper)  # joins before the run: marked at once
        download.hub_answered(3)
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content
    t = result.timeline
    assert t.hub is not None
    assert t.hub_peers == 3
    assert t.probe is not None
    assert t.last_byte is not None
    assert t.verified is not None
    assert set(t.joined) == {"helper"}
    assert set(t.first_byte) == {"origin", "helper"}
    assert 0 <= t.hub <= t.probe
    assert all(t.probe <= first <= t.last_byte for first in t.first_byte.values())
    assert set(t.last_data) == {"origin", "helper"}  # when each source ran dry
    assert all(t.first_byte[s] <= t.last_data[s] <= t.last_byte for s in t.last_data)
    assert max(t.last_data.values()) == t.last_byte
    assert t.last_byte <= t.verified == result.elapsed
    names = [name for name, _ in t.points()]
    assert names[-2:] == ["last_byte", "verified"]
    assert download.timeline().verified == t.verified  # the snapshot after the end: the same


async def test_a_single_stream_download_marks_its_phases(tmp_path: Path) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 1 * MiB)
        origin.configure(no_content_length=True)  # no size, no ranges: one stream
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(spec, client, sources=[OriginSource(client, 2)])
        async with asyncio.timeout(BOUND):
            result = await download.run()
    t = result.timeline
    assert result.mode == "single-stream"
    assert t.hub is None
    assert t.joined == {}
    assert t.probe is not None
    assert t.last_byte is not None
    assert t.verified is not None
    assert t.probe <= t.first_byte["origin"] <= t.last_byte <= t.verified
    assert t.last_data == {"origin": t.last_byte}
