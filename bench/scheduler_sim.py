"""The scheduler in a simulated swarm: seeded scenarios, figures and a digest of every decision.

No sockets and no sleeps: ``swarmget.testing.simswarm`` drives the core scheduler with a
simulated clock. For each seed a swarm of sources with random rates, slots and faults (slow,
frozen, killed, dropping streams) fetches one file; the script prints per scenario the
simulated time to finish, the efficiency (bytes in the file / bytes streamed), the bytes
reassigned, steals and duplicates, and a digest of every action and claim the scheduler made
(and of its final ``statistics()``).
Two runs of the same code and seeds print the same lines; a refactor of the scheduler that
keeps its behaviour keeps them too::

    PYTHONPATH=src python bench/scheduler_sim.py --seeds 40
"""

from __future__ import annotations

import argparse
import hashlib
import random

from swarmget.core.scheduler import Action, SchedulerConfig
from swarmget.testing.simswarm import SimSwarm, _Stream

KiB = 1024
MiB = 1024 * KiB


class _TracedSwarm(SimSwarm):
    """A SimSwarm that feeds every action and claim into a digest."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.trace = hashlib.sha256()

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            self.trace.update(repr(action).encode())
        super()._apply(actions)

    def _data(self, stream: _Stream, n: int) -> None:
        written = self.written.total()
        super()._data(stream, n)
        self.trace.update(f"{self.now:.3f} {stream.lease_id} {n} {written}".encode())


def _scenario(seed: int, observe: bool) -> tuple[str, _TracedSwarm, float]:
    rnd = random.Random(seed)
    size = rnd.choice([3 * MiB, 17 * MiB, 64 * MiB + 12345, 200 * MiB])
    config = SchedulerConfig(
        min_piece=rnd.choice([64 * KiB, 256 * KiB]),
        max_piece=rnd.choice([4 * MiB, 16 * MiB]),
        min_steal=rnd.choice([32 * KiB, 128 * KiB]),
        stall_timeout=rnd.choice([2.0, 15.0]),
        rescue_backlog=rnd.choice([0, 8 * MiB, 32 * MiB]),
        align=rnd.choice([1, 64 * KiB]),
    )
    sim = _TracedSwarm(size, config)
    faults = []
    for i in range(rnd.randint(1, 6)):
        fault = rnd.choice(["", "", "", "slow", "freeze", "kill", "drop"])
        rate = rnd.choice([0.5, 2, 8, 30]) * MiB
        kw: dict[str, object] = {}
        if fault == "drop":
            kw["fail_after"] = rnd.choice([100 * KiB, 3 * MiB])
        sim.add(f"s{i}", rate, slots=rnd.randint(1, 4), **kw)
        faults.append((f"s{i}", fault, rnd.uniform(0.2, 5.0)))
    label = f"size={size} sources={len(faults)} faults={[f for _, f, _ in faults if f]}"
    return label, sim, _run(sim, faults, observe)


def _run(sim: _TracedSwarm, faults: list[tuple[str, str, float]], observe: bool) -> float:
    """Step the swarm (0.05 s steps, at most 20000), applying each fault at its time;
    ``observe``: take a ``statistics()`` snapshot between every two steps, as a portal
    would."""
    pending = sorted(faults, key=lambda f: f[2])
    sim._apply(sim.scheduler.poll(sim.now))
    for _ in range(20_000):
        if sim.scheduler.is_complete() or not sim.scheduler.has_usable_source():
            break
        while pending and pending[0][2] <= sim.now:
            name, fault, _ = pending.pop(0)
            if fault == "slow":
                sim.sources[name].rate /= 20
            elif fault == "freeze":
                sim.sources[name].frozen = True
            elif fault == "kill":
                sim.kill(name)
        sim.step(0.05)
        if observe:
            sim.scheduler.statistics(sim.now + 0.025)  # between two steps
    return sim.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument(
        "--observe",
        action="store_true",
        help="snapshot statistics() after every step (a query: must not change any figure)",
    )
    args = parser.parse_args()
    total = hashlib.sha256()
    for seed in range(args.seeds):
        label, sim, took = _scenario(seed, args.observe)
        stats = sim.scheduler.statistics(sim.now)
        received = sum(s.received for s in stats.sources)
        efficiency = stats.done / received if received else 1.0
        sim.trace.update(repr(stats).encode())  # the snapshot too: rates, segments, states
        digest = sim.trace.hexdigest()[:16]
        total.update(digest.encode())
        print(
            f"seed {seed:3d}: {'done' if stats.complete else 'STUCK'} t={took:8.2f}s "
            f"eff={efficiency:.4f} reassigned={stats.reassigned_bytes} steals={stats.steals} "
            f"dups={stats.duplicates} trace={digest}  {label}"
        )
    print(f"all: {total.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
