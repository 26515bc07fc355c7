"""Fetch once per LAN (#15) through the real holder route: a download's file offered to a
real node's holdings registry (``RegistryHoldings``) is streamed to a later requester over
signed ``POST /v1/content-range`` on 127.0.0.x (``LanHolders``); the hub's content index is
the in-process fake (``swarmget.testing.content_index``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from swarmget.core.byte_sources import BytesBySource, SourceKind
from swarmget.core.verification import Verification
from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.engine.sharing import GroupConfig, GroupOptions
from swarmget.net.origin import OriginClient
from swarmget.node.content_adapters import LanHolders, RegistryHoldings
from swarmget.node.daemon import NodeConfig, open_node
from swarmget.testing.content_index import FakeContentHub
from swarmget.testing.fakes import identity_for, nid
from swarmget.testing.origin import open_test_origin

SECRET = b"s" * 32
MiB = 1024 * 1024
SIZE = 8 * MiB
BOUND = 60.0
FAST = GroupConfig(news_every=0.1)


async def test_a_later_requester_streams_the_file_from_a_real_holder_node(
    tmp_path: Path,
) -> None:
    hub = FakeContentHub()
    me = identity_for("lan-joiner")
    config = NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "state",
        download_dir=tmp_path / "dl",
        listen_host="127.0.0.2",
    )
    async with (
        open_test_origin() as origin,
        aiohttp.ClientSession() as session,
        open_node(config) as node,
    ):
        assert node.holdings is not None
        assert node.holder is not None
        origin.add_generated("f.bin", SIZE)
        client = OriginClient(session)
        lan = LanHolders(session, SECRET, me)
        holder = GroupOptions(
            index=hub.client(node.node_id, node.peer_url),
            holders=lan,
            node_id=node.node_id,
            holdings=RegistryHoldings(node.holdings),
            keep_as_holder=True,
            config=FAST,
        )
        joiner = GroupOptions(
            index=hub.client(nid("lan-joiner")),
            holders=lan,
            node_id=nid("lan-joiner"),
            config=FAST,
        )

        told: list[tuple[SourceKind, int]] = []

        def download(dest: Path, group: GroupOptions) -> Download:
            spec = DownloadSpec(url=origin.url("f.bin"), output=dest)
            own = [OriginSource(client, 2)]
            return Download(spec, client, sources=own, group=group, on_bytes=_tell(told))

        async with asyncio.timeout(BOUND):
            await download(node.download_dir / "f.bin", holder).run()
            before = origin.stats().bytes_total
            told.clear()
            second = download(tmp_path / "b.bin", joiner)
            result = await second.run()
        from_origin = origin.stats().bytes_total - before
        content = origin.content("f.bin")
        served = node.holder.stats.lan_bytes_served
    assert result.path.read_bytes() == content
    assert result.sharing is not None
    assert result.sharing.lan_bytes >= SIZE
    assert result.sharing.holder_check is Verification.SAMPLED
    assert served >= SIZE
    assert from_origin <= 0.1 * SIZE  # the probe and the sample checks
    # what came over each kind of link, as the progress and the node's counters show it
    by_source = second.statistics().by_source
    assert by_source.lan == result.sharing.lan_bytes
    assert by_source.over_origin_links == result.sharing.origin_bytes == from_origin
    assert by_source.check == result.verification.sampled_bytes > 0
    assert BytesBySource.of(_summed(told)) == by_source


def _tell(told: list[tuple[SourceKind, int]]) -> Callable[[SourceKind, int], None]:
    return lambda kind, n: told.append((kind, n))


def _summed(told: list[tuple[SourceKind, int]]) -> dict[SourceKind, int]:
    out = dict.fromkeys(SourceKind, 0)
    for kind, n in told:
        out[kind] += n
    return out
