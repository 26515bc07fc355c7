"""The node side of the hub's content index (``swarmget.net.content_hub``) against a hub
that answers what the test says: a real aiohttp server on 127.0.0.1 that checks the
signatures (the swarm's auth middleware) and answers canned bodies. A malformed answer is
a ``HubUnavailable``, never a crash; the hub's error codes become the error tree's."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.content import ContentKey
from swarmget.core.errors import HubRejected, HubUnavailable, NotAContentMember, UnknownNode
from swarmget.core.verification import Verification
from swarmget.net.auth import auth_middleware, authenticated_node
from swarmget.net.content_hub import ContentHubClient
from swarmget.net.hub_client import HubClient, HubPool
from swarmget.protocol.content import ContentNews, ContentReport, JoinContent
from swarmget.protocol.hub import MAX_HUB_ANSWER_BYTES
from swarmget.testing.fakes import identity_for, nid

SECRET = b"content-hub-client-secret-0123456789"
SIZE = 4096
NAME = ContentKey(url="https://h/f", size=SIZE, etag='"a"').index_name()
OTHER = ContentKey(url="https://h/g", size=SIZE, etag='"a"').index_name()
ME, PEER = nid("me"), nid("peer")


def member(node: str = PEER, **kw: Any) -> dict[str, Any]:
    return {"node_id": node, "url": "http://127.0.0.2:7500", "have": [[0, 10]]} | kw


def group(**kw: Any) -> dict[str, Any]:
    return {"name": NAME, "size": SIZE, "members": [member()], "grant": [0, 1024]} | kw


@dataclass
class CannedHub:
    """Answers every content call with ``status`` and ``body``; records what it got."""

    status: int = 200
    body: bytes = b""
    seen: list[tuple[str, str, Any]] = field(default_factory=list)

    def answer(self, status: int, payload: Any) -> None:
        self.status = status
        self.body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((authenticated_node(request), request.path, await request.json()))
        return web.Response(status=self.status, body=self.body, content_type="application/json")


@pytest.fixture
async def canned() -> AsyncIterator[tuple[CannedHub, str]]:
    hub = CannedHub()
    app = web.Application(middlewares=[auth_middleware(SECRET)])
    app.router.add_post("/v1/content/{name}/{action}", hub.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield hub, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def later() -> float:
    """Signatures a little ahead: the canned hub refuses what was signed before it started
    (within the allowed clock skew)."""
    return time.time() + 2


def client(session: aiohttp.ClientSession, url: str) -> ContentHubClient:
    return ContentHubClient(HubClient(session, url, SECRET, identity_for("me"), clock=later))


async def test_calls_are_signed_and_carry_the_messages(
    canned: tuple[CannedHub, str], session: aiohttp.ClientSession
) -> None:
    hub, url = canned
    content = client(session, url)
    hub.answer(200, group())
    joined = await content.join(NAME, JoinContent(size=SIZE, have=[(0, 10)]))
    assert joined.grant == (0, 1024)
    assert [m.node_id for m in joined.members] == [PEER]
    await content.news(NAME, ContentNews(claim=True), size=SIZE)
    report = ContentReport(node_id=PEER, start=0, end=10, verification=Verification.MANIFEST)
    await content.report(NAME, report, size=SIZE)
    hub.answer(200, {"ok": True})
    await content.leave(NAME, keep_as_holder=True)
    assert [(who, path) for who, path, _ in hub.seen] == [
        (ME, f"/v1/content/{NAME}/{action}") for action in ("join", "news", "report", "leave")
    ]
    bodies = [body for _, _, body in hub.seen]
    assert bodies[0]["have"] == [[0, 10]]
    assert bodies[1]["claim"] is True
    assert bodies[2]["verification"] == "manifest"
    assert bodies[3] == {"keep_as_holder": True}


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[]",
        json.dumps(group(name=OTHER)).encode(),  # another content
        json.dumps(group(size=SIZE + 1)).encode(),
        json.dumps(group(members=[member(), member()])).encode(),  # twice
        json.dumps(group(members=[member(ME)])).encode(),  # ourselves
        json.dumps(group(members=[member("not an id")])).encode(),
        json.dumps(group(members=[member(have=[[5, 10], [0, 2]])])).encode(),  # unsorted
        json.dumps(group(members=[member(have=[[0, SIZE + 1]])])).encode(),  # beyond the size
        json.dumps(group(grant=[0, SIZE + 1])).encode(),
        json.dumps(group(grant=[10, 5])).encode(),
        json.dumps(group(extra=1)).encode(),
        json.dumps(group(members=[member(n) for n in range(65)])).encode(),  # too many
        b'{"name": "' + b"a" * MAX_HUB_ANSWER_BYTES + b'"}',  # too long
    ],
)
async def test_a_malformed_answer_is_hub_unavailable(
    canned: tuple[CannedHub, str], session: aiohttp.ClientSession, answer: bytes
) -> None:
    hub, url = canned
    hub.answer(200, answer)
    with pytest.raises(HubUnavailable):
        await client(session, url).news(NAME, ContentNews(), size=SIZE)


@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (404, "not_a_content_member", NotAContentMember),
        (404, "unknown_node", UnknownNode),
        (429, "content_limit", HubUnavailable),
        (503, "overloaded", HubUnavailable),
        (400, "bad_request", HubRejected),
        (403, "forbidden", HubRejected),
        (404, "http", HubRejected),  # a hub without these routes
    ],
)
async def test_the_hubs_errors_become_the_error_trees(
    canned: tuple[CannedHub, str],
    session: aiohttp.ClientSession,
    status: int,
    code: str,
    raised: type[Exception],
) -> None:
    hub, url = canned
    hub.answer(status, {"error": "no", "code": code})
    with pytest.raises(raised) as info:
        await client(session, url).news(NAME, ContentNews(), size=SIZE)
    assert type(info.value) is raised


async def test_a_bad_name_is_our_own_bug(session: aiohttp.ClientSession) -> None:
    content = client(session, "http://127.0.0.1:9")
    with pytest.raises(ValueError, match="index name"):
        await content.join("../../v1/nodes/register", JoinContent(size=SIZE))


async def test_through_a_pool_a_call_fails_over_to_the_next_hub(
    canned: tuple[CannedHub, str], session: aiohttp.ClientSession
) -> None:
    hub, url = canned
    hub.answer(200, group())
    hubs = ["http://127.0.0.1:9", url]
    pool = HubPool(session, hubs, SECRET, identity_for("me"), clock=later)
    assert (await ContentHubClient(pool).join(NAME, JoinContent(size=SIZE))).grant == (0, 1024)
    assert pool.hub_url == url
