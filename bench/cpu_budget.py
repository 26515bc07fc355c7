"""A CPU budget of its own for a process: a fraction of one core, through the kernel's cgroups.

Issue #17 asks whether hub replicas add capacity close to linearly (2 replicas >= 1.8x one).
On a 2-core machine that also runs the load generator and the database, two unbounded hubs
just share the same cores, so what a second replica adds cannot be seen. Giving every hub
process the same budget (say 0.25 of a core) makes the comparison fair: one replica with its
budget, then two replicas with one budget each, while the generator and the database keep
the rest of the machine. Capacity is then measured per budget, as it would be per core on a
machine with a core per replica.

The budget is CFS bandwidth control: ``quota`` microseconds of CPU per ``period``. The
period is short (10 ms) so that a throttled process waits at most a few milliseconds, not the
default period's 100 ms, which would show up as latency at any load. cgroup v1
(``/sys/fs/cgroup/cpu/``) and v2 (``/sys/fs/cgroup/cpu.max``) are both handled; the group is
removed when the budget ends (its processes must have exited by then).

Stdlib only, synchronous: the benchmarks drive processes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
REMOVE_WAIT = 2.0


class BudgetUnavailable(RuntimeError):
    """The kernel's CPU controller cannot be used here (no cgroups, or not allowed)."""


@dataclass(frozen=True)
class Throttling:
    """How often the group hit its budget: periods throttled and time waited (seconds)."""

    periods: int
    throttled: int
    throttled_s: float


class CpuBudget:
    """One cgroup with ``fraction`` of a core; ``add(pid)`` moves a process (all threads)."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def throttling(self) -> Throttling:
        stat = dict(
            line.split(" ", 1) for line in (self.path / "cpu.stat").read_text().splitlines()
        )
        if self.v2:
            waited = int(stat.get("throttled_usec", "0")) / 1e6
        else:
            waited = int(stat.get("throttled_time", "0")) / 1e9
        return Throttling(
            int(stat.get("nr_periods", "0")), int(stat.get("nr_throttled", "0")), waited
        )


def _v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


@contextlib.contextmanager
def cpu_budget(name: str, fraction: float) -> Iterator[CpuBudget]:
    """A new cgroup ``name`` limited to ``fraction`` (0 < fraction <= 64) of one core."""
    if not 0 < fraction <= 64:
        raise ValueError(f"a CPU budget is a fraction of a core in (0, 64], not {fraction}")
    quota = max(1_000, round(PERIOD_US * fraction))
    v2 = _v2()
    path = CGROUP_ROOT / name if v2 else CGROUP_ROOT / "cpu" / name
    try:
        if v2:
            controllers = (CGROUP_ROOT / "cgroup.subtree_control").read_text().split()
            if "cpu" not in controllers:
                (CGROUP_ROOT / "cgroup.subtree_control").write_text("+cpu\n")
            path.mkdir()
            (path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:
            path.mkdir()
            (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.rmdir()
        raise BudgetUnavailable(f"cannot make a CPU budget at {path}: {exc}") from exc
    try:
        yield CpuBudget(path, v2)
    finally:
        deadline = time.monotonic() + REMOVE_WAIT
        while True:
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_named(comm: str) -> list[int]:
    """Pids of the processes whose command name is ``comm`` (e.g. ``postgres``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
    return found


def family_cpu_seconds(comm: str) -> float:
    """CPU seconds so far of every process named ``comm`` and of its reaped children: a
    server whose workers come and go (PostgreSQL's backends) is counted whole, since a
    worker's time moves to its parent's children's time when it exits."""
    total = 0.0
    for pid in processes_named(comm):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total
