"""Garbage collection tuned for a long-running server process (issue #17).

CPython's cyclic garbage collector stops the whole process while it runs: every request in
flight waits. With its defaults (a young collection every 700 net allocations, a full one
after ten middle ones and a quarter of the old objects new), a hub answering 5,000 nodes
(~1,100 requests/s) ran a full collection every ~8 s, each 0.2-0.37 s over the objects of
5,000 keep-alive connections and their state. Those pauses *were* the heartbeats' p99
(211 ms; bench/README "The hub under load").

``tune_for_serving`` (called by a server's entry point once it listens, its start-up done):

* moves every object alive then (modules, classes, functions, the configuration, the
  database engine and the app: ~100,000 for the hub) into the collector's permanent
  generation (``gc.freeze``): no collection walks them again;
* collects young objects every ``YOUNG`` net allocations instead of 700 (most of a
  request's objects are freed by reference counting before that, so fewer survive into the
  older generations), the middle generation every ``MIDDLE`` young collections, and allows
  a full collection only after ``FULL`` middle ones (hours at that request rate, instead of
  seconds).

Reference counting still frees everything that is not in a cycle at once; only cyclic
garbage waits longer (a few MB).

**The young generation also needs a clock** (``collect_young_forever``, a task the hub runs
once it listens). The collector counts allocations *minus deallocations* of any generation,
so a server that replaces long-lived objects (a node's liveness entry at each heartbeat, a
group's records at each refresh) frees about as much as it allocates: the count stays
near zero while the young generation itself grows, to ~240,000 objects after a minute at
5,000 nodes (a survey of ``gc.get_objects(0)``), and the collection that finally comes walks
all of them: 100-220 ms, the hub's remaining loop stalls (seen with
``SWARMGET_LOOP_STALL_LOG``: stacks ending in a weakref callback inside an allocation).
So the young generation is collected every ``YOUNG_EVERY`` seconds whatever the count
says, the middle one every ``MIDDLE_RATIO`` of those and the whole heap every
``FULL_RATIO`` middle ones: each walks a bounded part of the heap (bench/README "Garbage
collection by the clock"). Measured with ``bench/hub_load.py --nodes 5000`` (SQLite,
2 cores shared with the load generator; bench/README "Garbage collection"): heartbeat p99
211-282 ms -> 8-137 ms over seven runs (median 46), peers p99 300-535 -> 20-304 ms (median
65), CPU per answer ~612 -> 460-650 us. What is left: young collections of ~10,000 objects
that take 20-60 ms here (a few up to 0.17 s).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

__all__ = [
    "FULL", "FULL_RATIO", "MIDDLE", "MIDDLE_RATIO", "YOUNG", "YOUNG_EVERY",
    "collect_young_forever", "tune_for_serving",
]  # fmt: skip

YOUNG = 10_000
MIDDLE = 20
FULL = 100
#: seconds between the young collections ``collect_young_forever`` runs
YOUNG_EVERY = 0.25
#: a middle collection instead of every this many young ones (every 0.5 s)
MIDDLE_RATIO = 2
#: a full collection instead of every this many middle ones (every ~4 minutes)
FULL_RATIO = 480


def tune_for_serving() -> None:
    """Freeze what exists now out of the collector's sight and collect less often (see the
    module docstring). For a server process's entry point, once it listens; process-wide."""
    gc.collect()  # what start-up left as cyclic garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, FULL)


async def collect_young_forever(
    every: float = YOUNG_EVERY,
    *,
    middle_ratio: int = MIDDLE_RATIO,
    full_ratio: int = FULL_RATIO,
    collect: Callable[[int], object] = gc.collect,
) -> None:
    """Collect the young generation every ``every`` seconds, the middle one instead every
    ``middle_ratio``-th time and the whole heap every ``middle_ratio * full_ratio``-th, until
    cancelled (see the module docstring: the counts alone let the young generation grow)."""
    ticks = 0
    while True:
        await asyncio.sleep(every)
        ticks += 1
        if ticks % (middle_ratio * full_ratio) == 0:
            collect(2)
        elif ticks % middle_ratio == 0:
            collect(1)
        else:
            collect(0)
