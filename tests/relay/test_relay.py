"""The relay/cache on real sockets: fetch once, revalidate, evict, serve ranges correctly."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.errors import InsufficientStorage
from swarmget.core.manifest import Manifest
from swarmget.net.auth import json_body, signed_headers
from swarmget.relay.run import RelayConfig, RunningRelay, open_relay
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024
MiB = 1024 * KiB
SECRET = b"r" * 32
ME = identity_for("tester")
LOOPBACK = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("a.bin", 3 * MiB + 5, seed=1)
        o.add_generated("b.bin", 3 * MiB + 7, seed=2)
        yield o


def config(tmp_path: Path, budget: int = 64 * MiB) -> RelayConfig:
    return RelayConfig(
        secret=SECRET,
        cache_dir=tmp_path / "cache",
        budget=budget,
        piece_size=256 * KiB,
        origin_policy=LOOPBACK,
    )


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RunningRelay]:
    async with open_relay(config(tmp_path)) as r:
        yield r


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def fetch(
    session: aiohttp.ClientSession, relay: RunningRelay, url: str
) -> tuple[int, dict[str, Any]]:
    body = json_body({"url": url})
    target = f"{relay.url}/v1/fetch"
    headers = signed_headers(SECRET, ME, "POST", target, body)
    async with session.post(target, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def wait_ready(
    session: aiohttp.ClientSession, relay: RunningRelay, fetch_id: str
) -> dict[str, Any]:
    target = f"{relay.url}/v1/fetches/{fetch_id}?wait=20"
    async with session.get(target, headers=signed_headers(SECRET, ME, "GET", target)) as r:
        data: dict[str, Any] = await r.json()
    assert data["state"] == "ready", data
    return data


async def fetch_ready(
    session: aiohttp.ClientSession, relay: RunningRelay, url: str
) -> dict[str, Any]:
    _, data = await fetch(session, relay, url)
    return await wait_ready(session, relay, data["id"])


async def test_miss_then_hit_contacts_the_origin_once(
    relay: RunningRelay, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    first = await fetch_ready(session, relay, origin.url("a.bin"))
    assert first["hit"] is False
    assert first["sha256"] == origin.expected_sha256("a.bin")
    gets = origin.stats().requests_by_method.get("GET", 0)
    body_bytes = origin.stats().bytes_total
    second = await fetch_ready(session, relay, origin.url("a.bin"))
    assert second["hit"] is True
    stats = origin.stats()
    assert stats.requests_by_method.get("GET", 0) == gets  # only revalidated (HEAD)
    assert stats.bytes_total == body_bytes
    assert relay.relay.origin_downloads == 1


async def test_changed_origin_is_fetched_again(
    relay: RunningRelay, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    await fetch_ready(session, relay, origin.url("a.bin"))
    origin.configure(etag_change_after=1)  # the next bytes served are a new version
    async with session.get(origin.url("a.bin"), headers={"Range": "bytes=0-9"}) as resp:
        await resp.read()
    again = await fetch_ready(session, relay, origin.url("a.bin"))
    assert again["hit"] is False
    assert again["sha256"] == origin.expected_sha256("a.bin", version=1)


async def test_concurrent_fetches_share_one_download(
    relay: RunningRelay, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    origin.configure(rate_per_conn=4 * MiB)
    answers = await asyncio.gather(*(fetch(session, relay, origin.url("a.bin")) for _ in range(3)))
    assert {a[1]["id"] for a in answers} == {answers[0][1]["id"]}
    assert {a[0] for a in answers} == {202}
    await wait_ready(session, relay, answers[0][1]["id"])
    assert relay.relay.origin_downloads == 1
    assert origin.stats().bytes_by_file["a.bin"] <= 3 * MiB + 5 + 256 * KiB


async def test_eviction_under_a_small_budget(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with open_relay(config(tmp_path, budget=5 * MiB)) as relay:
        a = await fetch_ready(session, relay, origin.url("a.bin"))
        b = await fetch_ready(session, relay, origin.url("b.bin"))
        assert not relay.relay.blob_path(a["sha256"]).exists()  # least recently used: out
        assert relay.relay.blob_path(b["sha256"]).exists()
        assert await relay.relay.used_bytes() <= 5 * MiB
        # a blob being served is never evicted: with b in use, a cannot come back
        with relay.relay.serving(b["sha256"]):
            _, data = await fetch(session, relay, origin.url("a.bin"))
            target = f"{relay.url}/v1/fetches/{data['id']}?wait=20"
            async with session.get(target, headers=signed_headers(SECRET, ME, "GET", target)) as r:
                failed = await r.json()
        assert failed["state"] == "failed"
        assert failed["error"]["code"] == InsufficientStorage.code
        assert relay.relay.blob_path(b["sha256"]).exists()


async def test_blob_range_semantics(
    relay: RunningRelay, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    data = await fetch_ready(session, relay, origin.url("a.bin"))
    content = origin.content("a.bin")
    url, etag = data["blob_url"], f'"{data["sha256"]}"'
    async with session.get(url, headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(content)}"
        assert r.headers["ETag"] == etag
        assert await r.read() == content[10:20]
    async with session.get(url, headers={"Range": "bytes=10-19", "If-Range": etag}) as r:
        assert r.status == 206
    async with session.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'}) as r:
        assert r.status == 200  # a stale If-Range gets the whole file
        assert await r.read() == content
    async with session.get(url, headers={"Range": "bytes=-5"}) as r:
        assert await r.read() == content[-5:]
    async with session.get(url, headers={"Range": f"bytes={len(content)}-"}) as r:
        assert r.status == 416
    async with session.get(url, headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with session.head(url) as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == len(content)


async def test_manifest_matches_the_bytes(
    relay: RunningRelay, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    data = await fetch_ready(session, relay, origin.url("a.bin"))
    async with session.get(data["manifest_url"]) as r:
        manifest = Manifest.from_json(await r.json())
    content = origin.content("a.bin")
    assert manifest.piece_size == 256 * KiB
    for i, digest in enumerate(manifest.pieces):
        piece = manifest.piece_range(i)
        assert hashlib.sha256(content[piece.start : piece.end]).hexdigest() == digest


async def test_fetch_needs_a_signature_and_blob_paths_are_checked(
    relay: RunningRelay, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{relay.url}/v1/fetch", json={"url": origin.url("a.bin")}) as r:
        assert r.status == 401
    for bad in ("..%2F..%2Fetc%2Fpasswd", "0" * 63, "G" * 64, "index.db"):
        async with session.get(f"{relay.url}/v1/blobs/{bad}") as r:
            assert r.status == 404
    status, data = await fetch(session, relay, "file:///etc/passwd")
    assert status == 400


async def test_relay_refuses_private_origins_by_default(
    tmp_path: Path, origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    guarded = RelayConfig(secret=SECRET, cache_dir=tmp_path / "c", budget=MiB)
    async with open_relay(guarded) as relay:
        _, data = await fetch(session, relay, origin.url("a.bin"))
        target = f"{relay.url}/v1/fetches/{data['id']}?wait=20"
        async with session.get(target, headers=signed_headers(SECRET, ME, "GET", target)) as r:
            failed = await r.json()
    assert failed["state"] == "failed"
    assert "refusing to connect" in failed["error"]["message"]


@pytest.mark.parametrize("tool", ["curl", "aria2c"])
async def test_plain_clients_download_from_the_relay(
    relay: RunningRelay,
    origin: TestOrigin,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    tool: str,
) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    data = await fetch_ready(session, relay, origin.url("a.bin"))
    content = origin.content("a.bin")
    out = tmp_path / "out.bin"
    if tool == "curl":
        cmd = ["curl", "-sf", "-r", "1000-2999", "-o", str(out), data["blob_url"]]
        expected = content[1000:3000]
    else:
        cmd = ["aria2c", "-q", "-x4", "-s4", "-k1M", "-d", str(tmp_path), "-o", "out.bin"]
        cmd.append(data["blob_url"])
        expected = content
    proc = await asyncio.create_subprocess_exec(*cmd, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert out.read_bytes() == expected
