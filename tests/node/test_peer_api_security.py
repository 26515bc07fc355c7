"""A real node's peer API: signatures, replays, the SSRF guard, limits and fairness."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.net.auth import json_body, signed_headers
from swarmget.net.origin import OriginClient
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.node.helper_service import HelperLimits, HelperService
from swarmget.node.range_stream import Refusal
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin

SECRET = b"s" * 32
ME = identity_for("tester")
KiB = 1024


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 256 * KiB, seed=9)
        yield o


def _config(tmp_path: Path, policy: AddressPolicy, **kw: Any) -> NodeConfig:
    return NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "state",
        download_dir=tmp_path / "dl",
        listen_host="127.0.0.2",
        origin_policy=policy,
        **kw,
    )


@pytest.fixture
async def guarded_node(tmp_path: Path) -> AsyncIterator[Node]:
    async with open_node(_config(tmp_path, AddressPolicy())) as node:
        yield node


@pytest.fixture
async def open_node_for_tests(tmp_path: Path) -> AsyncIterator[Node]:
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
    async with open_node(_config(tmp_path, policy, slots=2, daily_quota=300 * KiB)) as node:
        yield node


def range_body(url: str, start: int = 0, end: int = 1000, size: int = 256 * KiB) -> bytes:
    return json_body({"url": url, "start": start, "end": end, "size": size})


async def post_range(
    session: aiohttp.ClientSession,
    node: Node,
    body: bytes,
    *,
    secret: bytes = SECRET,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    url = f"{node.peer_url}/v1/range"
    if headers is None:
        headers = signed_headers(secret, ME, "POST", url, body)
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def test_missing_signature_is_401(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    status, body, _ = await post_range(
        session, open_node_for_tests, range_body(origin.url("f.bin")), headers={}
    )
    assert status == 401
    assert json.loads(body)["code"] == "auth"
    assert origin.stats().bytes_total == 0


async def test_wrong_secret_is_401(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    status, _, _ = await post_range(
        session, open_node_for_tests, range_body(origin.url("f.bin")), secret=b"x" * 32
    )
    assert status == 401


async def test_tampered_body_is_401(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    signed_for = range_body(origin.url("f.bin"))
    headers = signed_headers(
        SECRET,
        ME,
        "POST",
        f"{open_node_for_tests.peer_url}/v1/range",
        signed_for,
    )
    other = range_body(origin.url("f.bin"), end=2000)
    status, _, _ = await post_range(session, open_node_for_tests, other, headers=headers)
    assert status == 401


async def test_replayed_request_is_refused(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    body = range_body(origin.url("f.bin"))
    headers = signed_headers(SECRET, ME, "POST", f"{open_node_for_tests.peer_url}/v1/range", body)
    first, data, _ = await post_range(session, open_node_for_tests, body, headers=headers)
    assert first == 200
    assert data == origin.content("f.bin")[:1000]
    again, _, _ = await post_range(session, open_node_for_tests, body, headers=headers)
    assert again == 401


FORBIDDEN = (403, "forbidden_target")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://127.0.0.1:{port}/files/f.bin", FORBIDDEN),
        ("http://localhost:{port}/files/f.bin", FORBIDDEN),
        ("http://169.254.169.254/latest/meta-data/", FORBIDDEN),
        ("http://10.1.2.3/x", FORBIDDEN),
        ("http://192.168.1.1/x", FORBIDDEN),
        ("http://[::ffff:127.0.0.1]:{port}/files/f.bin", FORBIDDEN),
        # aiohttp refuses non-canonical IPv4 literals before any connection
        ("http://2130706433:{port}/files/f.bin", (502, "origin_unusable")),
        # a hexadecimal spelling goes to the resolver (127.0.0.1), which the guard refuses
        ("http://0x7f.1:{port}/files/f.bin", FORBIDDEN),
    ],
)
async def test_ssrf_targets_are_refused_without_the_allow_flag(
    guarded_node: Node,
    session: aiohttp.ClientSession,
    origin: TestOrigin,
    target: str,
    expected: tuple[int, str],
) -> None:
    port = origin.base_url.rsplit(":", 1)[1]
    status, body, _ = await post_range(
        session, guarded_node, range_body(target.format(port=port)), secret=SECRET
    )
    assert (status, json.loads(body)["code"]) == expected, body
    assert origin.stats().bytes_total == 0  # never fetched


async def test_redirect_to_a_private_address_is_not_followed(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    # the origin is allowed (127.0.0.0/8) but redirects to 10.0.0.1: a helper fetches only
    # the pinned URL and never follows a redirect from it
    url = f"{origin.base_url}/redirect-to?url=http://10.0.0.1/x"
    status, body, _ = await post_range(session, open_node_for_tests, range_body(url))
    assert (status, json.loads(body)["code"]) == (409, "origin_changed"), body


async def test_bad_range_request_is_400(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    for body in (
        json_body({"url": origin.url("f.bin"), "start": 10, "end": 5, "size": 100}),
        json_body({"url": "file:///etc/passwd", "start": 0, "end": 5, "size": 100}),
        b"not json",
    ):
        status, data, _ = await post_range(session, open_node_for_tests, body)
        assert status == 400, data
        assert json.loads(data)["code"] == "bad_request"


async def test_quota_answers_429_with_retry_after(
    open_node_for_tests: Node, session: aiohttp.ClientSession, origin: TestOrigin
) -> None:
    status, _, _ = await post_range(
        session, open_node_for_tests, range_body(origin.url("f.bin"), 0, 200 * KiB)
    )
    assert status == 200
    status, data, headers = await post_range(
        session, open_node_for_tests, range_body(origin.url("f.bin"), 0, 200 * KiB)
    )
    assert status == 429
    assert json.loads(data)["code"] == "quota"
    assert int(headers["Retry-After"]) > 0


async def test_quota_survives_a_restart(tmp_path: Path, origin: TestOrigin) -> None:
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
    config = _config(tmp_path, policy, daily_quota=300 * KiB)
    async with aiohttp.ClientSession() as session:
        async with open_node(config) as node:
            body = range_body(origin.url("f.bin"), 0, 200 * KiB)
            assert (await post_range(session, node, body))[0] == 200
        async with open_node(config) as node:
            assert node.helper.quota is not None
            assert node.helper.quota.left() == 100 * KiB


def test_slots_are_shared_fairly_between_requesters() -> None:
    service = HelperService(OriginClient.__new__(OriginClient), HelperLimits(slots=4))
    held = [service.admit("a", 10) for _ in range(4)]  # alone, "a" may use every slot
    with pytest.raises(Refusal):
        service.admit("b", 10)  # full
    service.release("a", held.pop())
    service.admit("b", 10)  # a freed slot goes to the newcomer
    service.release("a", held.pop())
    with pytest.raises(Refusal):
        service.admit("a", 10)  # "a" holds 2 = its fair half while "b" is active
    service.admit("b", 10)
    assert service.stats.active_by_requester == {"a": 2, "b": 2}
