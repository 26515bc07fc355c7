"""A helper told the first range it will be asked (``?lead=``, issue #14) asks the origin
for it at once and serves the range request from that answer, once it passed every check
against what the requester pinned: real nodes, a real origin, real sockets on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.ranges import ByteRange
from swarmget.net.auth import json_body, signed_headers
from swarmget.net.peer_client import PeerAddress, check_health
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.node.helper_warm import WARM_KEEP
from swarmget.protocol.peer import MAX_LEAD
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.waiting import until

SECRET = b"l" * 32
ME = identity_for("requester")
OTHER = identity_for("another requester")
KiB = 1024
SIZE = 4 * 1024 * KiB
HELPER_IP = "127.0.0.2"


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=5)
        yield o


def _config(tmp_path: Path, **kw: Any) -> NodeConfig:
    """A helper on ``HELPER_IP`` that may fetch from loopback origins."""
    return NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "state",
        download_dir=tmp_path / "dl",
        listen_host=HELPER_IP,
        origin_policy=AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8")),
        **kw,
    )


@pytest.fixture
async def helper(tmp_path: Path) -> AsyncIterator[Node]:
    async with open_node(_config(tmp_path)) as node:
        yield node


async def health(
    session: aiohttp.ClientSession, node: Node, query: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    url = str(URL(f"{node.peer_url}/v1/health").with_query(query))
    headers = signed_headers(SECRET, ME, "GET", url)
    async with session.get(URL(url, encoded=True), headers=headers) as resp:
        return resp.status, json.loads(await resp.read())


async def ask_range(
    session: aiohttp.ClientSession,
    node: Node,
    fields: dict[str, Any],
    who: Any = ME,
) -> tuple[int, bytes]:
    body = json_body(fields)
    url = f"{node.peer_url}/v1/range"
    headers = signed_headers(SECRET, who, "POST", url, body)
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


def pinned(origin: TestOrigin, start: int, end: int) -> dict[str, Any]:
    return {
        "url": origin.url("f.bin"),
        "start": start,
        "end": end,
        "size": SIZE,
        "etag": origin.etag("f.bin"),
    }


async def test_the_lead_is_asked_at_once_and_serves_the_range_that_starts_it(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    status, _ = await health(session, helper, {"warm": url, "lead": f"{64 * KiB}-{128 * KiB}"})
    assert status == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)  # before any range
    assert origin.stats().served[0].start == 64 * KiB
    status, data = await ask_range(session, helper, pinned(origin, 64 * KiB, 128 * KiB))
    assert status == 200
    assert data == origin.content("f.bin")[64 * KiB : 128 * KiB]
    assert origin.stats().requests_by_method.get("GET") == 1  # no second request
    stats = helper.helper.stats
    assert (stats.lead_started, stats.lead_used, stats.lead_unfit) == (1, 1, 0)


async def test_a_range_shorter_than_the_lead_reads_only_its_bytes(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """The requester clips a lead to the file it then pinned: the lead (asked past the
    end) answers what there is, and the range served is exactly what was asked."""
    url = origin.url("f.bin")
    assert (await health(session, helper, {"warm": url, "lead": f"{200 * KiB}-{300 * KiB}"}))[
        0
    ] == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)
    status, data = await ask_range(session, helper, pinned(origin, 200 * KiB, 210 * KiB))
    assert status == 200
    assert data == origin.content("f.bin")[200 * KiB : 210 * KiB]
    assert origin.stats().requests_by_method.get("GET") == 1
    assert helper.helper.stats.lead_used == 1


async def test_another_range_or_another_requester_does_not_take_the_lead(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    assert (await health(session, helper, {"warm": url, "lead": f"0-{64 * KiB}"}))[0] == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)
    status, data = await ask_range(session, helper, pinned(origin, 64 * KiB, 65 * KiB))
    assert (status, data) == (200, origin.content("f.bin")[64 * KiB : 65 * KiB])
    status, data = await ask_range(session, helper, pinned(origin, 0, 10), who=OTHER)
    assert (status, data) == (200, origin.content("f.bin")[:10])
    assert origin.stats().requests_by_method.get("GET") == 3  # each its own request
    await until(lambda: helper.helper.stats.lead_unused == 1, limit=WARM_KEEP + 5)
    assert helper.helper.stats.lead_used == 0


async def test_an_unclaimed_lead_is_closed(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    lead = f"0-{1024 * KiB}"
    assert (await health(session, helper, {"warm": url, "lead": lead}))[0] == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)
    # the lead's connection and two spares (for the requester's other streams)
    await until(lambda: origin.stats().open_connections_by_ip.get(HELPER_IP) == 3)
    await until(lambda: helper.helper.stats.lead_unused == 1, limit=WARM_KEEP + 5)
    # closed, not kept idle in the pool (its whole body came, unread: aiohttp pooled it)
    await until(lambda: origin.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0, limit=1)
    # what reached the helper before it closed is at most the lead
    assert origin.stats().bytes_by_ip.get(HELPER_IP, 0) <= 1024 * KiB


async def test_a_lead_of_the_old_file_is_not_served_for_the_new_one(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """The file changed between the lead's answer and the requester's probe: the lead (the
    old version's bytes) fails the check against the validator the requester pinned and
    the range is fetched again, of the new version."""
    origin.configure(etag_change_after=1)  # once the lead's bytes went out: version 1
    url = origin.url("f.bin")
    old = origin.content("f.bin", 0)
    assert (await health(session, helper, {"warm": url, "lead": f"0-{64 * KiB}"}))[0] == 200
    await until(lambda: origin.stats().file_versions["f.bin"] == 1)
    new = origin.content("f.bin", 1)
    assert new[: 64 * KiB] != old[: 64 * KiB]
    status, data = await ask_range(session, helper, pinned(origin, 0, 64 * KiB))
    assert status == 200
    assert data == new[: 64 * KiB]
    assert origin.stats().requests_by_method.get("GET") == 2
    assert (helper.helper.stats.lead_used, helper.helper.stats.lead_unfit) == (0, 1)


async def test_a_lead_of_a_newer_file_than_pinned_ends_in_the_change_being_told(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    origin.configure(etag_change_after=1)
    url = origin.url("f.bin")
    old_etag = origin.etag("f.bin")
    async with session.get(url) as resp:  # someone else's download: the file changes
        await resp.read()
    assert origin.stats().file_versions["f.bin"] == 1
    assert (await health(session, helper, {"warm": url, "lead": f"0-{64 * KiB}"}))[0] == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 2)
    fields = pinned(origin, 0, 64 * KiB) | {"etag": old_etag}
    status, data = await ask_range(session, helper, fields)
    assert status == 409
    assert json.loads(data)["code"] == "origin_changed"
    assert helper.helper.stats.lead_unfit == 1


async def test_a_lead_past_the_end_of_the_file_is_not_kept(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    lead = f"{SIZE}-{SIZE + 64 * KiB}"
    assert (await health(session, helper, {"warm": url, "lead": lead}))[0] == 200
    await until(lambda: helper.helper.stats.lead_unusable == 1)
    status, data = await ask_range(session, helper, pinned(origin, 0, 10))
    assert (status, data) == (200, origin.content("f.bin")[:10])


@pytest.mark.parametrize(
    "query",
    [
        {"lead": "0-10"},  # no warm
        {"lead": "10-5"},
        {"lead": "5-5"},
        {"lead": "a-b"},
        {"lead": "-5"},
        {"lead": "1-2-3"},
        {"lead": f"0-{MAX_LEAD + 1}"},
        {"lead": f"{2**63}-{2**63 + 1}"},
        {"lead": "1" * 40},
    ],
    ids=["no-warm", "backwards", "empty", "letters", "open", "three", "too-long", "huge", "junk"],
)
async def test_a_bad_lead_is_a_bad_request(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin, query: dict[str, str]
) -> None:
    if query != {"lead": "0-10"}:
        query = {"warm": origin.url("f.bin"), **query}
    status, answer = await health(session, helper, query)
    assert status == 400
    assert answer["code"] == "bad_request"
    assert helper.helper.stats.warm_started == 0
    assert origin.stats().requests_by_method == {}


async def test_the_requesters_check_health_tells_each_peer_its_lead(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    peer = PeerAddress(node_id=helper.node_id, url=helper.peer_url)
    leads = {helper.node_id: ByteRange(32 * KiB, 96 * KiB), "someone else": ByteRange(0, 1)}
    found = await check_health(
        session, [peer], SECRET, ME, warm_url=origin.url("f.bin"), leads=leads
    )
    assert [p.node_id for p in found] == [helper.node_id]
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)
    assert origin.stats().served[0].start == 32 * KiB
    status, data = await ask_range(session, helper, pinned(origin, 32 * KiB, 96 * KiB))
    assert (status, data) == (200, origin.content("f.bin")[32 * KiB : 96 * KiB])
    assert helper.helper.stats.lead_used == 1


@pytest.fixture
async def rationed(tmp_path: Path) -> AsyncIterator[Node]:
    """A helper with a daily quota of 100 KiB."""
    async with open_node(_config(tmp_path, daily_quota=100 * KiB)) as node:
        yield node


def quota_left(node: Node) -> int:
    quota = node.helper.quota
    assert quota is not None
    return quota.left()


async def test_a_lead_nobody_reads_is_charged_to_the_daily_quota(
    rationed: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    assert (await health(session, rationed, {"warm": url, "lead": f"0-{64 * KiB}"}))[0] == 200
    assert quota_left(rationed) == 36 * KiB  # set aside while it waits
    await until(lambda: rationed.helper.stats.lead_unused == 1, limit=WARM_KEEP + 5)
    assert quota_left(rationed) == 36 * KiB  # the origin may have sent it all: charged
    # a second lead no longer fits what is left: the connection is warmed, nothing asked
    assert (await health(session, rationed, {"warm": url, "lead": f"0-{64 * KiB}"}))[0] == 200
    await until(lambda: rationed.helper.stats.warm_done == 2)
    assert rationed.helper.stats.lead_started == 1
    assert origin.stats().requests_by_method.get("GET") == 1


async def test_a_lead_served_is_charged_what_it_served(
    rationed: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    assert (await health(session, rationed, {"warm": url, "lead": f"0-{64 * KiB}"}))[0] == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)
    status, data = await ask_range(session, rationed, pinned(origin, 0, 16 * KiB))
    assert (status, data) == (200, origin.content("f.bin")[: 16 * KiB])
    assert rationed.helper.stats.lead_used == 1
    await until(lambda: quota_left(rationed) == 84 * KiB)


async def test_an_unclaimed_lead_from_a_slow_origin_leaves_no_connection(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """Its body trickles in while nobody claims it: it is not read to the end meanwhile
    (aiohttp would then pool the connection, and the lead's close would leave it open)."""
    origin.configure(rate_per_conn=2 * 1024 * KiB)
    url = origin.url("f.bin")
    assert (await health(session, helper, {"warm": url, "lead": f"0-{512 * KiB}"}))[0] == 200
    await until(lambda: helper.helper.stats.lead_unused == 1, limit=WARM_KEEP + 5)
    await until(lambda: origin.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0, limit=1)


async def test_a_lead_that_comes_in_slowly_is_served_whole(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """The origin pauses between its chunks longer than the helper batches for
    (``FORWARD_DELAY``): each pause ends a batch, and the lead's body reads on after it.
    (It did not: the pause cancelled the body's reader, a generator, which ended it there;
    the helper closed the response as if complete, short of its Content-Length, and the
    requester waited for bytes that never came: the benchmark's stalled leads.)"""
    # after a burst of 64 KiB, 1 KiB every 0.1 s: a pause in every batch
    origin.configure(rate_per_conn=10 * KiB)
    url = origin.url("f.bin")
    lead = (64 * KiB, 64 * KiB + 68 * KiB)
    assert (await health(session, helper, {"warm": url, "lead": f"{lead[0]}-{lead[1]}"}))[0] == 200
    await until(lambda: origin.stats().requests_by_method.get("GET") == 1)
    async with asyncio.timeout(10):  # (the short answer never ended)
        status, data = await ask_range(session, helper, pinned(origin, *lead))
    assert status == 200
    assert data == origin.content("f.bin")[lead[0] : lead[1]]
    assert origin.stats().requests_by_method.get("GET") == 1  # served from the lead
    assert helper.helper.stats.lead_used == 1
