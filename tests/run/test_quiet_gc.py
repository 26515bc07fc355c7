"""``run.quiet_gc``: no cyclic collection while a command imports, the collector as it was
after (also after an error, and in nested blocks), and what the block made frozen only in
the ``swarmget`` program. Each case runs in its own interpreter: the collector and its
frozen generation are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CASE = """
import gc, json, sys
from swarmget.run import quiet_gc

program = sys.argv[1] == "program"
if program:
    quiet_gc.freeze_after_start()
seen = {}
def collections():
    return sum(s["collections"] for s in gc.get_stats())

before = collections()
try:
    with quiet_gc.held():
        seen["off_inside"] = not gc.isenabled()
        with quiet_gc.held():
            pass
        seen["off_after_nested"] = not gc.isenabled()
        made = [[i] for i in range(50_000)]  # (tracked objects: young collections would run)
        seen["collections_inside"] = collections() - before
        raise KeyError("an import failed")
except KeyError:
    pass
seen["on_after"] = gc.isenabled()
seen["frozen"] = gc.get_freeze_count()
gc.disable()
with quiet_gc.held():
    pass
seen["off_stays_off"] = not gc.isenabled()
print(json.dumps(seen))
"""


@pytest.mark.parametrize("mode", ["program", "caller"])
def test_no_collection_in_the_block_and_the_collector_as_it_was_after(mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CASE, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["off_inside"]
    assert seen["off_after_nested"]
    assert seen["collections_inside"] == 0
    assert seen["on_after"]  # (an error in the block too)
    assert seen["off_stays_off"]  # a collector that was off is not turned on
    if mode == "program":
        assert seen["frozen"] >= 50_000  # what the block made is out of the collector's sight
    else:
        assert seen["frozen"] == 0  # a caller's objects are never frozen
