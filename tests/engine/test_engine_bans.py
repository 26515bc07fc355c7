"""A source banned for bad data loses its leases still in flight (the scheduler's ``Cancel``
actions of the ban are carried out), and their ranges are fetched from another source."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp

from swarmget.core import events as ev
from swarmget.core.ranges import RangeSet
from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient
from swarmget.testing.origin import open_test_origin
from swarmget.testing.sources import Play, ScriptedSource

MiB = 1024 * 1024
BOUND = 30.0  # seconds; the stall timeout below is longer, so only the ban can free the leases

#: nothing but the ban takes a lease away: no steals, no endgame copies, no stall in time
QUIET = SchedulerConfig(
    steal=False, endgame=False, rescue_backlog=0, stall_timeout=600.0, min_piece=256 * 1024
)


async def test_a_banned_liar_loses_its_leases_in_flight_and_they_are_refetched(
    tmp_path: Path,
) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 4 * MiB)
        content = origin.content("f.bin")
        client = OriginClient(session)
        # its first stream is corrupt (caught by the sample), every later one hangs
        liar = ScriptedSource("liar", content, slots=2, script=[Play.CORRUPT], then=Play.HANG)
        spec = DownloadSpec(
            url=origin.url("f.bin"), output=tmp_path / "f.bin", scheduler=QUIET, verify_sample=1.0
        )
        download = Download(spec, client, sources=[OriginSource(client, 2), liar])
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content
    events = list(download.events)
    (ban,) = [e for e in events if isinstance(e, ev.Banned)]
    assert ban.source_id == "liar"
    hung = liar.asked[1:]  # every range it was given after its corrupt one
    assert hung
    revoked = [
        e
        for e in events
        if isinstance(e, ev.Revoked) and e.source_id == "liar" and e.cause is ev.CancelCause.BANNED
    ]
    assert len(revoked) == len(hung)
    after = events[events.index(ban) :]
    refetched = RangeSet(e.range for e in after if isinstance(e, ev.Assigned))
    assert all(e.source_id == "origin" for e in after if isinstance(e, ev.Assigned))
    assert all(refetched.contains(r) for r in [*hung, liar.asked[0]])
    # what went back is told as values: the liar's bad bytes, and the leases it lost
    told = [e for e in events if isinstance(e, ev.Refetched)]
    bad = RangeSet(r for e in told if e.cause is ev.RefetchCause.BAD_DATA for r in e.ranges)
    lost = RangeSet(r for e in told if e.cause is ev.RefetchCause.LOST_LEASE for r in e.ranges)
    assert bad.contains(liar.asked[0])
    assert all(lost.contains(r) for r in hung)
    assert all(e.source_ids == ("liar",) for e in told)


async def test_a_source_banned_for_short_bodies_is_told_and_loses_its_leases(
    tmp_path: Path,
) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 4 * MiB)
        content = origin.content("f.bin")
        client = OriginClient(session)
        short = ScriptedSource("short", content, slots=2, then=Play.SHORT)
        one_strike = dataclasses.replace(QUIET, max_broken=1)  # one short body bans
        spec = DownloadSpec(
            url=origin.url("f.bin"), output=tmp_path / "f.bin", scheduler=one_strike
        )
        download = Download(spec, client, sources=[OriginSource(client, 2), short])
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content
    bans = [e for e in download.events if isinstance(e, ev.Banned)]
    assert [b.source_id for b in bans] == ["short"]
    (state,) = [s for s in result.sources if s.source_id == "short"]
    assert state.ban_reason is not None


async def test_a_stalled_lease_is_told_as_refetched_and_counted(tmp_path: Path) -> None:
    counters = ev.EventCounters()
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 2 * MiB)
        content = origin.content("f.bin")
        client = OriginClient(session)
        stuck = ScriptedSource("stuck", content, script=[Play.HANG])
        quick_stall = dataclasses.replace(QUIET, stall_timeout=0.2)
        spec = DownloadSpec(
            url=origin.url("f.bin"), output=tmp_path / "f.bin", scheduler=quick_stall
        )
        download = Download(
            spec, client, sources=[OriginSource(client, 1), stuck], on_event=counters.count
        )
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content
    told = [e for e in download.events if isinstance(e, ev.Refetched)]
    assert told
    assert told[0].cause is ev.RefetchCause.LOST_LEASE
    assert told[0].source_ids == ("stuck",)
    assert told[0].ranges == (stuck.asked[0],)  # it delivered nothing: all of it went back
    assert counters.stalls >= 1
    assert counters.refetches == len(told)
    assert counters.refetched_bytes == sum(e.length for e in told) == download.reassigned_bytes()


async def test_a_liar_caught_before_a_restart_stays_banned_after_it(tmp_path: Path) -> None:
    """The file changes on the server after the liar was caught: the download starts over
    with a new scheduler, and the liar must not deliver (unchecked) bytes to it."""
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 4 * MiB)
        origin.configure(etag_change_after=3 * MiB, rate_per_conn=2 * MiB)
        client = OriginClient(session)
        liar = ScriptedSource(
            "liar", origin.content("f.bin"), slots=1, script=[Play.CORRUPT], then=Play.CORRUPT
        )
        spec = DownloadSpec(
            url=origin.url("f.bin"),
            output=tmp_path / "f.bin",
            scheduler=QUIET,
            restart_if_changed=True,
        )
        download = Download(spec, client, sources=[OriginSource(client, 2), liar])
        async with asyncio.timeout(BOUND):
            result = await download.run()
        assert result.path.read_bytes() == origin.content("f.bin", version=1)
    events = list(download.events)
    restarts = [i for i, e in enumerate(events) if isinstance(e, ev.Restarted)]
    assert restarts, "the file did not change during the download"
    caught = next(i for i, e in enumerate(events) if isinstance(e, ev.BadData))
    assert caught < restarts[0]
    after = events[restarts[0] :]
    assert not [e for e in after if isinstance(e, ev.Assigned) and e.source_id == "liar"]
