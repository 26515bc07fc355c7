"""The hub's content index over HTTP (fetch once, #15), driven by the real node-side client.

A real hub (``open_hub``: aiohttp on 127.0.0.1, its registry in a SQLite file) and nodes
whose connections come from 127.0.0.x (one group: the hub groups by /24) or 127.0.1.x
(another group). The hub's clock and the nodes' signatures share a clock the test moves:
nobody expires unless the test says so, and the group endgame's ``steal_after`` passes
when the test moves the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.content import ContentKey
from swarmget.core.errors import (
    HubRejected,
    HubUnavailable,
    NotAContentMember,
    UnknownNode,
)
from swarmget.core.verification import Verification
from swarmget.hub.content_index import MAX_CONTENTS_PER_NODE
from swarmget.hub.service import RunningHub, open_hub
from swarmget.net.auth import signed_headers
from swarmget.net.content_hub import ContentHubClient
from swarmget.net.hub_client import HubClient, Registration
from swarmget.protocol.content import (
    MAX_CONTENT_BODY,
    ContentGroup,
    ContentNews,
    ContentReport,
    JoinContent,
    content_path,
)
from swarmget.testing.fakes import identity_for

SECRET = b"content-routes-test-secret-0123456789"
T0 = 1_800_000_000.0
MiB = 1024 * 1024
SIZE = 2 * MiB
NAME = ContentKey(url="https://cdn.example.org/f.iso", size=SIZE, etag='"v1"').index_name()
OTHER = ContentKey(url="https://cdn.example.org/g.iso", size=SIZE, etag='"v1"').index_name()
REG = Registration(port=7500, version="0.1.0", slots=2)


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Node:
    hub: HubClient
    content: ContentHubClient
    name: str

    @property
    def id(self) -> str:
        return self.hub.node_id


@dataclass
class Lan:
    """One hub (restartable on its SQLite file) and the nodes the test makes."""

    tmp_path: Path
    stack: AsyncExitStack
    clock: Clock = field(default_factory=Clock)
    ttl: float = 15.0
    running: RunningHub | None = None
    hub_stack: AsyncExitStack | None = None
    sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    async def start(self) -> None:
        self.hub_stack = AsyncExitStack()
        hub = open_hub(
            host="127.0.0.1",
            port=0,
            db_url=f"sqlite+aiosqlite:///{self.tmp_path / 'hub.db'}",
            secret=SECRET,
            ttl=self.ttl,
            group_prefix=24,
            clock=self.clock,
            liveness_in_memory=False,  # the test's clock jumps: liveness read from the store
        )
        self.running = await self.hub_stack.enter_async_context(hub)

    async def stop(self) -> None:
        assert self.hub_stack is not None
        await self.hub_stack.aclose()
        self.hub_stack = self.running = None

    async def session(self, ip: str) -> aiohttp.ClientSession:
        if ip not in self.sessions:
            connector = aiohttp.TCPConnector(local_addr=(ip, 0))
            self.sessions[ip] = aiohttp.ClientSession(connector=connector)
            self.stack.push_async_callback(self.sessions[ip].close)
        return self.sessions[ip]

    async def client(self, name: str, ip: str = "127.0.0.2") -> Node:
        hub = HubClient(
            await self.session(ip), self.url, SECRET, identity_for(name), clock=self.clock
        )
        return Node(hub, ContentHubClient(hub), name)

    async def node(self, name: str, ip: str = "127.0.0.2") -> Node:
        node = await self.client(name, ip)
        await node.hub.register(REG)
        return node

    async def metric(self, name: str) -> float:
        async with (await self.session("127.0.0.1")).get(f"{self.url}/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"no {name}")


@pytest.fixture
async def lan(tmp_path: Path) -> AsyncIterator[Lan]:
    async with AsyncExitStack() as stack:
        lan = Lan(tmp_path, stack)
        await lan.start()
        stack.push_async_callback(_stop_if_running, lan)
        yield lan


async def _stop_if_running(lan: Lan) -> None:
    if lan.running is not None:
        await lan.stop()


def _join(**kw: Any) -> JoinContent:
    return JoinContent(size=SIZE, **kw)


def _ids(group: ContentGroup) -> list[str]:
    return [m.node_id for m in group.members]


def _have(group: ContentGroup, node: Node) -> list[tuple[int, int]]:
    return next(m.have for m in group.members if m.node_id == node.id)


# --- grants, news, endgame, leave --------------------------------------------------------------


async def test_two_members_get_disjoint_grants_and_see_each_other(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b", "127.0.0.3")
    first = await a.content.join(NAME, _join())
    assert first.members == []
    assert first.grant == (0, MiB)
    second = await b.content.join(NAME, _join())
    assert second.grant == (MiB, SIZE)
    assert _ids(second) == [a.id]
    assert second.members[0].url == f"http://127.0.0.2:{REG.port}"  # as registered
    again = await a.content.join(NAME, _join())  # idempotent: no second grant
    assert again.grant is None
    assert _ids(again) == [b.id]
    assert await lan.metric("swarmget_hub_contents") == 1
    assert await lan.metric("swarmget_hub_content_claims_total") == 2


async def test_news_propagates_have_to_the_other_members_answer(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b")
    await a.content.join(NAME, _join())
    await b.content.join(NAME, _join())
    await a.content.news(NAME, ContentNews(have=[(0, 4096)]), size=SIZE)
    seen = await b.content.news(NAME, ContentNews(), size=SIZE)
    assert _have(seen, a) == [(0, 4096)]
    await a.content.news(NAME, ContentNews(have=[(4096, 8192)]), size=SIZE)
    assert _have(await b.content.news(NAME, ContentNews(), size=SIZE), a) == [(0, 8192)]


async def test_an_idle_member_steals_only_after_steal_after(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b")
    assert (await a.content.join(NAME, _join())).grant == (0, MiB)
    assert (await b.content.join(NAME, _join())).grant == (MiB, SIZE)
    done = ContentNews(have=[(MiB, SIZE)], claim=True, idle=True)
    assert (await b.content.news(NAME, done, size=SIZE)).grant is None  # a's grant is young
    lan.clock.now += 3.0
    idle = ContentNews(claim=True, idle=True)
    assert (await b.content.news(NAME, idle, size=SIZE)).grant == (0, MiB)  # a second copy
    assert (await b.content.news(NAME, idle, size=SIZE)).grant is None  # at most two


async def test_leaving_returns_the_grants_to_the_pool(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b")
    await a.content.join(NAME, _join())
    await b.content.join(NAME, _join())
    assert (await b.content.news(NAME, ContentNews(claim=True), size=SIZE)).grant is None
    await a.content.leave(NAME)
    after = await b.content.news(NAME, ContentNews(claim=True), size=SIZE)
    assert after.grant == (0, MiB)
    assert after.members == []
    with pytest.raises(NotAContentMember):
        await a.content.news(NAME, ContentNews(), size=SIZE)


async def test_a_member_leaving_as_holder_stays_listed_with_what_it_has(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b")
    await a.content.join(NAME, _join(have=[(0, 4096)]))
    await b.content.join(NAME, _join())
    await a.content.leave(NAME, keep_as_holder=True)
    seen = await b.content.news(NAME, ContentNews(claim=True), size=SIZE)
    assert [(m.node_id, m.have, m.fetching) for m in seen.members] == [(a.id, [(0, 4096)], False)]
    assert seen.grant == (4096, SIZE)  # a's unfinished grant went back to the pool


async def test_only_members_of_the_askers_group_are_listed(lan: Lan) -> None:
    a, far = await lan.node("a"), await lan.node("far", "127.0.1.2")
    await a.content.join(NAME, _join())
    elsewhere = await far.content.join(NAME, _join())
    assert elsewhere.members == []
    assert elsewhere.grant == (0, MiB)


# --- the end of a membership --------------------------------------------------------------------


async def test_an_expired_member_disappears_and_its_grants_go_back(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        lan = Lan(tmp_path, stack, ttl=0.9)  # the sweep runs every 0.3 s
        await lan.start()
        stack.push_async_callback(_stop_if_running, lan)
        a, b = await lan.node("a"), await lan.node("b")
        await a.content.join(NAME, _join())
        await b.content.join(NAME, _join())
        lan.clock.now += 0.5
        await b.hub.heartbeat()
        await b.content.news(NAME, ContentNews(), size=SIZE)
        lan.clock.now += 0.5  # a: silent for 1.0 s > TTL; b: for 0.5 s
        for _ in range(100):
            if await lan.metric("swarmget_hub_contents") == 1:
                seen = await b.content.news(NAME, ContentNews(), size=SIZE)
                if seen.members == []:
                    break
            await _pause()
        else:
            raise AssertionError("a never expired")
        assert (await b.content.news(NAME, ContentNews(claim=True), size=SIZE)).grant == (0, MiB)


async def _pause() -> None:
    await asyncio.sleep(0.1)


async def test_a_member_reported_by_two_others_is_dropped(lan: Lan) -> None:
    liar, b, c = await lan.node("liar"), await lan.node("b"), await lan.node("c")
    for node in (liar, b, c):
        await node.content.join(NAME, _join())
    bad = ContentReport(node_id=liar.id, start=0, end=4096, verification=Verification.SAMPLED)
    assert liar.id in _ids(await b.content.report(NAME, bad, size=SIZE))
    assert liar.id in _ids(await b.content.report(NAME, bad, size=SIZE))  # same reporter
    assert liar.id not in _ids(await c.content.report(NAME, bad, size=SIZE))
    assert liar.id not in _ids(await b.content.news(NAME, ContentNews(), size=SIZE))
    with pytest.raises(NotAContentMember):
        await liar.content.news(NAME, ContentNews(), size=SIZE)
    with pytest.raises(HubRejected) as refused:
        await liar.content.join(NAME, _join())
    assert refused.value.status == 403
    assert await lan.metric("swarmget_hub_content_reports_total") == 3


async def test_a_hub_restart_is_rebuilt_from_the_members_rejoining(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b")
    await a.content.join(NAME, _join())
    await b.content.join(NAME, _join())
    await a.content.news(NAME, ContentNews(have=[(0, 4096)]), size=SIZE)
    await lan.stop()
    await lan.start()  # same SQLite file: still registered; the index is gone
    a, b = await lan.client("a"), await lan.client("b")
    with pytest.raises(NotAContentMember):
        await a.content.news(NAME, ContentNews(), size=SIZE)
    back = await a.content.join(NAME, _join(have=[(0, 4096)], granted=[(0, MiB)]))
    assert back.grant is None  # it still works on its grant
    seen = await b.content.join(NAME, _join(granted=[(MiB, SIZE)]))
    assert _have(seen, a) == [(0, 4096)]
    assert seen.grant is None
    c = await lan.node("c")
    third = await c.content.join(NAME, _join())
    assert third.grant is None  # everything is granted again: nothing for a newcomer


# --- refusals ------------------------------------------------------------------------------------


async def test_a_node_must_be_registered_to_join(lan: Lan) -> None:
    stranger = await lan.client("stranger")
    with pytest.raises(UnknownNode):
        await stranger.content.join(NAME, _join())


async def test_news_from_a_non_member_raises_not_a_content_member(lan: Lan) -> None:
    a = await lan.node("a")
    with pytest.raises(NotAContentMember):
        await a.content.news(NAME, ContentNews(claim=True), size=SIZE)
    await a.content.join(NAME, _join())
    with pytest.raises(NotAContentMember):
        await a.content.news(OTHER, ContentNews(), size=SIZE)
    with pytest.raises(NotAContentMember):
        await a.content.leave(OTHER)


async def _raw(
    lan: Lan, path: str, body: bytes, *, signed: bool = True
) -> tuple[int, dict[str, Any]]:
    await lan.node("raw")
    url = lan.url + path
    headers = {"Content-Type": "application/json"}
    if signed:
        headers |= signed_headers(SECRET, identity_for("raw"), "POST", url, body, now=lan.clock())
    async with (await lan.session("127.0.0.2")).post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/content/not-a-name/join", b'{"size": 10}', 400, "bad_request"),
        (f"/v1/content/{NAME.upper()}/join", b'{"size": 10}', 400, "bad_request"),
        (content_path(NAME, "join"), b'{"size": -1}', 400, "bad_request"),
        (content_path(NAME, "join"), b'{"size": 10, "url": "x"}', 400, "bad_request"),
        (content_path(NAME, "join"), b'{"size": 10, "have": [[5, 2]]}', 400, "bad_request"),
        (content_path(NAME, "join"), b'{"size": 10, "have": [[0, 11]]}', 400, "bad_request"),
        (content_path(NAME, "join"), b"not json", 400, "bad_request"),
        (content_path(NAME, "join"), b'{"size": "10"}', 400, "bad_request"),
        (content_path(NAME, "news"), b'{"claim": 1}', 400, "bad_request"),
        (content_path(NAME, "news"), b"{}", 404, "not_a_content_member"),
        (content_path(NAME, "leave"), b"{}", 404, "not_a_content_member"),
        (content_path(NAME, "join"), b" " * (MAX_CONTENT_BODY + 1), 413, "too_large"),
    ],
)
async def test_malformed_requests_get_the_hubs_json_errors(
    lan: Lan, path: str, body: bytes, status: int, code: str
) -> None:
    answer = await _raw(lan, path, body)
    assert (answer[0], answer[1]["code"]) == (status, code)
    assert answer[1]["error"]


async def test_a_report_about_oneself_or_beyond_the_size_is_refused(lan: Lan) -> None:
    a = await lan.node("a")
    await a.content.join(NAME, _join())
    me = ContentReport(node_id=a.id, start=0, end=1, verification=Verification.CHECKSUM)
    with pytest.raises(HubRejected):
        await a.content.report(NAME, me, size=SIZE)
    beyond = ContentNews(have=[(0, SIZE + 1)])
    with pytest.raises(HubRejected):
        await a.content.news(NAME, beyond, size=SIZE)
    with pytest.raises(HubRejected):  # the name is another size's
        await a.content.join(NAME, JoinContent(size=SIZE + 1))


async def test_unsigned_requests_get_401(lan: Lan) -> None:
    status, body = await _raw(lan, content_path(NAME, "join"), b'{"size": 10}', signed=False)
    assert status == 401
    assert body["code"] == "auth"


async def test_a_node_in_too_many_contents_is_refused_with_content_limit(lan: Lan) -> None:
    a = await lan.node("a")
    names = [
        ContentKey(url=f"https://h/{i}", size=SIZE, etag='"e"').index_name()
        for i in range(MAX_CONTENTS_PER_NODE + 1)
    ]
    for name in names[:-1]:
        await a.content.join(name, _join())
    with pytest.raises(HubUnavailable) as full:
        await a.content.join(names[-1], _join())
    assert full.value.status == 429
    await a.content.leave(names[0])
    await a.content.join(names[-1], _join())  # room again


async def test_a_node_that_leaves_the_hub_leaves_its_contents(lan: Lan) -> None:
    a, b = await lan.node("a"), await lan.node("b")
    await a.content.join(NAME, _join())
    await a.content.join(OTHER, _join())
    await b.content.join(NAME, _join())
    await a.hub.leave()
    after = await b.content.news(NAME, ContentNews(claim=True), size=SIZE)
    assert after.members == []
    assert after.grant == (0, MiB)
    assert await lan.metric("swarmget_hub_contents") == 1
