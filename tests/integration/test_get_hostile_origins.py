"""Single-host downloads against a real test origin on loopback, with every misbehaviour.

Each test ends with either a correct file (sha256 against the origin's own content) or the
documented clear error, and nothing corrupted under the destination.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.core.digests import Digest
from swarmget.core.errors import (
    ChecksumMismatch,
    DestinationExists,
    DownloadError,
    NoSourcesLeft,
    OriginChanged,
    OriginUnusable,
)
from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import DownloadResult, DownloadSpec
from swarmget.run.local import LocalOptions, open_local_download
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024
MiB = 1024 * KiB
SIZE = 6 * MiB + 12345  # not a multiple of anything
FAST = SchedulerConfig(min_piece=256 * KiB, stall_timeout=3.0, backoff_initial=0.05)


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=7)
        yield o


async def fetch(url: str, out: Path, *, connections: int = 4, **spec_kw: object) -> DownloadResult:
    spec = DownloadSpec(url=url, output=out, scheduler=FAST, **spec_kw)  # type: ignore[arg-type]
    async with open_local_download(spec, LocalOptions(connections=connections)) as download:
        return await download.run()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


async def test_plain_segmented_download(origin: TestOrigin, tmp_path: Path) -> None:
    result = await fetch(origin.url("f.bin"), tmp_path / "out")
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")
    assert result.mode == "segmented"
    assert listing(tmp_path) == {"out"}  # no .part or control file left behind
    ranged = [r for r in origin.stats().served if r.status == 206]
    assert len(ranged) >= 4


async def test_origin_that_ignores_ranges_falls_back_to_one_stream(
    origin: TestOrigin, tmp_path: Path
) -> None:
    origin.configure(ignore_range=True)
    result = await fetch(origin.url("f.bin"), tmp_path / "out")
    assert result.mode == "single-stream"
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")
    assert listing(tmp_path) == {"out"}


async def test_origin_without_content_length_streams_once(
    origin: TestOrigin, tmp_path: Path
) -> None:
    origin.configure(no_content_length=True)
    result = await fetch(origin.url("f.bin"), tmp_path / "out")
    assert result.mode == "single-stream"
    assert result.size == SIZE
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")


async def test_file_changing_mid_download_stops_with_clear_error(
    origin: TestOrigin, tmp_path: Path
) -> None:
    origin.configure(etag_change_after=2 * MiB, rate_per_conn=4 * MiB)
    with pytest.raises(OriginChanged, match="changed on the server") as info:
        await fetch(origin.url("f.bin"), tmp_path / "out")
    assert "--restart-if-changed" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing mixed is ever put in place
    assert (tmp_path / "out.part").exists()  # and nothing is thrown away either


async def test_file_changing_mid_download_restarts_when_allowed(
    origin: TestOrigin, tmp_path: Path
) -> None:
    origin.configure(etag_change_after=2 * MiB, rate_per_conn=4 * MiB)
    await fetch(origin.url("f.bin"), tmp_path / "out", restart_if_changed=True)
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin", version=1)
    assert listing(tmp_path) == {"out"}


async def test_dropped_connections_are_retried(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(drop_after=300 * KiB, drop_count=6)
    result = await fetch(origin.url("f.bin"), tmp_path / "out")
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")
    (src,) = result.sources
    assert src.failures >= 1


async def test_lying_content_range_fails_cleanly(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(lie_content_range=True)
    with pytest.raises(NoSourcesLeft, match="Content-Range"):
        await fetch(origin.url("f.bin"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


async def test_503_with_retry_after_is_honoured(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(unavailable_count=3, retry_after=1)
    await fetch(origin.url("f.bin"), tmp_path / "out")
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")


async def test_429_during_download_is_honoured(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(rate_per_conn=8 * MiB)
    spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "out", scheduler=FAST)
    async with open_local_download(spec, LocalOptions(connections=4)) as download:
        origin.configure(unavailable_count=2, unavailable_status=429, retry_after=1)
        await download.run()
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")


async def test_redirects_are_followed_and_pinned(origin: TestOrigin, tmp_path: Path) -> None:
    await fetch(f"{origin.base_url}/redirect/3/f.bin", tmp_path / "out")
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")
    paths = {r.file for r in origin.stats().served}
    assert paths == {"f.bin"}  # ranges went straight to the pinned final URL


async def test_redirect_loop_is_refused(origin: TestOrigin, tmp_path: Path) -> None:
    with pytest.raises(OriginUnusable, match="redirect"):
        await fetch(f"{origin.base_url}/redirect-loop", tmp_path / "out")
    assert listing(tmp_path) == set()


async def test_slow_first_byte_still_completes(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(first_byte_delay=1.0)
    await fetch(origin.url("f.bin"), tmp_path / "out", connections=2)
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")


async def test_per_ip_rate_limited_origin(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(rate_per_ip=16 * MiB)
    await fetch(origin.url("f.bin"), tmp_path / "out")
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")


async def test_missing_file_is_a_clear_error(origin: TestOrigin, tmp_path: Path) -> None:
    with pytest.raises(OriginUnusable, match="404"):
        await fetch(origin.url("nope.bin"), tmp_path / "out")
    assert listing(tmp_path) == set()


async def test_connection_refused_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cannot reach the origin"):
        await fetch("http://127.0.0.1:9/x.bin", tmp_path / "out")


async def test_user_checksum_verified(origin: TestOrigin, tmp_path: Path) -> None:
    good = Digest("sha256", origin.expected_sha256("f.bin"))
    result = await fetch(origin.url("f.bin"), tmp_path / "out", checksums=(good,))
    assert result.verified == ("sha256",)


async def test_checksum_mismatch_keeps_the_data(origin: TestOrigin, tmp_path: Path) -> None:
    bad = Digest("sha256", "0" * 64)
    with pytest.raises(ChecksumMismatch, match="expected 0000") as info:
        await fetch(origin.url("f.bin"), tmp_path / "out", checksums=(bad,))
    assert "kept" in str(info.value)
    assert not (tmp_path / "out").exists()
    kept = tmp_path / "out.part"
    assert sha256(kept) == origin.expected_sha256("f.bin")  # nothing deleted silently


async def test_repr_digest_from_origin_is_checked(tmp_path: Path) -> None:
    async with open_test_origin() as o:
        o.add_generated("d.bin", SIZE, seed=3, digest=True)
        result = await fetch(o.url("d.bin"), tmp_path / "out")
    assert result.verified == ("sha256",)
    assert result.digests["sha256"] == o.expected_sha256("d.bin")


async def test_hostile_content_disposition_is_sanitised(tmp_path: Path) -> None:
    async with open_test_origin() as o:
        o.add_generated("x", 1000, content_disposition='attachment; filename="../../evil.sh"')
        result = await fetch(o.url("x"), tmp_path)
    assert result.path == tmp_path / "evil.sh"
    assert listing(tmp_path) == {"evil.sh"}


@pytest.mark.parametrize(
    ("suggested", "saved"),
    [
        (".bashrc", "bashrc"),
        ("../.ssh/authorized_keys", "authorized_keys"),
        ("v" * 246 + ".iso", "v" * 237 + ".iso"),  # NAME.part.json.tmp must fit in 255
        ("w" * 300 + ".tar.gz", "w" * 238 + ".gz"),
    ],
)
async def test_server_chosen_names_are_never_hidden_or_too_long(
    tmp_path: Path, suggested: str, saved: str
) -> None:
    async with open_test_origin() as o:
        o.add_generated("x", 1000, content_disposition=f'attachment; filename="{suggested}"')
        result = await fetch(o.url("x"), tmp_path)
    assert result.path == tmp_path / saved
    assert listing(tmp_path) == {saved}


async def test_existing_destination_is_not_overwritten(origin: TestOrigin, tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"precious")
    with pytest.raises(DestinationExists, match="--force"):
        await fetch(origin.url("f.bin"), tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"precious"
    await fetch(origin.url("f.bin"), tmp_path / "out", force=True)
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin")


async def test_resume_refuses_a_changed_file_unless_allowed(
    origin: TestOrigin, tmp_path: Path
) -> None:
    origin.configure(etag_change_after=1 * MiB, rate_per_conn=4 * MiB)
    with pytest.raises(OriginChanged):
        await fetch(origin.url("f.bin"), tmp_path / "out")
    origin.configure(etag_change_after=None, rate_per_conn=None)
    with pytest.raises(OriginChanged, match="since the partial download"):
        await fetch(origin.url("f.bin"), tmp_path / "out")
    await fetch(origin.url("f.bin"), tmp_path / "out", restart_if_changed=True)
    assert sha256(tmp_path / "out") == origin.expected_sha256("f.bin", version=1)
