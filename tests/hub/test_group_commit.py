"""Heartbeats and nonces arriving during a write are written together by the next one
(issue #17), with each caller's own answer: ``GroupCommit`` driven by a write the test
holds open, and the SQL store on a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from swarmget.core.errors import StorageError
from swarmget.hub.group_commit import GroupCommit
from swarmget.hub.store import NodeRecord, SqlRegistryStore, open_registry_store

T0 = 1_700_000_000.0
TTL = 15.0


class HeldWrite:
    """A write that records its batches and waits for the test before the first returns."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail = False

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail:
            raise StorageError("disk on fire")
        return [item * 10 for item in items]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_items_queued_during_a_write_go_together_in_the_next() -> None:
    write = HeldWrite()
    commit: GroupCommit[int, int] = GroupCommit(write)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(commit.run())
        first = tg.create_task(commit.submit(1))
        await _settle()
        assert write.batches == [[1]]  # an idle committer writes a lone item at once
        rest = [tg.create_task(commit.submit(i)) for i in range(2, 7)]
        await _settle()
        write.release.set()
        results = [await first] + [await task for task in rest]
        runner.cancel()
    assert results == [10, 20, 30, 40, 50, 60]
    assert write.batches == [[1], [2, 3, 4, 5, 6]]


async def test_a_failed_write_fails_every_caller_of_its_batch_only() -> None:
    write = HeldWrite()
    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=2)
    write.fail = True
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(commit.run())
        calls = [tg.create_task(_outcome(commit, i)) for i in range(1, 4)]
        await _settle()
        write.release.set()
        await _settle()
        outcomes = [await call for call in calls]
        runner.cancel()
    assert outcomes == ["disk on fire"] * 3
    assert write.batches == [[1, 2], [3]]


async def _outcome(commit: GroupCommit[int, int], item: int) -> int | str:
    try:
        return await commit.submit(item)
    except StorageError as exc:
        return str(exc)


def _node(node_id: str) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        address="10.0.0.1",
        port=7500,
        url="http://10.0.0.1:7500",
        version="0.1.0",
        slots=4,
        group="g",
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlRegistryStore]:
    async with open_registry_store(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}") as opened:
        yield opened


async def test_concurrent_heartbeats_each_get_their_own_answer(store: SqlRegistryStore) -> None:
    for i in range(20):
        await store.upsert_node(_node(f"n{i:02d}"), T0 - 10 if i % 2 else T0 - 100)
    calls = [store.heartbeat(f"n{i:02d}", {"i": i}, T0, ttl=TTL) for i in range(20)]
    calls.append(store.heartbeat("nobody", {}, T0, ttl=TTL))
    answers = await asyncio.gather(*calls)
    assert answers == [bool(i % 2) for i in range(20)] + [False]  # the dead stay dead
    live = await store.live_nodes(T0, TTL)
    assert [(r.node_id, dict(r.stats)) for r in live] == [
        (f"n{i:02d}", {"i": i}) for i in range(1, 20, 2)
    ]


async def test_a_nonce_repeated_at_once_is_accepted_once(store: SqlRegistryStore) -> None:
    calls = [
        store.remember_nonce("n", f"nonce-{i % 5}", expires_at=T0 + 30, now=T0) for i in range(20)
    ]
    accepted = await asyncio.gather(*calls)
    assert sum(accepted) == 5
    assert await store.count_nonces() == 5
    assert not await store.remember_nonce("n", "nonce-0", expires_at=T0 + 30, now=T0)
