"""A whole-file digest that matches ends the download without waiting for sample checks.

Helper streams are sampled against the origin once their bytes are on disk; each check is a
round trip to the origin. When a whole-file digest is known (``--checksum``, ``Repr-Digest``)
and only checks are still out once every byte is on disk, the engine compares the digest at
once: a match proves every byte, and the checks are dropped. A mismatch lets them go on
(they find the liar, whose bytes are fetched again) and the digest is compared again.

The origin is made slow (``first_byte_delay``) right after the probe, through ``admit``:
only the sample checks talk to it after that, so they are deterministically the last thing
left. No timing is asserted: a run that waited for the slow checks would exceed ``BOUND``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from swarmget.core import events as ev
from swarmget.core.digests import parse_checksum_spec
from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import Download, DownloadSpec
from swarmget.engine.checks import SAMPLE_FIRST_WINDOW
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.sources import Play, ScriptedSource

MiB = 1024 * 1024
BOUND = 30.0  # seconds: far below what waiting for the slowed checks would take
SLOW = 600.0  # the origin's first-byte delay once the probe is done (first test)
NO_STALLS = SchedulerConfig(stall_timeout=600.0, min_piece=256 * 1024)


def slow_origin_after_probe(
    origin: TestOrigin, delay: float
) -> Callable[[OriginInfo], Awaitable[None]]:
    async def admit(info: OriginInfo) -> None:
        origin.configure(first_byte_delay=delay)

    return admit


def spec_for(origin: TestOrigin, out: Path) -> DownloadSpec:
    checksum = parse_checksum_spec(f"sha256:{origin.expected_sha256('f.bin')}")
    return DownloadSpec(
        url=origin.url("f.bin"),
        output=out,
        checksums=(checksum,),
        scheduler=NO_STALLS,
        verify_sample=1.0,
    )


async def test_a_matching_digest_ends_the_download_without_the_checks(tmp_path: Path) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 3 * MiB + 7, seed=9)
        content = origin.content("f.bin")
        helpers = [ScriptedSource(f"helper{i}", content, slots=2) for i in range(2)]
        download = Download(
            spec_for(origin, tmp_path / "f.bin"),
            OriginClient(session),
            sources=helpers,
            admit=slow_origin_after_probe(origin, SLOW),
        )
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content
    assert result.verified == ("sha256",)
    assert result.verification.helper_streams > 0
    assert result.verification.sampled_streams == 0  # none came back: none was needed


async def test_a_digest_that_does_not_match_yet_lets_the_checks_find_the_liar(
    tmp_path: Path,
) -> None:
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 3 * MiB + 7, seed=9)
        content = origin.content("f.bin")
        liar = ScriptedSource("liar", content, slots=1, script=[Play.CORRUPT])
        honest = ScriptedSource("honest", content, slots=2)
        download = Download(
            spec_for(origin, tmp_path / "f.bin"),
            OriginClient(session),
            sources=[liar, honest],
            admit=slow_origin_after_probe(origin, 1.0),  # the checks come back after the bytes
        )
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content  # the liar's bytes were fetched again
    assert result.verified == ("sha256",)
    banned = [e.source_id for e in download.events if isinstance(e, ev.Banned)]
    assert banned == ["liar"]
    assert result.verification.sampled_streams > 0


def spec_with_digest(origin: TestOrigin, out: Path) -> DownloadSpec:
    """The default share sampled (1 %), a digest known, small pieces: many helper streams."""
    checksum = parse_checksum_spec(f"sha256:{origin.expected_sha256('f.bin')}")
    return DownloadSpec(
        url=origin.url("f.bin"), output=out, checksums=(checksum,), scheduler=NO_STALLS
    )


async def test_with_a_digest_only_each_helpers_first_stream_is_checked(tmp_path: Path) -> None:
    """The digest proves the file: a helper's later streams are not sampled (their checks
    are held and dropped), so no origin bytes go to them; its first stream still is."""
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 8 * MiB + 3, seed=4)
        content = origin.content("f.bin")
        helpers = [ScriptedSource(f"helper{i}", content, slots=2) for i in range(2)]
        download = Download(
            spec_with_digest(origin, tmp_path / "f.bin"), OriginClient(session), sources=helpers
        )
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert result.path.read_bytes() == content
    assert result.verified == ("sha256",)
    report = result.verification
    assert report.helper_streams > 2 * len(helpers)  # many streams each: holding was tried
    assert report.sampled_streams <= len(helpers)  # at most each helper's first
    assert report.sampled_bytes <= len(helpers) * SAMPLE_FIRST_WINDOW  # no 1 % of the rest


async def test_with_a_digest_a_helper_that_lies_after_its_first_stream_is_found(
    tmp_path: Path,
) -> None:
    """Its first stream passes its check; its later ones are held: the digest fails, the
    held checks find it, it is banned and its bytes fetched again; the file is right."""
    async with open_test_origin() as origin, aiohttp.ClientSession() as session:
        origin.add_generated("f.bin", 8 * MiB + 3, seed=4)
        content = origin.content("f.bin")
        liar = ScriptedSource("liar", content, slots=1, script=[Play.SERVE], then=Play.CORRUPT)
        honest = ScriptedSource("honest", content, slots=2)
        download = Download(
            spec_with_digest(origin, tmp_path / "f.bin"),
            OriginClient(session),
            sources=[liar, honest],
        )
        async with asyncio.timeout(BOUND):
            result = await download.run()
    assert len(liar.asked) >= 2  # it lied at least once after its first stream
    assert result.path.read_bytes() == content
    assert result.verified == ("sha256",)
    banned = [e.source_id for e in download.events if isinstance(e, ev.Banned)]
    assert banned == ["liar"]
