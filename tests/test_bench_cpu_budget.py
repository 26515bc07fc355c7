"""bench/cpu_budget.py: a process given a fraction of a core gets no more than that."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpu_budget", BENCH / "cpu_budget.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_budget"] = module
    spec.loader.exec_module(module)
    return module


cpu_budget = load()


def test_a_busy_process_in_a_budget_gets_no_more_than_it() -> None:
    name = f"swarmget-test-budget-{os.getpid()}"
    try:
        budget_cm = cpu_budget.cpu_budget(name, 0.2)
        budget = budget_cm.__enter__()
    except cpu_budget.BudgetUnavailable as exc:
        pytest.skip(f"no CPU controller here: {exc}")
    busy = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: pass"])
    try:
        budget.add(busy.pid)
        time.sleep(0.2)  # the interpreter's start
        cpu0, wall0 = cpu_budget.process_cpu_seconds(busy.pid), time.monotonic()
        time.sleep(1.5)
        used = (cpu_budget.process_cpu_seconds(busy.pid) - cpu0) / (time.monotonic() - wall0)
        throttling = budget.throttling()
    finally:
        busy.kill()
        busy.wait()
        budget_cm.__exit__(None, None, None)
    # a busy loop takes a whole core when it can; 0.2 of one (clock ticks of 10 ms: +-0.05)
    assert used < 0.4, used
    assert throttling.throttled > 0
    assert throttling.throttled_s > 0
    assert not budget.path.exists()  # the group is removed with the budget


def test_a_budget_is_a_fraction_of_a_core() -> None:
    for wrong in (0, -1, 65):
        with (
            pytest.raises(ValueError, match="fraction of a core"),
            cpu_budget.cpu_budget("never-made", wrong),
        ):
            pass


PARENT = """
import subprocess, sys, time
subprocess.run([sys.argv[1], "-c", "sum(range(3 * 10**7))"], check=True)
print("reaped", flush=True)
time.sleep(30)
"""


def test_a_family_counts_its_reaped_children(tmp_path: Path) -> None:
    name = f"sgfam{os.getpid() % 10**9}"  # a command name of its own (comm: 15 characters)
    python = tmp_path / name
    python.symlink_to(sys.executable)
    with subprocess.Popen(
        [str(python), "-c", PARENT, str(python)], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline().strip() == "reaped"
            assert cpu_budget.processes_named(name) == [parent.pid]
            own = cpu_budget.process_cpu_seconds(parent.pid)
            # the child's 3e7 additions (~0.5 s here) left with it, yet are counted
            assert cpu_budget.family_cpu_seconds(name) >= own + 0.2
        finally:
            parent.kill()
    assert cpu_budget.family_cpu_seconds(name) == 0.0
