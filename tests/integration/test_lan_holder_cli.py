"""``swarmget node`` processes as LAN holders (#15): a file kept in the share cache before the
node started is served after it starts (the index read back), and ``--cache-budget 0``
serves nothing and deletes nothing of the user's."""

from __future__ import annotations

import os
import random
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.content import ContentKey
from swarmget.core.errors import ContentNotShareable
from swarmget.core.ranges import ByteRange
from swarmget.core.share_cache import SharePolicy
from swarmget.net.content_peer import HolderSource
from swarmget.net.peer_client import PeerAddress
from swarmget.node.holdings import HoldingsRegistry
from swarmget.node.share_cache import CACHE_DIR, ShareCache
from swarmget.testing.fakes import identity_for
from swarmget.testing.swarm import LocalSwarm, NodeHandle, open_local_swarm

pytestmark = pytest.mark.slow

SIZE = 200 * 1024
DATA = random.Random(16).randbytes(SIZE)
KEY = ContentKey.from_probe(final_url="http://origin.test/iso", size=SIZE, etag='"a1"')


def _seed(state: Path) -> Path:
    """What a node that downloaded ``KEY`` before its restart has on disk."""
    downloads = state / "downloads"
    downloads.mkdir(parents=True)
    os.chmod(state, 0o700)
    path = downloads / "image.iso"
    path.write_bytes(DATA)
    registry = HoldingsRegistry([downloads, state / CACHE_DIR])
    cache = ShareCache(state, registry, SharePolicy(1 << 30))
    cache.load()
    assert cache.keep(KEY, path)
    return path


def _source(session: aiohttp.ClientSession, swarm: LocalSwarm, node: NodeHandle) -> HolderSource:
    holder = PeerAddress(node_id=node.node_id, url=str(node.proc.info["peer_url"]))
    secret = swarm.secret_file.read_bytes().strip()
    return HolderSource(session, holder, KEY, secret, identity_for("lan-asker"))


async def test_node_processes_serve_kept_files_unless_the_budget_is_zero(tmp_path: Path) -> None:
    kept = [_seed(tmp_path / f"node{i}") for i in (0, 1)]
    extra = {0: ["--cache-budget", "1G"], 1: ["--cache-budget", "0"]}
    async with (
        open_local_swarm(tmp_path, 2, node_extra=extra) as swarm,
        aiohttp.ClientSession() as session,
    ):
        rng = ByteRange(1000, 150_000)
        async with _source(session, swarm, swarm.node(0)).open_range(None, rng) as body:
            assert b"".join([chunk async for chunk in body]) == DATA[rng.start : rng.end]
        with pytest.raises(ContentNotShareable):
            async with _source(session, swarm, swarm.node(1)).open_range(None, rng):
                pass
    assert kept[1].read_bytes() == DATA  # the user's download stays
