"""The node's local user API, on a real node (in-process) and a real origin."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.ratelimit import TokenBucket
from swarmget.node.daemon import Node
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 3 * MiB, seed=2)
        yield o


async def call(
    session: aiohttp.ClientSession, node: Node, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {node.api_token}"}
    async with session.request(method, node.api_url + path, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_api_binds_to_loopback_and_needs_the_token(
    node: Node, session: aiohttp.ClientSession
) -> None:
    assert node.api_url.startswith("http://127.0.0.1:")
    async with session.get(node.api_url + "/v1/downloads") as resp:
        assert resp.status == 401
    async with session.get(
        node.api_url + "/v1/downloads", headers={"Authorization": "Bearer wrong"}
    ) as resp:
        assert resp.status == 401


async def test_create_follow_with_sse_and_inspect(
    node: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    status, created = await call(
        session, node, "POST", "/v1/downloads", {"url": origin.url("f.bin"), "output": "a/f.bin"}
    )
    assert status == 201
    events: list[tuple[str, dict[str, Any]]] = []
    headers = {"Authorization": f"Bearer {node.api_token}"}
    url = f"{node.api_url}/v1/downloads/{created['id']}/events"
    async with session.get(url, headers=headers) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        kind = ""
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: ") :])))
    assert events[-1][0] == "end"
    final = events[-1][1]
    assert final["state"] == "done", final["error"]
    path = Path(final["result"]["path"])
    assert path == node.download_dir / "a" / "f.bin"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
    status, detail = await call(session, node, "GET", f"/v1/downloads/{created['id']}")
    source = detail["progress"]["sources"][0]
    assert source["id"] == node.node_id
    assert source["claimed"] == 3 * MiB
    assert {"rate", "state", "failures", "segments"} <= set(source)
    assert any(e["kind"] == "assign" for e in detail["events"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://x/y"}, "http(s)"),
        ({"url": "http://127.0.0.1:1/x", "output": "../escape.bin"}, "outside"),
        ({"url": "http://127.0.0.1:1/x", "output": "/etc/passwd"}, "outside"),
        ({"url": "http://127.0.0.1:1/x", "checksums": ["sha256:zz"]}, "checksum"),
        ({"url": "http://127.0.0.1:1/x", "unknown": 1}, "unknown"),
        ({}, "url"),
    ],
)
async def test_bad_requests_are_400_and_start_nothing(
    node: Node, session: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, data = await call(session, node, "POST", "/v1/downloads", body)
    assert status == 400
    assert message in data["error"].lower() or message in data["code"]
    assert node.downloads.records == {}


async def test_cancel_a_running_download(
    node: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=256 * 1024)
    _, created = await call(session, node, "POST", "/v1/downloads", {"url": origin.url("f.bin")})
    status, _ = await call(session, node, "DELETE", f"/v1/downloads/{created['id']}")
    assert status == 200
    record = node.downloads.records[created["id"]]
    assert record.task is not None
    await record.task
    assert record.state == "cancelled"
    _, detail = await call(session, node, "GET", f"/v1/downloads/{created['id']}")
    assert detail["error"]["code"] == "cancelled"
    status, _ = await call(session, node, "GET", "/v1/downloads/nope")
    assert status == 404


async def test_status_reports_helper_limits(node: Node, session: aiohttp.ClientSession) -> None:
    status, data = await call(session, node, "GET", "/v1/status")
    assert status == 200
    assert data["node_id"] == node.node_id
    assert data["helper"]["slots"] == 3


def test_token_bucket_paces_to_its_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=100.0)
    assert bucket.reserve(100, now=0.0) == 0.0  # the burst
    assert bucket.reserve(500, now=0.0) == pytest.approx(0.5)  # then the rate
    assert bucket.reserve(500, now=0.5) == pytest.approx(0.5)  # in order, queued behind
    assert bucket.reserve(100, now=10.0) == 0.0  # refilled (up to the burst)


async def test_a_held_call_answers_when_the_download_ends(
    node: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """``?wait=S`` holds the call until the download ended (or S seconds passed): a client
    following it learns of the end at once, not at its next poll. S is far longer than the
    download here, and the answer is its end: the node did not wait out S."""
    origin.configure(first_byte_delay=0.5)  # it is still going when the call is made
    _, created = await call(session, node, "POST", "/v1/downloads", {"url": origin.url("f.bin")})
    status, first = await call(session, node, "GET", f"/v1/downloads/{created['id']}?wait=10")
    record = node.downloads.records[created["id"]]
    assert record.task is not None
    assert record.task.done()  # answered because it ended
    assert (status, first["state"]) == (200, "done")


@pytest.mark.parametrize("wait", ["0", "-1", "nan", "inf", "11", "soon"])
async def test_a_wait_out_of_bounds_is_refused(
    node: Node, session: aiohttp.ClientSession, origin: TestOrigin, wait: str
) -> None:
    _, created = await call(session, node, "POST", "/v1/downloads", {"url": origin.url("f.bin")})
    status, data = await call(session, node, "GET", f"/v1/downloads/{created['id']}?wait={wait}")
    assert (status, data["code"]) == (400, "bad_request")


async def test_a_poller_can_ask_for_fewer_events(
    node: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """``?events=N``: the last N events only (``swarmget get`` polls with 0: the node then
    renders progress, not its 500 latest events, four times a second)."""
    _, created = await call(session, node, "POST", "/v1/downloads", {"url": origin.url("f.bin")})
    path = f"/v1/downloads/{created['id']}"
    _, whole = await call(session, node, "GET", f"{path}?wait=10")
    assert whole["state"] == "done"
    assert len(whole["events"]) > 2
    _, none = await call(session, node, "GET", f"{path}?wait=10&events=0")
    assert none["events"] == []
    assert none["progress"] == whole["progress"]
    _, two = await call(session, node, "GET", f"{path}?events=2")
    assert two["events"] == whole["events"][-2:]


@pytest.mark.parametrize("events", ["-1", "501", "1.5", "many", "", "\u0663"])
async def test_an_events_count_out_of_bounds_is_refused(
    node: Node, session: aiohttp.ClientSession, origin: TestOrigin, events: str
) -> None:
    _, created = await call(session, node, "POST", "/v1/downloads", {"url": origin.url("f.bin")})
    path = f"/v1/downloads/{created['id']}?events={events}"
    status, data = await call(session, node, "GET", path)
    assert (status, data["code"]) == (400, "bad_request")
