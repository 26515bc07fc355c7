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
garbage waits longer (a few MB). Measured with ``bench/hub_load.py --nodes 5000`` (SQLite,
2 cores shared with the load generator; bench/README "Garbage collection"): heartbeat p99
211-282 ms -> 8-137 ms over seven runs (median 46), peers p99 300-535 -> 20-304 ms (median
65), CPU per answer ~612 -> 460-650 us. What is left: young collections of ~10,000 objects
that take 20-60 ms here (a few up to 0.17 s).
"""

from __future__ import annotations

import gc

__all__ = ["FULL", "MIDDLE", "YOUNG", "tune_for_serving"]

YOUNG = 10_000
MIDDLE = 20
FULL = 100


def tune_for_serving() -> None:
    """Freeze what exists now out of the collector's sight and collect less often (see the
    module docstring). For a server process's entry point, once it listens; process-wide."""
    gc.collect()  # what start-up left as cyclic garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, FULL)
