"""Failures reach the segmented run as exceptions raised in their task (no polling): the
download ends with the error itself, the part file kept for a later resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from swarmget.core import events as ev
from swarmget.core.errors import DownloadError, OriginChanged, StorageError
from swarmget.engine import Download, DownloadSpec
from swarmget.engine.segmented import first_error
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.testing.origin import open_test_origin
from swarmget.testing.sources import Play, ScriptedSource

MiB = 1024 * 1024
BOUND = 30.0  # seconds: every test is bounded; none should come near it


async def test_an_error_raised_in_a_stream_ends_the_download_as_itself(tmp_path: Path) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 2 * MiB)
        helper = ScriptedSource("helper", origin.content("f.bin"), then=OriginChanged("etag"))
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(spec, OriginClient(session), sources=[helper])
        async with asyncio.timeout(BOUND):
            with pytest.raises(OriginChanged, match="partial data is kept"):
                await download.run()
    assert (tmp_path / "f.bin.part").exists()
    assert not (tmp_path / "f.bin").exists()
    assert isinstance(download.events[-1], ev.Failed)
    assert download.events[-1].code == OriginChanged("").code


async def test_cancelling_keeps_what_was_written_and_a_rerun_resumes(tmp_path: Path) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 2 * MiB)
        content = origin.content("f.bin")
        client = OriginClient(session)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        slow = ScriptedSource("helper", content, script=[Play.HALF], then=Play.HANG)
        first = Download(spec, client, sources=[slow])
        task = asyncio.create_task(first.run())
        async with asyncio.timeout(BOUND):
            await slow.hanging.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (tmp_path / "f.bin.part").exists()
        good = ScriptedSource("helper", content)
        async with asyncio.timeout(BOUND):
            result = await Download(spec, client, sources=[good]).run()
    assert result.path.read_bytes() == content
    assert result.resumed_bytes >= slow.asked[0].length // 2 > 0


async def test_a_check_the_origin_cannot_answer_ends_the_download(tmp_path: Path) -> None:
    """A helper's stream cannot be compared with the origin (it keeps answering 503): the
    check raises in its task, and the download ends with that error, its data kept."""
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 1 * MiB)
        helper = ScriptedSource("helper", origin.content("f.bin"))

        async def then_refuse(info: OriginInfo) -> None:  # once probed, the origin refuses
            origin.configure(unavailable_count=1000, unavailable_status=500)

        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
        download = Download(spec, OriginClient(session), sources=[helper], admit=then_refuse)
        async with asyncio.timeout(BOUND):
            with pytest.raises(DownloadError) as caught:
                await download.run()
    assert type(caught.value) is DownloadError  # not a source's error: the download's
    assert (tmp_path / "f.bin.part").exists()
    assert isinstance(download.events[-1], ev.Failed)


def test_the_first_error_of_a_task_group_is_the_one_raised() -> None:
    first, second = StorageError("disk"), OriginChanged("etag")
    group = BaseExceptionGroup("tg", [BaseExceptionGroup("inner", [first]), second])
    assert first_error(group) is first
