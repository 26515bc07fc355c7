"""Fetch once per LAN (#15) with the real hub: two requesters of one content at once talk
to a real hub's content index (``open_hub`` on 127.0.0.1, SQLite registry) through the
node-side ``ContentHubClient`` (the engine's ``ContentIndex`` port as is), registered from
127.0.0.2 and 127.0.0.3; the LAN holders are the in-process fake."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from swarmget.engine import Download, DownloadSpec, OriginSource
from swarmget.engine.sharing import GroupConfig, GroupOptions
from swarmget.hub.service import open_hub
from swarmget.net.content_hub import ContentHubClient
from swarmget.net.hub_client import HubClient, Registration
from swarmget.net.origin import OriginClient
from swarmget.testing.content_index import FakeLan
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import open_test_origin

SECRET = b"group-fetch-hub-test-secret-0123456789"
MiB = 1024 * 1024
SIZE = 16 * MiB
BOUND = 60.0
REG = Registration(port=7500, version="0.1.0", slots=2)


async def test_two_requesters_share_through_the_real_hub_index(tmp_path: Path) -> None:
    lan = FakeLan()
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(
            open_hub(
                host="127.0.0.1",
                port=0,
                db_url=f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
                secret=SECRET,
                group_prefix=24,
            )
        )
        origin = await stack.enter_async_context(open_test_origin(rate_per_conn=2 * MiB))
        origin.add_generated("f.bin", SIZE, digest=True)
        plain = await stack.enter_async_context(aiohttp.ClientSession())
        client = OriginClient(plain)
        downloads = []
        for name, ip in (("hub-a", "127.0.0.2"), ("hub-b", "127.0.0.3")):
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0)))
            )
            node = HubClient(session, hub.url, SECRET, identity_for(name))
            await node.register(REG)
            group = GroupOptions(
                index=ContentHubClient(node),
                holders=lan.streams(),
                node_id=node.node_id,
                holdings=lan.holdings(node.node_id),
                keep_as_holder=True,
                config=GroupConfig(news_every=0.1),
            )
            spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / name, verify_sample=0)
            downloads.append(Download(spec, client, sources=[OriginSource(client, 2)], group=group))
        async with asyncio.timeout(BOUND):
            results = await asyncio.gather(*(d.run() for d in downloads))
        total = origin.stats().bytes_total
        content = origin.content("f.bin")
    for r in results:
        assert r.path.read_bytes() == content
        assert r.sharing is not None
        assert r.sharing.joined
        assert r.sharing.lan_bytes > 0
    assert total <= 1.05 * SIZE
