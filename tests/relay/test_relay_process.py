"""The relay as a real process (``python -m swarmget.cli relay``) survives hostile origins."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.net.auth import json_body, signed_headers
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import Proc, start_proc

MiB = 1024 * 1024
SECRET = "s" * 40
HUGE = 2**63  # posix_fallocate cannot even be asked for this


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("huge.bin", HUGE, seed=3)
        o.add_generated("ok.bin", 2 * MiB + 3, seed=4)
        yield o


@pytest.fixture(params=["64M", str(10**20)], ids=["budget", "no-budget"])
def budget(request: pytest.FixtureRequest) -> str:
    """A budget that refuses the huge file up front, and one that does not (the engine meets
    the size itself: posix_fallocate raised OverflowError there)."""
    return str(request.param)


@pytest.fixture
async def relay_proc(tmp_path: Path, budget: str) -> AsyncIterator[Proc]:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    args = [
        "relay", "--host", "127.0.0.1", "--port", "0", "--cache-dir", str(tmp_path / "cache"),
        "--budget", budget, "--secret-file", str(secret_file),
        "--allow-private-origins", "127.0.0.0/8",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await start_proc(args, tmp_path / "relay.log", env)
    try:
        yield proc
    finally:
        await proc.stop()


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes = b""
) -> tuple[int, dict[str, Any]]:
    headers = signed_headers(SECRET.encode(), identity_for("tester"), method, url, body)
    async with session.request(method, url, data=body or None, headers=headers) as resp:
        return resp.status, await resp.json()


async def _fetch_until_done(
    session: aiohttp.ClientSession, relay_url: str, url: str
) -> dict[str, Any]:
    _, data = await _call(session, "POST", f"{relay_url}/v1/fetch", json_body({"url": url}))
    deadline = time.monotonic() + 60
    while data["state"] == "fetching" and time.monotonic() < deadline:
        _, data = await _call(session, "GET", f"{relay_url}/v1/fetches/{data['id']}?wait=10")
    return data


async def test_a_huge_content_length_fails_one_fetch_not_the_relay(
    relay_proc: Proc, origin: TestOrigin, budget: str
) -> None:
    relay_url = str(relay_proc.info["url"])
    async with aiohttp.ClientSession() as session:
        huge = await _fetch_until_done(session, relay_url, origin.url("huge.bin"))
        assert huge["state"] == "failed", huge
        if budget == "64M":
            assert huge["error"]["code"] == "insufficient_storage"
        assert relay_proc.process.returncode is None  # still running
        ok = await _fetch_until_done(session, relay_url, origin.url("ok.bin"))
        assert ok["state"] == "ready", ok
        assert ok["sha256"] == origin.expected_sha256("ok.bin")
        async with session.get(ok["blob_url"], headers={"Range": "bytes=0-9"}) as r:
            assert r.status == 206
            assert await r.read() == origin.content("ok.bin")[:10]
