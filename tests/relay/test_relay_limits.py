"""The relay under pressure, on real sockets and files: the budget holds while fetching, slow
readers cannot pin blobs, finished fetches leave memory, hostile Range values, private files."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.lifecycle import FetchPhase
from swarmget.net.auth import json_body, signed_headers
from swarmget.relay.run import RelayConfig, RunningRelay, open_relay
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin

if TYPE_CHECKING:
    from swarmget.relay.blobs import ServeLimits

# Names added for #12 are imported inside the tests that use them, so that this file also runs
# against the code before (each test then fails on its own, not the whole file at import).

KiB = 1024
MiB = 1024 * KiB
SECRET = b"q" * 32
LOOPBACK = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
INSUFFICIENT = "insufficient_storage"  # InsufficientStorage.code
LIMIT = 30.0  # seconds any polling loop of these tests may take


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        for i, size in enumerate((3 * MiB + 1, 5 * MiB + 2, 5 * MiB + 3, 5 * MiB + 4)):
            o.add_generated(f"f{i}.bin", size, seed=i)
        o.add_generated("big.bin", 16 * MiB + 5, seed=9)
        o.add_generated("long.bin", 24 * MiB + 7, seed=10)
        yield o


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def config(tmp_path: Path, budget: int, limits: ServeLimits | None = None) -> RelayConfig:
    extra = {} if limits is None else {"limits": limits}
    return RelayConfig(
        secret=SECRET,
        cache_dir=tmp_path / "cache",
        budget=budget,
        piece_size=256 * KiB,
        origin_policy=LOOPBACK,
        **extra,
    )


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes = b""
) -> tuple[int, dict[str, Any]]:
    headers = signed_headers(SECRET, identity_for("tester"), method, url, body)
    async with session.request(method, url, data=body or None, headers=headers) as resp:
        return resp.status, await resp.json()


async def start_fetch(session: aiohttp.ClientSession, relay: RunningRelay, url: str) -> str:
    _, data = await call(session, "POST", f"{relay.url}/v1/fetch", json_body({"url": url}))
    return str(data["id"])


async def outcome(
    session: aiohttp.ClientSession, relay: RunningRelay, fetch_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + LIMIT
    while True:
        status, data = await call(session, "GET", f"{relay.url}/v1/fetches/{fetch_id}?wait=5")
        assert status == 200, data
        if data["state"] != "fetching" or time.monotonic() > deadline:
            return data


async def fetch_ready(
    session: aiohttp.ClientSession, relay: RunningRelay, url: str
) -> dict[str, Any]:
    data = await outcome(session, relay, await start_fetch(session, relay, url))
    assert data["state"] == "ready", data
    return data


def bytes_on_disk(cache: Path) -> int:
    """The bytes of the files a fetch or the cache holds (the index database aside). The
    relay creates and removes files and directories meanwhile: what vanishes while it is
    walked is skipped (``os.walk`` ignores a directory it can no longer list)."""
    total = 0
    for sub in ("blobs", "tmp"):
        for directory, _, files in os.walk(cache / sub):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(os.path.join(directory, name))
                    if stat.S_ISREG(st.st_mode) and not name.endswith(".json"):
                        total += st.st_size
    return total


# --- the budget while fetching ------------------------------------------------------------------


async def test_concurrent_fetches_never_hold_more_than_the_budget(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    budget = 8 * MiB
    origin.configure(rate_per_ip=4 * MiB)
    async with open_relay(config(tmp_path, budget)) as relay:
        first = await fetch_ready(session, relay, origin.url("f0.bin"))
        assert first["state"] == "ready"
        ids = [await start_fetch(session, relay, origin.url(f"f{i}.bin")) for i in (1, 2, 3)]
        peak = 0
        deadline = time.monotonic() + LIMIT
        while relay.relay.fetches and time.monotonic() < deadline:
            peak = max(peak, bytes_on_disk(tmp_path / "cache"))
            await asyncio.sleep(0.01)
        results = [await outcome(session, relay, i) for i in ids]
        assert peak <= budget
        # 5 MiB each: one fits at a time (those that start while it runs are refused)
        assert "ready" in {r["state"] for r in results}
        for r in results:
            if r["state"] == "failed":
                assert r["error"]["code"] == INSUFFICIENT
        assert await relay.relay.used_bytes() <= budget
        assert bytes_on_disk(tmp_path / "cache") <= budget
        # f0 (least recently used) made room before the winner wrote a byte
        assert not relay.relay.blob_path(first["sha256"]).exists()


async def test_a_file_of_unknown_size_stops_at_the_budget(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    budget = 4 * MiB
    origin.configure(no_content_length=True, rate_per_conn=8 * MiB)
    async with open_relay(config(tmp_path, budget)) as relay:
        result = await outcome(
            session, relay, await start_fetch(session, relay, origin.url("long.bin"))
        )
        assert result["state"] == "failed"
        # stopped near the budget, not after the whole 24 MiB
        assert origin.stats().bytes_by_file.get("long.bin", 0) < 16 * MiB
        assert result["error"]["code"] == INSUFFICIENT
        assert bytes_on_disk(tmp_path / "cache") == 0


async def test_a_size_over_the_budget_evicts_nothing(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with open_relay(config(tmp_path, 6 * MiB)) as relay:
        kept = await fetch_ready(session, relay, origin.url("f0.bin"))
        refused = await outcome(
            session, relay, await start_fetch(session, relay, origin.url("big.bin"))
        )
        assert refused["state"] == "failed"
        assert origin.stats().bytes_by_file.get("big.bin", 0) == 0  # refused before the body
        assert relay.relay.blob_path(kept["sha256"]).exists()
        assert refused["error"]["code"] == INSUFFICIENT


# --- readers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def stalled_reader(url: str, source: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A client that asks for ``url`` and never reads the answer (a tiny receive buffer)."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect((host, int(port)))
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
        yield sock
    finally:
        sock.close()


async def until(check: Any, what: str, limit: float = LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {limit} s: {what}")
        await asyncio.sleep(0.05)


async def test_a_stalled_reader_is_cut_off_and_its_blob_can_go(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    from swarmget.relay.blobs import ServeLimits

    limits = ServeLimits(write_timeout=1.0)
    async with open_relay(config(tmp_path, 20 * MiB, limits)) as relay:
        big = await fetch_ready(session, relay, origin.url("big.bin"))
        with stalled_reader(big["blob_url"]):
            await until(lambda: relay.relay.statistics().readers == 1, "the reader is served")
            # the reader pins big.bin until it is cut off; then big.bin is evicted for f1
            await until(lambda: relay.relay.statistics().readers == 0, "the reader is cut off")
            f1 = await outcome(
                session, relay, await start_fetch(session, relay, origin.url("f1.bin"))
            )
        assert f1["state"] == "ready", f1
        assert not relay.relay.blob_path(big["sha256"]).exists()


async def test_readers_are_bounded_per_client_and_in_total(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    from swarmget.relay.blobs import ServeLimits

    limits = ServeLimits(readers_per_client=2, readers_total=3, write_timeout=60.0)
    async with open_relay(config(tmp_path, 64 * MiB, limits)) as relay:
        big = await fetch_ready(session, relay, origin.url("big.bin"))
        url = big["blob_url"]
        with stalled_reader(url), stalled_reader(url):
            await until(lambda: relay.relay.statistics().readers == 2, "two readers")
            async with session.get(url, headers={"Range": "bytes=0-9"}) as r:
                assert r.status == 429
                assert "Retry-After" in r.headers
            with stalled_reader(url, source="127.0.0.2"):
                await until(lambda: relay.relay.statistics().readers == 3, "three readers")
                connector = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
                async with (
                    aiohttp.ClientSession(connector=connector) as other,
                    other.get(url, headers={"Range": "bytes=0-9"}) as r,
                ):
                    assert r.status == 503
        # the readers went away: their places are free again
        await until(lambda: relay.relay.statistics().readers == 0, "the readers are gone")
        async with session.get(url, headers={"Range": "bytes=0-9"}) as r:
            assert r.status == 206


# --- fetch records -------------------------------------------------------------------------------


async def test_finished_fetches_leave_memory_but_stay_answerable(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with open_relay(config(tmp_path, 64 * MiB)) as relay:
        ids = []
        for _ in range(40):
            fetch_id = await start_fetch(session, relay, origin.url("f0.bin"))
            assert (await outcome(session, relay, fetch_id))["state"] == "ready"
            ids.append(fetch_id)
        await until(lambda: not relay.relay.fetches, "no fetch in memory", limit=5.0)
        async with session.get(f"{relay.url}/metrics") as r:
            metrics = await r.text()
        assert "swarmget_relay_cache_hits_total 39.0" in metrics.splitlines()
        assert "swarmget_relay_cache_misses_total 1.0" in metrics.splitlines()  # the first
        assert "swarmget_relay_fetches_in_progress 0.0" in metrics.splitlines()
        failed_id = await start_fetch(session, relay, "http://127.0.0.1:1/nothing")
        assert (await outcome(session, relay, failed_id))["state"] == "failed"
        assert not relay.relay.fetches
        status, data = await call(session, "GET", f"{relay.url}/v1/fetches/{ids[0]}")
        assert status == 200
        assert data["state"] == "ready"
        assert data["sha256"] == origin.expected_sha256("f0.bin")
        assert data["manifest"]["sha256"] == data["sha256"]
    async with open_relay(config(tmp_path, 64 * MiB)) as relay:  # and after a restart
        _, data = await call(session, "GET", f"{relay.url}/v1/fetches/{failed_id}")
        assert data["state"] == "failed"
        assert data["error"]["code"]
        status, _ = await call(session, "GET", f"{relay.url}/v1/fetches/{'0' * 16}")
        assert status == 404


async def test_old_fetch_records_are_forgotten(tmp_path: Path) -> None:
    from swarmget.relay.store import FetchRecord, open_cache_index

    def record(fetch_id: str, finished: float) -> FetchRecord:
        return FetchRecord(
            id=fetch_id,
            url="http://example.com/x",
            state=FetchPhase.FAILED,
            hit=False,
            sha256=None,
            error_code="storage",
            error_message="m",
            finished=finished,
        )

    async with open_cache_index(f"sqlite+aiosqlite:///{tmp_path / 'i.db'}") as index:
        await index.record_fetch(record("a" * 16, 100.0), forget_before=0.0)
        assert await index.fetch_record("a" * 16) == record("a" * 16, 100.0)
        await index.record_fetch(record("b" * 16, 5000.0), forget_before=1000.0)
        assert await index.fetch_record("a" * 16) is None
        assert await index.fetch_record("b" * 16) is not None


# --- Range values ---------------------------------------------------------------------------------


async def test_huge_range_positions_get_416_or_the_file_never_500(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    huge = "9" * 4301  # int() refuses more than 4300 digits
    async with open_relay(config(tmp_path, 64 * MiB)) as relay:
        data = await fetch_ready(session, relay, origin.url("f0.bin"))
        content = origin.content("f0.bin")
        url = data["blob_url"]
        async with session.get(url, headers={"Range": f"bytes={huge}-"}) as r:
            assert r.status == 416
            assert r.headers["Content-Range"] == f"bytes */{len(content)}"
        async with session.get(url, headers={"Range": f"bytes={huge[:4050]}-{huge[:4050]}"}) as r:
            assert r.status == 416
        async with session.get(url, headers={"Range": f"bytes=10-{huge}"}) as r:
            assert r.status == 206
            assert await r.read() == content[10:]
        async with session.get(url, headers={"Range": f"bytes=-{huge}"}) as r:
            assert r.status == 206
            assert await r.read() == content
        async with session.get(url, headers={"Range": "bytes=0000000000000000000010-19"}) as r:
            assert r.status == 206
            assert await r.read() == content[10:20]


# --- files ----------------------------------------------------------------------------------------


async def test_cache_files_are_private(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    async with open_relay(config(tmp_path, 64 * MiB)) as relay:
        data = await fetch_ready(session, relay, origin.url("f0.bin"))
        assert data["state"] == "ready"
        for d in (cache, cache / "blobs", cache / "tmp"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        for f in (cache / "index.db", relay.relay.blob_path(data["sha256"])):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


async def test_a_link_in_the_blob_directory_is_not_followed(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the network\n")
    async with open_relay(config(tmp_path, 64 * MiB)) as relay:
        name = "ab" * 32
        os.symlink(secret, relay.relay.blob_path(name))
        async with session.get(f"{relay.url}/v1/blobs/{name}") as r:
            assert r.status == 404


async def test_an_sqlite_index_given_by_url_is_private_too(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    cfg = dataclasses.replace(
        config(tmp_path, MiB), db_url=f"sqlite+aiosqlite:///{other / 'relay.db'}"
    )
    async with open_relay(cfg):
        assert stat.S_IMODE((other / "relay.db").stat().st_mode) == 0o600
