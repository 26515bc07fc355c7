"""The collector a server runs by the clock (``net.serving_gc.collect_young_forever``):
young collections every tick, a middle one every ``middle_ratio``-th, the whole heap every
``middle_ratio * full_ratio``-th; and what it is for: a young generation that the
collector's counts alone let grow while a server replaces long-lived objects."""

from __future__ import annotations

import asyncio
import contextlib
import gc

from swarmget.net.serving_gc import collect_young_forever


async def test_the_generations_collected_by_the_clock() -> None:
    asked: list[int] = []
    task = asyncio.create_task(
        collect_young_forever(0.001, middle_ratio=3, full_ratio=2, collect=asked.append)
    )
    try:
        async with asyncio.timeout(10):
            while len(asked) < 12:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert asked[:12] == [0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0, 2]


def test_replacing_old_objects_lets_the_young_generation_grow_unseen() -> None:
    """Why the clock: each new object replaces an old one, so the collector's count (new
    minus freed) stays put while the young generation fills up."""
    gc.collect()
    old = [[i] for i in range(20_000)]  # long-lived state ...
    gc.collect()  # ... now in the oldest generation
    before = len(gc.get_objects(generation=0))
    try:
        gc.disable()  # (only to count; an automatic collection would not come anyway)
        for i in range(20_000):
            old[i] = [i]  # ... replaced, one for one, as a heartbeat replaces a node's entry
        young = len(gc.get_objects(generation=0))
        count = gc.get_count()[0]
    finally:
        gc.enable()
    assert young - before >= 19_000  # every replacement is a young object ...
    assert count < 1_000  # ... that the count never saw: no automatic collection was due
    gc.collect(0)
    assert len(gc.get_objects(generation=0)) < 1_000
