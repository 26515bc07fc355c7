"""Bytes the scheduler counts as delivered but the part file never got are fetched again.

A lost write is a bug (one was found: ``test_batch_writer.py``), never an input; but with
no digest known nothing else would notice the hole, and the file would be handed over with
zeros in it. The run compares what the scheduler counts done with what is on disk before it
verifies: a hole is fetched again (at most ``MAX_REFILLS`` times), then the run fails with
the partial file kept. The lost write is simulated by a writer that drops claimed chunks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmget.core import events as ev
from swarmget.core.ranges import ByteRange
from swarmget.engine import DownloadSpec, streams
from swarmget.engine.segmented import MAX_REFILLS
from swarmget.engine.writer import BatchWriter
from swarmget.run.local import LocalOptions, open_local_download
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024
BOUND = 30.0


class LosingWriter(BatchWriter):
    """Drops claimed chunks at or after ``FROM`` (``times`` chunks in all, over the run)."""

    FROM = 1 * MiB
    times = 1
    lost: list[tuple[int, int]] = []

    async def add(self, offset: int, data: memoryview) -> None:
        cls = type(self)
        if offset >= cls.FROM and len(cls.lost) < cls.times:
            cls.lost.append((offset, data.nbytes))
            return
        await super().add(offset, data)


@pytest.fixture
def losing(monkeypatch: pytest.MonkeyPatch) -> type[LosingWriter]:
    LosingWriter.lost = []
    monkeypatch.setattr(streams, "BatchWriter", LosingWriter)
    return LosingWriter


async def _run(origin: TestOrigin, tmp_path: Path, events: list[ev.Event]) -> Path:
    spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "f.bin")
    async with asyncio.timeout(BOUND):
        async with open_local_download(spec, LocalOptions(connections=3)) as download:
            try:
                return (await download.run()).path
            finally:
                events.extend(download.events)


async def test_a_lost_write_is_fetched_again_not_handed_over_as_a_hole(
    tmp_path: Path, losing: type[LosingWriter]
) -> None:
    async with open_test_origin() as origin:
        origin.add_generated("f.bin", 4 * MiB, seed=9)
        events: list[ev.Event] = []
        path = await _run(origin, tmp_path, events)
        served = origin.stats().served
    assert len(losing.lost) == 1
    assert path.read_bytes() == origin.content("f.bin")
    start, length = losing.lost[0]
    covering = [s for s in served if s.start <= start and start + length <= s.end_exclusive]
    assert len(covering) >= 2  # the lost bytes were asked for again
    told = [e for e in events if isinstance(e, ev.Refetched)]
    assert [e.cause for e in told if e.cause is ev.RefetchCause.NOT_ON_DISK] == [
        ev.RefetchCause.NOT_ON_DISK
    ]
    hole = next(e for e in told if e.cause is ev.RefetchCause.NOT_ON_DISK)
    assert hole.ranges == (ByteRange(start, start + length),)
    assert ev.to_json(hole)["cause"] == "not_on_disk"
    back = ev.from_json(ev.to_json(hole))
    assert isinstance(back, ev.Refetched)
    assert (back.ranges, back.cause) == (hole.ranges, hole.cause)


async def test_a_hole_that_stays_ends_the_run_with_the_part_kept(
    tmp_path: Path, losing: type[LosingWriter]
) -> None:
    losing.times = 1000  # every chunk from 1 MiB on, every time
    async with open_test_origin() as origin:
        origin.add_generated("f.bin", 2 * MiB, seed=9)
        events: list[ev.Event] = []
        with pytest.raises(RuntimeError, match="still not on disk"):
            await _run(origin, tmp_path, events)
    assert (tmp_path / "f.bin.part").exists()
    assert not (tmp_path / "f.bin").exists()
    refills = [e for e in events if isinstance(e, ev.Refetched) and e.cause.value == "not_on_disk"]
    assert len(refills) == MAX_REFILLS >= 1
