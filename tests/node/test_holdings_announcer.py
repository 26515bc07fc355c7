"""The kept files in the hub's content index (#15, docs/fetch-once.md §7): announced as
holdings at every new registration, again when the index forgot them (a hub restart with
its registry intact), and an evicted file leaves the index. The index is the in-process
fake (``swarmget.testing.content_index``), the share cache the real one on disk."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from swarmget.core.content import ContentKey
from swarmget.core.share_cache import SharePolicy
from swarmget.node.announcer import HoldingsAnnouncer
from swarmget.node.holdings import HoldingsRegistry
from swarmget.node.share_cache import CACHE_DIR, ShareCache
from swarmget.testing.content_index import FakeContentHub
from swarmget.testing.fakes import nid

SIZE = 100
ME = nid("announcer")
BOUND = 10.0


def key(i: int) -> ContentKey:
    return ContentKey.from_probe(final_url=f"http://o.test/{i}", size=SIZE, etag=f'"e{i}"')


def _cache(tmp_path: Path, budget: int = 250) -> ShareCache:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    registry = HoldingsRegistry([tmp_path / "dl", state / CACHE_DIR])
    ticks = itertools.count(1_000_000.0)
    cache = ShareCache(state, registry, SharePolicy(budget), clock=lambda: next(ticks))
    cache.load()
    return cache


def _keep(cache: ShareCache, i: int) -> None:
    path = cache.cache_path(key(i))
    path.write_bytes(os.urandom(SIZE))
    assert cache.keep(key(i), path)


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND):
        while not check():
            await asyncio.sleep(0.01)


@asynccontextmanager
async def _running(hub: FakeContentHub, cache: ShareCache) -> AsyncIterator[HoldingsAnnouncer]:
    announcer = HoldingsAnnouncer(hub.client(ME), cache, check_every=0.05)
    cache.on_evict = announcer.evicted
    task = asyncio.create_task(announcer.run())
    try:
        yield announcer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_kept_files_are_announced_at_registration_and_after_a_hub_restart(
    tmp_path: Path,
) -> None:
    hub, cache = FakeContentHub(), _cache(tmp_path)
    _keep(cache, 1)
    _keep(cache, 2)
    names = [key(i).index_name() for i in (1, 2)]
    async with _running(hub, cache) as announcer:
        await asyncio.sleep(0.1)
        assert [c for c in hub.calls if c[1] == "join"] == []  # not registered: nothing
        registration = object()
        announcer.registered(registration)
        await _until(lambda: all(hub.holders(n) == [ME] for n in names))
        announcer.registered(registration)  # a heartbeat: the same registration
        await asyncio.sleep(0.1)
        assert len([c for c in hub.calls if c[1] == "join"]) == 2
        hub.restart()  # the index is memory: the node is not asked to register again
        await _until(lambda: all(hub.holders(n) == [ME] for n in names))
        hub.restart()
        announcer.registered(None)  # the hub forgot us: registering again
        announcer.registered(object())
        await _until(lambda: all(hub.holders(n) == [ME] for n in names))


async def test_an_evicted_file_leaves_the_index(tmp_path: Path) -> None:
    hub, cache = FakeContentHub(), _cache(tmp_path, budget=2 * SIZE)
    _keep(cache, 1)
    _keep(cache, 2)
    async with _running(hub, cache) as announcer:
        announcer.registered(object())
        await _until(lambda: hub.holders(key(1).index_name()) == [ME])
        _keep(cache, 3)  # over the budget: key 1, the least recently used, goes
        assert not cache.keeps(key(1).index_name())
        await _until(lambda: hub.holders(key(1).index_name()) == [])
        assert ME not in hub.members(key(1).index_name())
        assert announcer.withdrawn == 1
        assert hub.holders(key(2).index_name()) == [ME]


async def test_a_hub_that_was_down_gets_the_announcement_later(tmp_path: Path) -> None:
    hub, cache = FakeContentHub(), _cache(tmp_path)
    _keep(cache, 1)
    name = key(1).index_name()
    async with _running(hub, cache) as announcer:
        hub.down = True
        announcer.registered(object())
        await _until(lambda: any(c[1] == "join" for c in hub.calls))
        hub.down = False
        assert hub.holders(name) == []
        announcer.registered(object())
        await _until(lambda: hub.holders(name) == [ME])
