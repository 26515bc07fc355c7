"""The test origin speaks honest HTTP over real sockets and misbehaves on request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from swarmget.core.ranges import ByteRange
from swarmget.testing.origin import (
    UNSATISFIABLE,
    Behaviour,
    TestOrigin,
    generate_content,
    if_match_holds,
    if_range_holds,
    open_test_origin,
    parse_range,
)

SIZE = 1000
NAME = "small"


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated(NAME, SIZE, seed=7)
        yield o


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def fetch(
    session: aiohttp.ClientSession, url: str, method: str = "GET", **headers: str
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with session.request(method, url, headers=headers) as resp:
        return resp.status, resp.headers, await resp.read()


async def within_2s(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not predicate():  # noqa: ASYNC110 - polling the counters is the point
            await asyncio.sleep(0.01)


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 1)),
        ("bytes=10-19", ByteRange(10, 20)),
        ("bytes=990-5000", ByteRange(990, 1000)),
        ("bytes=100-", ByteRange(100, 1000)),
        ("bytes=-50", ByteRange(950, 1000)),
        ("bytes=-5000", ByteRange(0, 1000)),
        ("BYTES = 1 - 2", ByteRange(1, 3)),
        ("bytes=1000-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("bytes=-", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header: str, expected: object) -> None:
    assert parse_range(header, SIZE) == expected


def test_parse_range_on_an_empty_file_is_unsatisfiable() -> None:
    assert parse_range("bytes=0-", 0) == UNSATISFIABLE
    assert parse_range("bytes=-5", 0) == UNSATISFIABLE


def test_conditionals_use_strong_comparison() -> None:
    assert if_match_holds(None, '"a"')
    assert if_match_holds("*", '"a"')
    assert if_match_holds('"b", "a"', '"a"')
    assert not if_match_holds('W/"a"', '"a"')
    assert if_range_holds('"a"', '"a"', 0)
    assert not if_range_holds('W/"a"', '"a"', 0)
    assert if_range_holds(formatdate(1_700_000_000, usegmt=True), '"a"', 1_700_000_000)
    assert not if_range_holds(formatdate(1_699_999_999, usegmt=True), '"a"', 1_700_000_000)
    assert not if_range_holds("not a date", '"a"', 0)


def test_generated_content_is_deterministic_and_blocks_differ() -> None:
    assert generate_content(100, seed=3) == random.Random(3).randbytes(100)
    assert generate_content(100, seed=3) != generate_content(100, seed=4)
    big = generate_content(3 * 2**20 + 5, seed=1)
    assert len(big) == 3 * 2**20 + 5
    blocks = {big[i : i + 2**20] for i in range(0, 3 * 2**20, 2**20)}
    assert len(blocks) == 3


def test_behaviour_is_validated() -> None:
    with pytest.raises(ValueError, match="drop_after"):
        Behaviour(drop_after=-1)
    with pytest.raises(ValueError, match="rate_per_ip"):
        Behaviour(rate_per_ip=0)


# --- plain HTTP --------------------------------------------------------------------------------


async def test_head_describes_the_file(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    status, headers, body = await fetch(session, origin.url(NAME), "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(SIZE)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == origin.etag(NAME)
    assert headers["ETag"][0] == headers["ETag"][-1] == '"'
    assert "Last-Modified" in headers
    assert "Content-Encoding" not in headers
    assert "Content-Disposition" not in headers
    assert "Repr-Digest" not in headers


async def test_get_serves_the_whole_file_uncompressed(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    status, headers, body = await fetch(session, origin.url(NAME), **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert body == origin.content(NAME) == generate_content(SIZE, seed=7)
    assert hashlib.sha256(body).hexdigest() == origin.expected_sha256(NAME)
    assert "Content-Encoding" not in headers


async def test_optional_headers(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.add_generated("d", 500, content_disposition='attachment; filename="x.bin"', digest=True)
    status, headers, _ = await fetch(session, origin.url("d"), Range="bytes=0-9")
    assert status == 206
    assert headers["Content-Disposition"] == 'attachment; filename="x.bin"'
    digest = base64.b64encode(hashlib.sha256(origin.content("d")).digest()).decode()
    assert headers["Repr-Digest"] == f"sha-256=:{digest}:"  # of the whole file, even on 206


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [("bytes=10-19", 10, 20), ("bytes=900-", 900, SIZE), ("bytes=-50", 950, SIZE)],
)
async def test_single_range(
    origin: TestOrigin, session: aiohttp.ClientSession, spec: str, start: int, end: int
) -> None:
    status, headers, body = await fetch(session, origin.url(NAME), Range=spec)
    assert status == 206
    assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert headers["Content-Length"] == str(end - start)
    assert body == origin.content(NAME)[start:end]


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=9-3"])
async def test_multiple_or_invalid_ranges_get_the_whole_file(
    origin: TestOrigin, session: aiohttp.ClientSession, spec: str
) -> None:
    status, headers, body = await fetch(session, origin.url(NAME), Range=spec)
    assert (status, len(body)) == (200, SIZE)
    assert "Content-Range" not in headers


async def test_range_is_ignored_on_head(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    status, headers, _ = await fetch(session, origin.url(NAME), "HEAD", Range="bytes=0-9")
    assert status == 200
    assert headers["Content-Length"] == str(SIZE)


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
async def test_unsatisfiable_range_is_416(
    origin: TestOrigin, session: aiohttp.ClientSession, spec: str
) -> None:
    status, headers, _ = await fetch(session, origin.url(NAME), Range=spec)
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{SIZE}"


async def test_if_range(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    _, head, _ = await fetch(session, origin.url(NAME), "HEAD")
    url, rng = origin.url(NAME), "bytes=0-9"
    assert (await fetch(session, url, Range=rng, **{"If-Range": head["ETag"]}))[0] == 206
    assert (await fetch(session, url, Range=rng, **{"If-Range": head["Last-Modified"]}))[0] == 206
    stale = ['"stale"', "W/" + head["ETag"], formatdate(0, usegmt=True), "garbage"]
    for validator in stale:
        status, _, body = await fetch(session, url, Range=rng, **{"If-Range": validator})
        assert (status, len(body)) == (200, SIZE), validator


async def test_if_match(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    url = origin.url(NAME)
    assert (await fetch(session, url, **{"If-Match": origin.etag(NAME)}))[0] == 200
    assert (await fetch(session, url, **{"If-Match": "*"}))[0] == 200
    assert (await fetch(session, url, **{"If-Match": '"other"'}))[0] == 412


async def test_unknown_file_is_404(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    assert (await fetch(session, origin.url("nope")))[0] == 404


async def test_real_file_is_served_from_disk(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = random.Random(5).randbytes(300_000)
    (tmp_path / "f.bin").write_bytes(data)
    origin.add_file("disk", tmp_path / "f.bin", digest=True)
    status, headers, body = await fetch(session, origin.url("disk"), Range="bytes=1000-")
    assert (status, body) == (206, data[1000:])
    assert origin.expected_sha256("disk") == hashlib.sha256(data).hexdigest()
    assert headers["Repr-Digest"].startswith("sha-256=:")


# --- misbehaviour --------------------------------------------------------------------------------


async def test_ignore_range(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.configure(ignore_range=True)
    status, headers, body = await fetch(session, origin.url(NAME), Range="bytes=10-19")
    assert (status, body) == (200, origin.content(NAME))
    assert "Content-Range" not in headers


async def test_no_content_length(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.configure(no_content_length=True)
    _, head, _ = await fetch(session, origin.url(NAME), "HEAD")
    assert "Content-Length" not in head
    assert "Accept-Ranges" not in head
    status, headers, body = await fetch(session, origin.url(NAME), Range="bytes=10-19")
    assert (status, body) == (200, origin.content(NAME))
    assert "Content-Length" not in headers
    assert headers["Transfer-Encoding"] == "chunked"


async def test_etag_change_after(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.configure(etag_change_after=500)
    old, url = origin.content(NAME), origin.url(NAME)
    status, first, body = await fetch(session, url, Range="bytes=0-499")
    assert (status, body) == (206, old[:500])
    assert origin.stats().file_versions[NAME] == 1
    new = origin.content(NAME)
    assert new != old
    assert new == origin.content(NAME, version=1)
    _, head, _ = await fetch(session, url, "HEAD")
    assert head["ETag"] != first["ETag"]
    assert head["Last-Modified"] != first["Last-Modified"]
    # a careful client notices: If-Range with the old ETag gets the new file whole
    status, _, body = await fetch(session, url, Range="bytes=500-", **{"If-Range": first["ETag"]})
    assert (status, body) == (200, new)
    assert (await fetch(session, url, **{"If-Match": first["ETag"]}))[0] == 412
    # a careless one mixes versions into a file that is neither
    _, _, tail = await fetch(session, url, Range="bytes=500-")
    assert old[:500] + tail not in (old, new)


async def test_etag_change_on_a_real_file(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 4)
    origin.add_file("disk", tmp_path / "f.bin")
    origin.configure(etag_change_after=1)
    await fetch(session, origin.url("disk"), Range="bytes=0-0")
    _, _, body = await fetch(session, origin.url("disk"))
    assert body == bytes((b + 1) % 256 for b in range(256)) * 4 == origin.content("disk")


async def read_until_error(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[bytes, BaseException | None]:
    got = bytearray()
    try:
        async with session.get(url, headers=headers) as resp:
            async for chunk in resp.content.iter_any():
                got += chunk
    except aiohttp.ClientError as exc:
        return bytes(got), exc
    return bytes(got), None


async def test_drop_after_cuts_the_connection(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    origin.configure(drop_after=300, drop_count=1)
    body, error = await read_until_error(session, origin.url(NAME))
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert body == origin.content(NAME)[:300]
    body, error = await read_until_error(session, origin.url(NAME))  # only one drop
    assert (body, error) == (origin.content(NAME), None)
    assert [s.bytes_sent for s in origin.stats().served] == [300, SIZE]


async def test_drop_after_every_response_and_chunked(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    origin.configure(drop_after=0, no_content_length=True)
    for _ in range(2):
        body, error = await read_until_error(session, origin.url(NAME))
        assert (body, isinstance(error, aiohttp.ClientPayloadError)) == (b"", True)
    origin.configure(drop_after=100, no_content_length=False)
    _, error = await read_until_error(session, origin.url(NAME), Range="bytes=0-49")
    assert error is None  # the response is shorter than the cut


async def test_lie_content_range(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.configure(lie_content_range=True)
    status, headers, body = await fetch(session, origin.url(NAME), Range="bytes=100-199")
    assert status == 206
    assert headers["Content-Range"] != f"bytes 100-199/{SIZE}"
    assert body == origin.content(NAME)[100:200]


@pytest.mark.parametrize(("status", "retry_after"), [(503, 1), (429, 3), (503, None)])
async def test_unavailable(
    origin: TestOrigin, session: aiohttp.ClientSession, status: int, retry_after: int | None
) -> None:
    origin.configure(unavailable_count=2, unavailable_status=status, retry_after=retry_after)
    for _ in range(2):
        got, headers, _ = await fetch(session, origin.url(NAME))
        assert got == status
        assert headers.get("Retry-After") == (None if retry_after is None else str(retry_after))
    assert (await fetch(session, origin.url(NAME)))[0] == 200


async def test_redirect_chain(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{origin.base_url}/redirect/3/{NAME}") as resp:
        assert resp.status == 200
        assert [r.status for r in resp.history] == [302, 302, 302]
        assert resp.url.path == f"/files/{NAME}"
        assert await resp.read() == origin.content(NAME)


async def test_redirect_loop(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.TooManyRedirects):
        await fetch(session, f"{origin.base_url}/redirect-loop")


async def test_redirect_to_anywhere(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    target = "http://169.254.169.254/latest/meta-data"
    url = f"{origin.base_url}/redirect-to"
    async with session.get(url, params={"url": target}, allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, target)
    params = {"url": target, "status": "307"}
    async with session.get(url, params=params, allow_redirects=False) as resp:
        assert resp.status == 307


async def test_first_byte_delay(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.configure(first_byte_delay=0.3)
    started = time.monotonic()
    async with session.get(origin.url(NAME)) as resp:
        assert resp.status == 200
        assert time.monotonic() - started >= 0.25


async def timed_download(url: str, local_ip: str, **headers: str) -> tuple[float, int]:
    connector = aiohttp.TCPConnector(local_addr=(local_ip, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        _, _, body = await fetch(session, url, **headers)
        return time.monotonic() - started, len(body)


IPS = ("127.0.0.2", "127.0.0.3")


async def test_rate_per_ip_is_per_address(origin: TestOrigin) -> None:
    origin.configure(rate_per_ip=1_000_000)
    origin.add_generated("mb", 1_000_000)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(timed_download(origin.url("mb"), ip)) for ip in IPS]
    for task in tasks:
        elapsed, length = task.result()
        assert length == 1_000_000
        assert elapsed >= 0.8
    assert origin.stats().bytes_by_ip == {"127.0.0.2": 1_000_000, "127.0.0.3": 1_000_000}


async def test_rate_per_ip_is_shared_by_connections(origin: TestOrigin) -> None:
    origin.configure(rate_per_ip=1_000_000)
    origin.add_generated("mb", 1_000_000)
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        halves = ("bytes=0-499999", "bytes=500000-")
        async with asyncio.TaskGroup() as tg:
            for spec in halves:
                tg.create_task(fetch(session, origin.url("mb"), Range=spec))
        assert time.monotonic() - started >= 0.8
    assert {s.ip for s in origin.stats().served} == {"127.0.0.4"}


async def test_rate_per_conn(origin: TestOrigin) -> None:
    origin.configure(rate_per_conn=500_000)
    origin.add_generated("half", 300_000)
    elapsed, length = await timed_download(origin.url("half"), "127.0.0.5")
    assert length == 300_000
    assert elapsed >= 0.4


# --- counters and control ------------------------------------------------------------------------


async def test_counters(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    origin.add_generated("other", 50)
    await fetch(session, origin.url(NAME), "HEAD")
    await fetch(session, origin.url(NAME), Range="bytes=10-19")
    await fetch(session, origin.url(NAME), Range="bytes=5000-")
    await fetch(session, origin.url("other"))
    stats = origin.stats()
    assert stats.bytes_total == 60
    assert stats.bytes_by_ip == {"127.0.0.1": 60}
    assert stats.bytes_by_file == {NAME: 10, "other": 50}
    assert stats.requests_by_method == {"HEAD": 1, "GET": 3}
    assert [(s.file, s.start, s.end_exclusive, s.bytes_sent, s.status) for s in stats.served] == [
        (NAME, 10, 20, 10, 206),
        (NAME, 0, 0, 0, 416),
        ("other", 0, 50, 50, 200),
    ]
    assert all(s.ip == "127.0.0.1" for s in stats.served)
    assert stats.open_responses_by_ip == {}


async def test_http_control(origin: TestOrigin, session: aiohttp.ClientSession) -> None:
    base = origin.base_url
    async with session.post(f"{base}/_config", json={"ignore_range": True}) as resp:
        assert resp.status == 200
        assert (await resp.json())["ignore_range"] is True
    assert origin.behaviour.ignore_range
    assert (await fetch(session, origin.url(NAME), Range="bytes=0-9"))[0] == 200
    for bad in ({"nonsense": 1}, {"drop_after": "x"}, {"drop_after": -5}, [1]):
        async with session.post(f"{base}/_config", json=bad) as resp:
            assert resp.status == 400, bad
    async with session.get(f"{base}/_stats") as resp:
        stats = await resp.json()
    assert stats["bytes_total"] == SIZE
    assert stats["served"][0]["status"] == 200
    async with session.post(f"{base}/_reset") as resp:
        assert (await resp.json())["ignore_range"] is False
    assert origin.stats().bytes_total == 0
    assert origin.stats().served == ()


async def test_reset_restores_the_construction_behaviour() -> None:
    origin = TestOrigin(ignore_range=True, unavailable_count=1)
    origin.configure(ignore_range=False, unavailable_count=0)
    origin.reset()
    assert origin.behaviour == Behaviour(ignore_range=True, unavailable_count=1)


async def test_open_counts_return_to_zero_after_client_aborts(
    origin: TestOrigin, caplog: pytest.LogCaptureFixture
) -> None:
    origin.configure(rate_per_conn=200_000)
    origin.add_generated("slow", 1_000_000)
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.6", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(origin.url("slow")) as resp:
            await resp.content.readexactly(100_000)
            assert origin.stats().open_responses_by_ip == {"127.0.0.6": 1}
            assert origin.stats().open_connections_by_ip == {"127.0.0.6": 1}
            resp.close()  # abandon the body mid-way
    await within_2s(lambda: not origin.stats().open_responses_by_ip)
    await within_2s(lambda: not origin.stats().open_connections_by_ip)
    (served,) = origin.stats().served
    assert 100_000 <= served.bytes_sent < 1_000_000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_subprocess_mode() -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "swarmget.testing.origin", "--port", "0"),
        *("--file", "a=100K:5", "--rate-per-ip", "10000000"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            announced: dict[str, Any] = json.loads(await proc.stdout.readline())  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:
            _, _, body = await fetch(session, f"{announced['base_url']}/files/a")
        assert body == generate_content(100 * 1024, seed=5)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
