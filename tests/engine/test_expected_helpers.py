"""``Download.expect_helpers`` (issue #14): the first pieces are sized for the swarm the hub
listed, not for the download's own connections alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from swarmget.core import events as ev
from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import open_test_origin

MiB = 1024 * 1024
BOUND = 30.0
CONFIG = SchedulerConfig(min_piece=64 * 1024)


async def first_pieces(tmp_path: Path, name: str, helper_slots: int | None) -> list[int]:
    """The lengths of the origin's first two pieces of an 8 MiB download (2 connections),
    with ``helper_slots`` expected (None: nothing said)."""
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 8 * MiB)
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / name, scheduler=CONFIG)
        seen: list[ev.Event] = []
        download = Download(spec, client, sources=[OriginSource(client, 2)], on_event=seen.append)
        if helper_slots is not None:
            download.expect_helpers(helper_slots)
        async with asyncio.timeout(BOUND):
            result = await download.run()
        assert result.path.read_bytes() == origin.content("f.bin")
    return [e.range.length for e in seen if isinstance(e, ev.Assigned)][:2]


async def test_the_first_pieces_are_sized_for_the_expected_helpers(tmp_path: Path) -> None:
    alone = await first_pieces(tmp_path, "alone.bin", None)
    swarm = await first_pieces(tmp_path, "swarm.bin", 30)  # e.g. ten listed peers of 3
    assert len(alone) == len(swarm) == 2
    assert max(swarm) * 4 < min(alone)


async def test_no_helpers_expected_any_more_is_the_same_as_none(tmp_path: Path) -> None:
    assert await first_pieces(tmp_path, "a.bin", 0) == await first_pieces(tmp_path, "b.bin", None)


async def test_a_negative_number_of_slots_is_refused(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        download = Download(
            DownloadSpec(url="http://127.0.0.1:9/f.bin", output=tmp_path / "f.bin"),
            OriginClient(session),
        )
        with pytest.raises(ValueError, match="slots"):
            download.expect_helpers(-1)
