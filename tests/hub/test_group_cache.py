"""``GroupCache``: a group's read is reused for ``max_age``; an older one (within the grace)
is answered from at once while the refresher reads the group again, so that no asker waits
behind the registry; without a refresher, or past the grace, the asker reads itself. On the
in-memory registry, with a store whose reads the test holds, and a clock the test sets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from swarmget.hub.group_cache import GroupCache
from swarmget.hub.store import NodeRecord
from swarmget.testing.fakes import MemoryRegistryStore, nid

TTL = 15.0
GROUP = "10.0.0.0/24"


class HeldStore(MemoryRegistryStore):
    """The in-memory registry whose group reads wait until the test lets them go (``held``
    cleared), counted, and fail when ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.held = False
        self.released = asyncio.Event()
        self.failing = False

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        self.reads += 1
        if self.held:
            await self.released.wait()
        if self.failing:
            raise OSError("database is gone")
        return await super().live_in_group(group, now, ttl)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str) -> NodeRecord:
    return NodeRecord(
        node_id=nid(name), address="10.0.0.1", port=7500, url="http://10.0.0.1:7500",
        version="0.1.0", slots=4, group=GROUP,
    )  # fmt: skip


async def _add(store: HeldStore, name: str, now: float) -> None:
    await store.upsert_node(_record(name), now)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(clock: Clock) -> HeldStore:
    s = HeldStore()
    await _add(s, "a", clock.now)
    return s


@pytest.fixture
async def refreshing(store: HeldStore, clock: Clock) -> AsyncIterator[GroupCache]:
    cache = GroupCache(store, clock=clock, max_age=1.0, stale_grace=2.0)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(cache.refresh_forever())
        await asyncio.sleep(0)  # (it runs)
        yield cache
        task.cancel()


def _ids(records: list[NodeRecord]) -> list[str]:
    return [r.node_id for r in records]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_old_read_is_answered_at_once_while_the_group_is_read_again(
    refreshing: GroupCache, store: HeldStore, clock: Clock
) -> None:
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, TTL)) == [nid("a")]
    await _add(store, "b", clock.now)
    clock.now += 1.5  # old, within the grace
    store.held = True  # the registry is busy (a flush's transaction)
    answer = await asyncio.wait_for(refreshing.live_in_group(GROUP, clock.now, TTL), 1.0)
    assert _ids(answer) == [nid("a")]  # at once, from the old read
    assert await refreshing.live_in_group(GROUP, clock.now, TTL) == answer  # (one refresh)
    await _settle()
    assert store.reads == 2  # the first read and one refresh, under way
    store.released.set()
    await _settle()
    assert refreshing.refreshes == 1
    fresh = await refreshing.live_in_group(GROUP, clock.now, TTL)
    assert _ids(fresh) == [nid("a"), nid("b")]
    assert store.reads == 2  # (answered from the refreshed read)
    assert refreshing.stale_answers == 2


async def test_past_the_grace_the_asker_reads_itself(
    refreshing: GroupCache, store: HeldStore, clock: Clock
) -> None:
    await refreshing.live_in_group(GROUP, clock.now, TTL)
    await _add(store, "b", clock.now + 3.5)
    clock.now += 3.5  # max_age + grace ago: too old to answer from
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, TTL)) == [nid("a"), nid("b")]
    assert (store.reads, refreshing.stale_answers) == (2, 0)


async def test_without_a_refresher_an_old_read_is_read_while_the_asker_waits(
    store: HeldStore, clock: Clock
) -> None:
    cache = GroupCache(store, clock=clock, max_age=1.0, stale_grace=2.0)
    await cache.live_in_group(GROUP, clock.now, TTL)
    await _add(store, "b", clock.now)
    clock.now += 1.5
    assert _ids(await cache.live_in_group(GROUP, clock.now, TTL)) == [nid("a"), nid("b")]
    assert (store.reads, cache.stale_answers) == (2, 0)


async def test_a_read_forgotten_while_it_was_refreshed_is_not_kept(
    refreshing: GroupCache, store: HeldStore, clock: Clock
) -> None:
    """A registration here drops the group's read: a refresh that started before it must
    not bring back what it read before the node registered."""
    await refreshing.live_in_group(GROUP, clock.now, TTL)
    clock.now += 1.5
    store.held = True
    await refreshing.live_in_group(GROUP, clock.now, TTL)  # (old: a refresh starts)
    await _settle()
    refreshing.forget(GROUP)
    await _add(store, "b", clock.now)
    store.released.set()
    await _settle()
    assert refreshing.refreshes == 0
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, TTL)) == [nid("a"), nid("b")]


async def test_a_failed_refresh_leaves_the_next_asker_to_meet_the_error(
    refreshing: GroupCache, store: HeldStore, clock: Clock
) -> None:
    await refreshing.live_in_group(GROUP, clock.now, TTL)
    clock.now += 1.5
    store.failing = True
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, TTL)) == [nid("a")]
    await _settle()  # the refresh failed: the read is dropped, the refresher goes on
    with pytest.raises(OSError, match="database is gone"):
        await refreshing.live_in_group(GROUP, clock.now, TTL)
    store.failing = False
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, TTL)) == [nid("a")]
    clock.now += 1.5  # and it refreshes again
    await refreshing.live_in_group(GROUP, clock.now, TTL)
    await _settle()
    assert refreshing.refreshes == 1


async def test_nodes_past_their_ttl_are_not_listed_from_an_old_read(
    refreshing: GroupCache, store: HeldStore, clock: Clock
) -> None:
    await _add(store, "b", clock.now - TTL + 1.0)  # expires within a second
    assert len(await refreshing.live_in_group(GROUP, clock.now, TTL)) == 2
    clock.now += 1.5
    store.held = True
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, TTL)) == [nid("a")]
    store.released.set()


async def test_with_a_short_ttl_no_read_older_than_a_fifth_of_it_is_answered_from(
    refreshing: GroupCache, store: HeldStore, clock: Clock
) -> None:
    """TTL 3 s (the local demo swarm's): a node's last_seen in a read is up to ~1.5 s old
    already (flush and heartbeat intervals), so answering from a 1-3 s old read would list
    none of a group whose nodes heartbeat on time. The asker reads again instead."""
    ttl = 3.0
    await _add(store, "b", clock.now - 1.5)  # (heartbeated 1.5 s ago: live)
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, ttl)) == [nid("a"), nid("b")]
    clock.now += 1.7  # both heartbeated meanwhile (the read does not know it)
    await _add(store, "a", clock.now - 0.5)
    await _add(store, "b", clock.now - 0.5)
    reads = store.reads
    assert _ids(await refreshing.live_in_group(GROUP, clock.now, ttl)) == [nid("a"), nid("b")]
    assert store.reads == reads + 1  # read again, not answered from the old read
    # at the default TTL the same age is answered from the old read (the refresher reads)
    assert len(await refreshing.live_in_group(GROUP, clock.now, TTL)) == 2
    clock.now += 1.5
    answered = await asyncio.wait_for(refreshing.live_in_group(GROUP, clock.now, TTL), 1.0)
    assert _ids(answered) == [nid("a"), nid("b")]
    assert refreshing.stale_answers >= 1
