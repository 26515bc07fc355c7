"""Fetch once per LAN (#15), the requester's side: downloads of one content in a group,
with a real origin (HTTP on 127.0.0.1) and the in-process fakes of the hub's content index
and the LAN holders (``swarmget.testing.content_index``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from swarmget.core import events as ev
from swarmget.core.content import ContentKey
from swarmget.core.events import RefetchCause
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.verification import Verification
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.engine.group import HOLDER_PREFIX
from swarmget.engine.sharing import GroupConfig, GroupOptions, SharingNote
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.testing.content_index import FakeContentHub, FakeLan
from swarmget.testing.fakes import nid
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024
SIZE = 16 * MiB
BOUND = 60.0
FAST = GroupConfig(news_every=0.1, silent_after=1.0)
A, B = nid("group-a"), nid("group-b")


def options(hub: FakeContentHub, lan: FakeLan, node: str, *, keep: bool = True) -> GroupOptions:
    return GroupOptions(
        index=hub.client(node),
        holders=lan.streams(),
        node_id=node,
        holdings=lan.holdings(node),
        keep_as_holder=keep,
        config=FAST,
    )


def download(
    origin: TestOrigin,
    client: OriginClient,
    dest: Path,
    group: GroupOptions,
    *,
    verify_sample: float = 0.01,
) -> Download:
    spec = DownloadSpec(url=origin.url("f.bin"), output=dest, verify_sample=verify_sample)
    return Download(spec, client, sources=[OriginSource(client, 2)], group=group)


@dataclass(frozen=True)
class HelperLink:
    """Another node's origin link as a helper of ours (untrusted, like the node's peer
    sources: an ``OriginSource`` would count as our own connection)."""

    inner: OriginSource

    @property
    def source_id(self) -> str:
        return self.inner.source_id

    @property
    def slots(self) -> int:
        return self.inner.slots

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        return self.inner.open_range(info, rng)


def key_of(result: Download) -> ContentKey:
    info = result.pinned
    assert info is not None
    return ContentKey.from_origin_info(info)


async def test_two_requesters_at_once_cross_the_origin_link_about_once(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin(rate_per_conn=2 * MiB) as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)  # Repr-Digest: holders checked whole
        client = OriginClient(s)
        a = download(origin, client, tmp_path / "a.bin", options(hub, lan, A), verify_sample=0)
        b = download(origin, client, tmp_path / "b.bin", options(hub, lan, B), verify_sample=0)
        async with asyncio.timeout(BOUND):
            ra, rb = await asyncio.gather(a.run(), b.run())
        total = origin.stats().bytes_total
        content = origin.content("f.bin")
    assert ra.path.read_bytes() == content
    assert rb.path.read_bytes() == content
    assert total <= 1.05 * SIZE
    for r in (ra, rb):
        assert r.sharing is not None
        assert r.sharing.joined
        assert r.sharing.holders_used
        assert r.sharing.lan_bytes > 0
        assert r.sharing.holder_check is Verification.REPR_DIGEST
    assert ra.sharing is not None
    assert rb.sharing is not None
    assert ra.sharing.origin_bytes + rb.sharing.origin_bytes <= 1.05 * SIZE


async def test_a_later_requester_takes_the_file_from_the_holder(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            first = download(origin, client, tmp_path / "a.bin", options(hub, lan, A))
            await first.run()
            before = origin.stats().bytes_total
            rb = await download(origin, client, tmp_path / "b.bin", options(hub, lan, B)).run()
        second_origin = origin.stats().bytes_total - before
        content = origin.content("f.bin")
    assert lan.held(A, key_of(first)).total() == SIZE  # offered whole, kept as a holder
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.lan_bytes >= SIZE  # (endgame copies count too)
    assert rb.sharing.holder_check is Verification.SAMPLED
    assert second_origin <= 0.05 * SIZE  # the probe and the sample checks only
    assert rb.sharing.origin_bytes <= 0.05 * SIZE


async def test_a_lying_holder_is_banned_reported_and_its_bytes_fetched_again(
    tmp_path: Path,
) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            lan.lie(A)  # from now on A serves every byte flipped
            rb = await download(origin, client, tmp_path / "b.bin", options(hub, lan, B)).run()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.banned_holders == (A,)
    ((reporter, _, report),) = hub.reports
    assert (reporter, report.node_id, report.verification) == (B, A, Verification.SAMPLED)
    assert rb.sharing.lan_bytes > 0  # it did take (bad) bytes from A before it was caught


async def test_the_first_requester_dies_and_the_other_finishes_without_starting_over(
    tmp_path: Path,
) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin(rate_per_conn=1 * MiB) as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        a = download(origin, client, tmp_path / "a.bin", options(hub, lan, A))
        b = download(origin, client, tmp_path / "b.bin", options(hub, lan, B))
        async with asyncio.timeout(BOUND), asyncio.TaskGroup() as tg:
            task_a = tg.create_task(a.run())
            task_b = tg.create_task(b.run())
            for _ in range(int(BOUND / 0.05)):  # until B took a good part from A
                if lan.served.get(A, 0) >= 2 * MiB:
                    break
                await asyncio.sleep(0.05)
            lan.unplug(A)  # A dies: its streams fail, the hub forgets it
            hub.expire(A)
            task_a.cancel()
        rb = task_b.result()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.lan_bytes >= 2 * MiB
    assert rb.sharing.origin_bytes < SIZE  # what it got from A stayed its own
    name = key_of(b).index_name()
    # both downloads pinned their holding while they ran; the cancelled one let go too,
    # and serves nothing of its part file any more
    assert lan.pins_taken == {(A, name): 1, (B, name): 1}
    assert lan.pins == {(A, name): 0, (B, name): 0}
    assert not lan.held(A, key_of(b))
    assert lan.held(B, key_of(b))


async def test_an_unreachable_index_falls_back_to_the_origin(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    hub.down = True
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            rb = await download(origin, client, tmp_path / "b.bin", options(hub, lan, B)).run()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert not rb.sharing.joined
    assert rb.sharing.notes == (SharingNote.INDEX_UNREACHABLE,)
    assert [c[1] for c in hub.calls] == ["join"]


async def test_an_index_gone_silent_lifts_the_restriction_on_the_origin_link(
    tmp_path: Path,
) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin(rate_per_conn=4 * MiB) as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(s)
        b = download(origin, client, tmp_path / "b.bin", options(hub, lan, B))
        async with asyncio.timeout(BOUND), asyncio.TaskGroup() as tg:
            task = tg.create_task(b.run())
            for _ in range(int(BOUND / 0.01)):  # joined: now the hub goes silent
                if hub.calls:
                    break
                await asyncio.sleep(0.01)
            hub.down = True
        rb = task.result()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.joined
    assert SharingNote.INDEX_SILENT in rb.sharing.notes


async def test_without_any_check_holders_are_not_used(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            b = download(origin, client, tmp_path / "b.bin", options(hub, lan, B), verify_sample=0)
            rb = await b.run()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.notes == (SharingNote.NO_CHECK,)
    assert rb.sharing.lan_bytes == 0
    assert rb.sharing.origin_bytes >= SIZE  # every byte over its own link
    assert B not in lan.served


async def test_a_content_that_is_not_shareable_never_joins(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    served = tmp_path / "served.bin"
    served.write_bytes(bytes(range(256)) * (SIZE // 256))  # modified now: a weak date
    async with open_test_origin(weak_etag=True) as origin, aiohttp.ClientSession() as s:
        origin.add_file("f.bin", served)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            rb = await download(origin, client, tmp_path / "b.bin", options(hub, lan, B)).run()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert hub.calls == []
    assert rb.sharing is not None
    assert rb.sharing.notes == (SharingNote.NOT_SHAREABLE,)


async def test_a_listed_holder_that_cannot_be_reached_is_dropped_and_not_reported(
    tmp_path: Path,
) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            lan.unplug(A)  # the index still lists A as holding everything: nobody is granted
            rb = await download(origin, client, tmp_path / "b.bin", options(hub, lan, B)).run()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.lan_bytes == 0
    assert rb.sharing.banned_holders == ()  # it failed, it did not lie: no report
    assert hub.reports == []


async def test_a_node_downloading_again_what_it_holds_is_not_starved(tmp_path: Path) -> None:
    # the index lists A as the holder of all of it: nothing is left to grant A's new
    # download, and no other member has anything; without an own copy to read (its
    # registry offers none), A's own link takes it after silent_after
    hub, lan = FakeContentHub(), FakeLan()
    lan.own_copies = False
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            first = await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            again = await download(origin, client, tmp_path / "b.bin", options(hub, lan, A)).run()
        content = origin.content("f.bin")
    assert first.sharing is not None
    assert SharingNote.STARVED not in first.sharing.notes
    assert again.path.read_bytes() == content
    assert again.sharing is not None
    assert again.sharing.joined
    assert SharingNote.STARVED in again.sharing.notes


async def test_a_lone_member_claims_again_as_soon_as_its_links_run_short(tmp_path: Path) -> None:
    """Grants follow what our links fetch, not the clock of the news: with the regular
    rounds due only after the time limit, a lone member still claims grant after grant
    (early rounds when its links run short) and finishes, crossing the origin once."""
    hub, lan = FakeContentHub(), FakeLan()
    late = GroupConfig(news_every=4 * BOUND, silent_after=4 * BOUND, short_check=0.05)
    group = GroupOptions(
        index=hub.client(A), holders=lan.streams(), node_id=A, holdings=lan.holdings(A),
        config=late,
    )  # fmt: skip
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            r = await download(origin, client, tmp_path / "a.bin", group, verify_sample=0).run()
        total = origin.stats().bytes_total
        content = origin.content("f.bin")
    assert r.path.read_bytes() == content
    assert r.sharing is not None
    assert r.sharing.joined
    assert SharingNote.INDEX_SILENT not in r.sharing.notes  # not lifted: the grants came
    assert total < 1.5 * SIZE  # one copy (and endgame duplicates), not two


async def test_a_helper_fetching_the_same_content_is_not_used_as_our_link(tmp_path: Path) -> None:
    """B fetches the content itself (a member): A, which could use B as a helper, leaves
    B's origin link to B's own grants and takes B's bytes over the LAN instead."""
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin(rate_per_conn=2 * MiB) as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        b = download(origin, client, tmp_path / "b.bin", options(hub, lan, B), verify_sample=0)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "a.bin", verify_sample=0)
        helper_b = OriginSource(client, 2, source_id=B)  # B's origin link, as A's helper
        a = Download(spec, client, sources=[OriginSource(client, 2), helper_b],
                     group=options(hub, lan, A))  # fmt: skip
        async with asyncio.timeout(BOUND):
            task_b = asyncio.create_task(b.run())
            while not any(c[:2] == (B, "join") for c in hub.calls):  # B is a member
                await asyncio.sleep(0.01)
            ra, rb = await asyncio.gather(a.run(), task_b)
        content = origin.content("f.bin")
    assert ra.path.read_bytes() == content
    assert rb.path.read_bytes() == content
    assert {s.source_id: s.received for s in ra.sources}.get(B, 0) == 0
    assert ra.sharing is not None
    assert ra.sharing.lan_bytes > 0


async def test_a_node_downloading_again_what_it_holds_copies_its_own_file(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE)  # no digest: sampling would be the check
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            before, calls = origin.stats(), len(hub.calls)
            again = await download(origin, client, tmp_path / "b.bin", options(hub, lan, A)).run()
        after = origin.stats()
        content = origin.content("f.bin")
    assert again.path.read_bytes() == content
    # the origin was asked only whether the file is still the same (the probe's HEAD)
    assert after.bytes_total == before.bytes_total
    assert len(after.served) == len(before.served)  # no GET at all
    assert after.requests_by_method.get("HEAD", 0) > before.requests_by_method.get("HEAD", 0)
    assert again.sharing is not None
    assert again.sharing.own_bytes == SIZE
    assert again.sharing.origin_bytes == 0
    assert again.sharing.lan_bytes == 0
    assert not again.sharing.joined  # nothing to ask the group for
    assert again.sharing.notes == ()
    assert again.verification.sampled_bytes == 0  # our own disk is not sampled
    assert lan.own_reads[A] >= SIZE
    assert len(hub.calls) == calls
    key = again.content
    assert key is not None
    assert lan.pins == {(A, key.index_name()): 0}  # pinned while it copied, released
    assert lan.held(A, key).total() == SIZE  # and still held (the new file now)


async def test_an_own_copy_of_a_file_changed_on_the_origin_is_not_used(tmp_path: Path) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, seed=1)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            first = await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            origin.add_generated("f.bin", SIZE, seed=2)  # a new version: a new ETag
            before = origin.stats().bytes_total
            again = await download(origin, client, tmp_path / "b.bin", options(hub, lan, A)).run()
        fetched = origin.stats().bytes_total - before
        content = origin.content("f.bin")
    assert first.path.read_bytes() != content
    assert again.path.read_bytes() == content
    assert again.sharing is not None
    assert again.sharing.own_bytes == 0
    assert fetched >= SIZE
    assert A not in lan.own_reads


async def test_an_own_copy_gone_before_it_is_read_leaves_the_rest_to_the_origin(
    tmp_path: Path,
) -> None:
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            first = await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            first.path.unlink()  # the user deleted it: the registry still lists it
            again = await download(origin, client, tmp_path / "b.bin", options(hub, lan, A)).run()
        content = origin.content("f.bin")
    assert again.path.read_bytes() == content
    assert again.sharing is not None
    assert again.sharing.own_bytes == 0
    assert again.sharing.origin_bytes >= SIZE
    assert SharingNote.OWN_COPY_LOST in again.sharing.notes


async def test_a_later_requester_with_a_known_digest_samples_no_holder_stream(
    tmp_path: Path,
) -> None:
    """The origin's Repr-Digest proves the holder's bytes: no sample checks, the origin
    answers the probe only (the 1 % budget of issue #15)."""
    hub, lan = FakeContentHub(), FakeLan()
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            before = origin.stats().bytes_total
            rb = await download(origin, client, tmp_path / "b.bin", options(hub, lan, B)).run()
        second_origin = origin.stats().bytes_total - before
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.lan_bytes >= SIZE
    assert rb.sharing.holder_check is Verification.REPR_DIGEST
    assert rb.verification.sampled_streams == 0
    assert rb.verification.helper_streams > 0  # held, then dropped: the digest proved them
    assert second_origin <= 0.01 * SIZE  # the probe only
    assert rb.sharing.origin_bytes <= 0.01 * SIZE


async def test_a_lying_holder_with_a_known_digest_is_found_by_the_held_samples(
    tmp_path: Path,
) -> None:
    """The digest fails: the held checks run, catch the liar (banned, reported), its bytes
    are fetched again and the file ends right."""
    hub, lan = FakeContentHub(), FakeLan()
    seen: list[ev.Event] = []
    async with open_test_origin() as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        async with asyncio.timeout(BOUND):
            await download(origin, client, tmp_path / "a.bin", options(hub, lan, A)).run()
            lan.lie(A)  # from now on A serves every byte flipped
            spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "b.bin")
            b = Download(
                spec,
                client,
                sources=[OriginSource(client, 2)],
                group=options(hub, lan, B),
                on_event=seen.append,
            )
            rb = await b.run()
        content = origin.content("f.bin")
    assert rb.path.read_bytes() == content
    assert rb.sharing is not None
    assert rb.sharing.banned_holders == (A,)
    ((reporter, _, report),) = hub.reports
    assert (reporter, report.node_id, report.verification) == (B, A, Verification.SAMPLED)
    assert rb.verification.sampled_streams > 0  # the held checks ran once the digest failed
    bad = [e for e in seen if isinstance(e, ev.BadData)]
    assert bad
    assert all(e.source_ids == (HOLDER_PREFIX + A,) for e in bad)
    again = [e for e in seen if isinstance(e, ev.Refetched) and e.cause is RefetchCause.BAD_DATA]
    assert sum(e.length for e in again) >= SIZE // 2  # A's bytes, fetched again


async def test_a_member_that_joined_after_us_never_fetches_for_us_as_a_helper(
    tmp_path: Path,
) -> None:
    """B joins after A (A's join could not list it) but before A's first round of news: as
    A's helper it gets no grant before that round, which drops it (a member fetches for
    the group through its own grants), so no origin stream of B's is started for A only to
    be cut. A still finishes, taking B's bytes over the LAN."""
    hub, lan = FakeContentHub(), FakeLan()
    slow = GroupConfig(news_every=1.0, short_check=1.0, silent_after=BOUND)
    group_a = GroupOptions(
        index=hub.client(A), holders=lan.streams(), node_id=A, holdings=lan.holdings(A),
        config=slow,
    )  # fmt: skip
    async with open_test_origin(rate_per_conn=2 * MiB) as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", SIZE, digest=True)
        client = OriginClient(s)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "a.bin", verify_sample=0)
        helper_b = HelperLink(OriginSource(client, 2, source_id=B))  # B's link, A's helper
        a = Download(spec, client, sources=[OriginSource(client, 2), helper_b], group=group_a)
        b = download(origin, client, tmp_path / "b.bin", options(hub, lan, B), verify_sample=0)
        async with asyncio.timeout(BOUND):
            task_a = asyncio.create_task(a.run())
            while not any(c[:2] == (A, "join") for c in hub.calls):  # A is a member first
                await asyncio.sleep(0.01)
            ra, rb = await asyncio.gather(task_a, b.run())
        content = origin.content("f.bin")
    assert ra.path.read_bytes() == content
    assert rb.path.read_bytes() == content
    assert {x.source_id: x.received for x in ra.sources}.get(B, 0) == 0
    assert ra.sharing is not None
    assert ra.sharing.lan_bytes > 0


async def test_a_member_with_helpers_claims_a_grant_for_each_link_at_its_first_round(
    tmp_path: Path,
) -> None:
    """A lone member with three helpers (not members): at its first round of news, which
    opens the helpers to its grants, it claims while fewer than a whole grant per link
    fetching (``full_grant``) are unleased, not only ``lookahead`` (2 MiB): before its
    links' rate is known its helpers would otherwise find one grant and split each other's
    pieces, each split cutting an origin stream (docs/fetch-once.md §9.1, round 3)."""
    hub, lan = FakeContentHub(), FakeLan()
    apart = GroupConfig(news_every=3.0, short_check=3.0, silent_after=BOUND)  # rounds 3 s apart
    group_a = GroupOptions(
        index=hub.client(A), holders=lan.streams(), node_id=A, holdings=lan.holdings(A),
        config=apart,
    )  # fmt: skip
    async with open_test_origin(rate_per_conn=1 * MiB) as origin, aiohttp.ClientSession() as s:
        origin.add_generated("f.bin", 2 * SIZE, digest=True)
        client = OriginClient(s)
        spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "a.bin", verify_sample=0)
        helpers = [HelperLink(OriginSource(client, 2, source_id=nid(f"h{i}"))) for i in range(3)]
        a = Download(spec, client, sources=[OriginSource(client, 2), *helpers], group=group_a)
        async with asyncio.timeout(BOUND):
            task = asyncio.create_task(a.run())
            while not any(c[:2] == (A, "news") for c in hub.calls):  # the first round
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # its claims are answered at once; the next round: 3 s
            name = next(c[2] for c in hub.calls if c[:2] == (A, "join"))
            first_round = hub.granted(name, A).total()
            ra = await task
        content = origin.content("f.bin")
    assert ra.path.read_bytes() == content
    full = GroupConfig().full_grant
    assert first_round >= 4 * full  # the join's grant and one per link at least
    assert ra.sharing is not None
    assert ra.sharing.joined
