"""A helper told the download's URL by a signed health check opens its origin connection
early (issue #14): real nodes, a real origin, real sockets on loopback."""

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
from swarmget.net.auth import json_body, signed_headers
from swarmget.net.peer_client import PeerAddress, check_health
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.node.helper_warm import WARM_KEEP
from swarmget.protocol.peer import MAX_WARM_URL
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.waiting import until

SECRET = b"w" * 32
ME = identity_for("requester")
KiB = 1024
HELPER_IP = "127.0.0.2"


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 64 * KiB, seed=4)
        yield o


def _config(tmp_path: Path, policy: AddressPolicy, **kw: Any) -> NodeConfig:
    return NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "state",
        download_dir=tmp_path / "dl",
        listen_host=HELPER_IP,
        origin_policy=policy,
        **kw,
    )


@pytest.fixture
async def helper(tmp_path: Path) -> AsyncIterator[Node]:
    """One slot: the warm-up opens its one connection, no spares (tested apart)."""
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
    async with open_node(_config(tmp_path, policy, slots=1)) as node:
        yield node


@pytest.fixture
async def three_slots(tmp_path: Path) -> AsyncIterator[Node]:
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
    async with open_node(_config(tmp_path, policy, slots=3)) as node:
        yield node


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Node]:
    """A helper with the default address policy: loopback origins are refused."""
    async with open_node(_config(tmp_path, AddressPolicy())) as node:
        yield node


async def health(
    session: aiohttp.ClientSession, node: Node, warm: str | None, *, signed: bool = True
) -> tuple[int, dict[str, Any]]:
    url = f"{node.peer_url}/v1/health"
    if warm is not None:
        url = str(URL(url).with_query({"warm": warm}))
    headers = signed_headers(SECRET, ME, "GET", url) if signed else {}
    async with session.get(URL(url, encoded=True), headers=headers) as resp:
        return resp.status, json.loads(await resp.read())


async def test_a_signed_health_check_warms_a_connection_the_range_reuses(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    url = origin.url("f.bin")
    status, answer = await health(session, helper, url)
    assert status == 200
    assert answer["node_id"] == helper.node_id
    await until(lambda: helper.helper.stats.warm_done == 1)
    stats = origin.stats()
    assert stats.requests_by_method == {}  # nothing sent: a connection opened, pooled
    assert stats.open_connections_by_ip.get(HELPER_IP) == 1
    body = json_body({"url": url, "start": 0, "end": 1000, "size": 64 * KiB})
    range_url = f"{helper.peer_url}/v1/range"
    headers = signed_headers(SECRET, ME, "POST", range_url, body)
    async with session.post(range_url, data=body, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.read() == origin.content("f.bin")[:1000]
    after = origin.stats()
    assert after.requests_by_method.get("GET") == 1
    assert after.open_connections_by_ip.get(HELPER_IP) == 1  # the same one: no new connect


async def test_a_connection_no_range_claims_is_closed(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """A requester that dies (or picks other helpers) after its health check leaves no idle
    connection at the origin for long: it is closed ``WARM_KEEP`` seconds later."""
    assert (await health(session, helper, origin.url("f.bin")))[0] == 200
    await until(lambda: helper.helper.stats.warm_done == 1)
    assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 1
    await until(lambda: helper.helper.stats.warm_unused == 1, limit=WARM_KEEP + 5)
    await until(lambda: origin.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0)
    assert origin.stats().requests_by_method == {}
    # the next health check warms again, and a range then takes that connection
    assert (await health(session, helper, origin.url("f.bin")))[0] == 200
    await until(lambda: helper.helper.stats.warm_done == 2)
    body = json_body({"url": origin.url("f.bin"), "start": 0, "end": 10, "size": 64 * KiB})
    range_url = f"{helper.peer_url}/v1/range"
    headers = signed_headers(SECRET, ME, "POST", range_url, body)
    async with session.post(range_url, data=body, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.read() == origin.content("f.bin")[:10]
    assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 1
    assert helper.helper.stats.warm_unused == 1


async def test_a_held_connection_is_closed_when_the_node_stops(
    tmp_path: Path, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
    async with open_node(_config(tmp_path, policy)) as node:  # (3 slots: two spares too)
        assert (await health(session, node, origin.url("f.bin")))[0] == 200
        await until(lambda: node.helper.stats.warm_done == 1 and node.helper.stats.warm_spares == 2)
        assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 3
    await until(lambda: origin.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0, limit=5)
    assert node.helper.stats.warm_unused == 0  # closed by the stop, not by the timer


async def test_the_requesters_check_health_tells_the_url(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    peer = PeerAddress(node_id=helper.node_id, url=helper.peer_url)
    found = await check_health(session, [peer], SECRET, ME, warm_url=origin.url("f.bin"))
    assert [p.node_id for p in found] == [helper.node_id]
    await until(lambda: helper.helper.stats.warm_done == 1)
    assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 1


async def test_an_unsigned_health_check_fetches_nothing(
    helper: Node, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with open_test_origin() as other, open_test_origin() as marker:
        other.add_generated("f.bin", KiB, seed=1)
        marker.add_generated("f.bin", KiB, seed=2)
        status, answer = await health(session, helper, other.url("f.bin"), signed=False)
        assert status == 401
        assert answer["code"] == "auth"
        # a signed check after it, to another origin: once that warm-up is done, the
        # unsigned one would have been started long before
        assert (await health(session, helper, marker.url("f.bin")))[0] == 200
        await until(lambda: helper.helper.stats.warm_done == 1)
        assert marker.stats().open_connections_by_ip.get(HELPER_IP) == 1
        assert other.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0
        assert other.stats().requests_by_method == {}
        assert helper.helper.stats.warm_started == 1


async def test_a_loopback_origin_is_not_warmed_unless_allowed(
    guarded: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    status, answer = await health(session, guarded, origin.url("f.bin"))
    assert status == 200
    assert answer["node_id"] == guarded.node_id
    await until(lambda: guarded.helper.stats.warm_failed == 1)
    assert guarded.helper.stats.warm_refused == 1
    assert guarded.helper.stats.warm_done == 0
    assert origin.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0


async def test_an_old_requester_without_the_url_keeps_working(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    status, answer = await health(session, helper, None)
    assert status == 200
    assert answer["node_id"] == helper.node_id
    peer = PeerAddress(node_id=helper.node_id, url=helper.peer_url)
    assert [p.node_id for p in await check_health(session, [peer], SECRET, ME)] == [helper.node_id]
    assert helper.helper.stats.warm_started == 0
    assert origin.stats().requests_by_method == {}


async def test_a_paused_or_busy_helper_does_not_warm(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    helper.helper.paused = True
    status, answer = await health(session, helper, origin.url("f.bin"))
    assert status == 503
    assert answer["code"] == "helping_paused"
    helper.helper.paused = False
    helper.helper.set_slots(1)
    helper.helper.stats.active_by_requester["someone"] = 1  # its one slot is taken
    assert (await health(session, helper, origin.url("f.bin")))[0] == 200
    helper.helper.stats.active_by_requester.clear()
    assert helper.helper.stats.warm_started == 0
    assert origin.stats().requests_by_method == {}


@pytest.mark.parametrize(
    "warm",
    ["x" * (MAX_WARM_URL + 1), "ftp://example.com/f", "not a url", ""],
    ids=["too-long", "scheme", "garbage", "empty"],
)
async def test_a_bad_url_in_a_health_check_is_a_bad_request(
    helper: Node, session: aiohttp.ClientSession, warm: str
) -> None:
    status, answer = await health(session, helper, warm)
    assert status == 400
    assert answer["code"] == "bad_request"
    assert helper.helper.stats.warm_started == 0


async def test_a_url_too_long_to_tell_is_left_out(
    helper: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    long_url = origin.url("f.bin") + "?" + "q" * MAX_WARM_URL
    peer = PeerAddress(node_id=helper.node_id, url=helper.peer_url)
    found = await check_health(session, [peer], SECRET, ME, warm_url=long_url)
    assert [p.node_id for p in found] == [helper.node_id]
    assert helper.helper.stats.warm_started == 0


async def _range(
    session: aiohttp.ClientSession, node: Node, url: str, start: int, end: int
) -> bytes:
    body = json_body({"url": url, "start": start, "end": end, "size": 64 * KiB})
    range_url = f"{node.peer_url}/v1/range"
    headers = signed_headers(SECRET, ME, "POST", range_url, body)
    async with session.post(range_url, data=body, headers=headers) as resp:
        assert resp.status == 200
        return await resp.read()


async def test_the_warm_up_opens_spares_the_other_ranges_take(
    three_slots: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    """A helper with three slots opens two more connections beside the warm-up's: the
    requester's other two streams to it take them instead of connecting after its probe
    (a round trip each, on a first download from an origin)."""
    url = origin.url("f.bin")
    assert (await health(session, three_slots, url))[0] == 200
    stats = three_slots.helper.stats
    await until(lambda: stats.warm_done == 1 and stats.warm_spares == 2)
    assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 3
    assert origin.stats().requests_by_method == {}
    parts = [(0, 1000), (1000, 30 * KiB), (30 * KiB, 64 * KiB)]
    got = await asyncio.gather(*(_range(session, three_slots, url, a, b) for a, b in parts))
    assert got == [origin.content("f.bin")[a:b] for a, b in parts]
    assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 3  # no new connect
    assert stats.warm_spares_used == 2


async def test_spares_no_range_takes_are_closed(
    three_slots: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    assert (await health(session, three_slots, origin.url("f.bin")))[0] == 200
    stats = three_slots.helper.stats
    await until(lambda: stats.warm_spares == 2)
    assert origin.stats().open_connections_by_ip.get(HELPER_IP) == 3
    await until(lambda: stats.warm_spares_unused == 2, limit=WARM_KEEP + 5)
    await until(lambda: origin.stats().open_connections_by_ip.get(HELPER_IP, 0) == 0)
    assert stats.warm_spares_used == 0
