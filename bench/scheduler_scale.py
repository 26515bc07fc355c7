"""The core scheduler with hundreds of helpers: efficiency and CPU per event (issue #17).

No sockets and no sleeps: a simulated clock drives ``swarmget.core.scheduler.Scheduler`` on a
large file (10 GiB by default, pieces sized by the scheduler) with N helpers whose rates are
drawn from a lognormal distribution (median ``--median-mib`` MiB/s, sigma ``--sigma``), one slot
each. Optional faults: ``--killed`` % of the helpers crash at a random time (their streams
break), ``--hung`` % hang at a random time (they keep their connections but send nothing,
like a SIGSTOPped process). As the engine does, the driver polls the scheduler after every
change (a stream finished or failed) and once per step (``--dt``); a helper whose stream
finishes mid-step sends the rest of its step on the stream it gets next (no round trip is
modelled; ``--no-carry``: it idles until the next step, which costs ~5 % of efficiency at
300 helpers from the step size alone). Per N it prints:

* ``eff``: the ideal time over the simulated time, where the ideal time is when the file would
  be done if every byte the helpers could send (while alive and not hung) went to the file;
* ``bytes``: the file's bytes over the bytes streamed (duplicates and lost races cost);
* the scheduler's CPU (``time.process_time`` around every scheduler call), its CPU per
  ``poll()`` and per event (every call), and with ``--profile`` the top functions of a
  cProfile run of the same scenario.

A point stops after ``--cpu-limit`` seconds of scheduler CPU and says so::

    PYTHONPATH=src python bench/scheduler_scale.py --helpers 10,100,300,1000
    PYTHONPATH=src python bench/scheduler_scale.py --helpers 300 --killed 5 --hung 5
    PYTHONPATH=src python bench/scheduler_scale.py --helpers 100,300,1000,3000 --killed 5 \
        --hung 5 --both     # CPU per poll against N, efficiency without and with faults
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import random
import time
from dataclasses import dataclass, field

from swarmget.core.scheduler import Action, Assign, Cancel, Scheduler, SchedulerConfig

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass
class _Helper:
    rate: float
    dies: float = math.inf  # crashes at this time
    hangs: float = math.inf  # stops sending (but keeps its connections) at this time
    streams: dict[int, list[int]] = field(default_factory=dict)  # lease -> [cursor, end]


@dataclass
class _Run:
    helpers: dict[str, _Helper]
    sched: Scheduler
    now: float = 0.0
    cpu: float = 0.0
    polls: int = 0
    poll_cpu: float = 0.0
    events: int = 0
    carry: bool = True
    owner: dict[int, str] = field(default_factory=dict)

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = fn(*args)
        dt = time.process_time() - t0
        self.cpu += dt
        self.events += 1
        if fn == self.sched.poll:
            self.polls += 1
            self.poll_cpu += dt
        return out

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Assign):
                h = self.helpers[action.source_id]
                h.streams[action.lease_id] = [action.range.start, action.range.end]
                self.owner[action.lease_id] = action.source_id
            elif isinstance(action, Cancel):
                sid = self.owner.pop(action.lease_id, None)
                if sid is not None:
                    self.helpers[sid].streams.pop(action.lease_id, None)

    def step(self, dt: float) -> None:
        self.now += dt
        for h in self.helpers.values():
            if h.streams:
                self._send(h, dt)
        self.apply(self.call(self.sched.on_timer, self.now))
        self.apply(self.call(self.sched.poll, self.now))

    def _send(self, h: _Helper, dt: float) -> None:
        """``h`` sends ``rate * dt`` bytes over its streams; with ``carry``, what a stream
        that finished did not need goes to the streams it gets next (no round trip)."""
        now = self.now
        if now >= h.dies:
            for lease_id in list(h.streams):
                if h.streams.pop(lease_id, None) is None:
                    continue  # cancelled by what the scheduler did with the failure before
                self.owner.pop(lease_id, None)
                self.apply(self.call(self.sched.on_failure, lease_id, now))
            self.apply(self.call(self.sched.poll, now))
            return
        if now >= h.hangs:
            return
        budget = int(h.rate * dt)
        for _ in range(8 if self.carry else 1):
            if budget <= 0 or not h.streams:
                return
            share = max(1, budget // len(h.streams))
            for lease_id, st in list(h.streams.items()):
                if lease_id not in h.streams:
                    continue
                n = min(share, st[1] - st[0])
                claim = self.call(self.sched.on_data, lease_id, n, now)
                st[0] += n
                budget -= n
                self.apply(list(claim.actions))
                if claim.finished:
                    h.streams.pop(lease_id, None)
                    self.owner.pop(lease_id, None)
                    self.apply(self.call(self.sched.poll, now))  # as the engine: on a change


def _ideal(size: int, helpers: dict[str, _Helper]) -> float:
    """When ``size`` bytes would be done if every helper sent at its rate while it could."""

    def sent(t: float) -> float:
        return sum(h.rate * min(t, h.dies, h.hangs) for h in helpers.values())

    lo, hi = 0.0, 1.0
    for _ in range(200):
        if sent(hi) >= size:
            break
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if sent(mid) >= size else (mid, hi)
    return hi


def _scenario(args: argparse.Namespace, n: int) -> _Run:
    rnd = random.Random(args.seed * 1_000_003 + n)
    size = args.size_gib * GiB
    median = args.median_mib * MiB
    helpers: dict[str, _Helper] = {}
    estimate = size / (n * median)  # a rough run time, for the fault times
    for i in range(n):
        h = _Helper(rate=median * math.exp(rnd.gauss(0.0, args.sigma)))
        roll = rnd.uniform(0, 100)
        if roll < args.killed:
            h.dies = rnd.uniform(0.05, 0.8) * estimate
        elif roll < args.killed + args.hung:
            h.hangs = rnd.uniform(0.05, 0.8) * estimate
        helpers[f"h{i:05d}"] = h
    config = SchedulerConfig(silence=args.silence)
    run = _Run(helpers, Scheduler(size, config), carry=not args.no_carry)
    for sid in helpers:
        run.call(run.sched.add_source, sid, 1, 0.0)
    run.apply(run.call(run.sched.poll, 0.0))
    return run


def _drive(args: argparse.Namespace, run: _Run) -> str:
    for _ in range(args.max_steps):
        if run.sched.is_complete():
            return "done"
        if not run.sched.has_usable_source():
            return "STUCK"
        if run.cpu > args.cpu_limit:
            return "STOPPED (cpu limit)"
        run.step(args.dt)
    return "STOPPED (steps)"


def _point(args: argparse.Namespace, n: int) -> None:
    run = _scenario(args, n)
    status = _drive(args, run)
    stats = run.sched.statistics(run.now)
    received = sum(s.received for s in stats.sources)
    done = stats.done / stats.size
    eff = _ideal(stats.size, run.helpers) / run.now if status == "done" else float("nan")
    print(
        f"N={n:5d} faults={args.killed:g}+{args.hung:g}% {status:<20} done={done:6.1%} "
        f"t={run.now:8.1f}s eff={eff:.3f} "
        f"bytes={stats.done / max(1, received):.3f} steals={stats.steals} "
        f"dups={stats.duplicates} cpu={run.cpu:7.2f}s polls={run.polls} "
        f"cpu/poll={1e6 * run.poll_cpu / max(1, run.polls):8.0f}us "
        f"cpu/event={1e6 * run.cpu / max(1, run.events):6.1f}us events={run.events}",
        flush=True,
    )


def _profile(args: argparse.Namespace, n: int) -> None:
    run = _scenario(args, n)
    prof = cProfile.Profile()
    prof.enable()
    _drive(args, run)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.profile)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    print(f"profile N={n} (top {args.profile} by own time, the driver included):")
    print("\n".join(lines[start:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--helpers", default="100,300,1000,3000", help="comma-separated N")
    parser.add_argument("--size-gib", type=int, default=10)
    parser.add_argument("--median-mib", type=float, default=2.0, help="median helper MiB/s")
    parser.add_argument("--sigma", type=float, default=1.0, help="lognormal sigma of rates")
    parser.add_argument("--killed", type=float, default=0.0, help="%% of helpers that crash")
    parser.add_argument("--hung", type=float, default=0.0, help="%% of helpers that hang")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dt", type=float, default=0.05, help="simulated seconds per step")
    parser.add_argument(
        "--silence", type=float, default=SchedulerConfig().silence, help="SchedulerConfig"
    )
    parser.add_argument(
        "--no-carry",
        action="store_true",
        help="a stream that finishes mid-step wastes the rest of its helper's step",
    )
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--cpu-limit", type=float, default=120.0, help="scheduler CPU per N")
    parser.add_argument("--profile", type=int, default=0, help="print the top K functions")
    parser.add_argument(
        "--both", action="store_true", help="each N without faults too (faults 0 + 0)"
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.helpers.split(",")]
    if min(sizes) < 1 or not 0 <= args.killed + args.hung <= 100:
        parser.error("--helpers must be >= 1 and --killed + --hung <= 100")
    print(
        f"{args.size_gib} GiB, rates lognormal median {args.median_mib} MiB/s sigma "
        f"{args.sigma}, killed {args.killed}% hung {args.hung}%, seed {args.seed}, dt {args.dt}s"
    )
    for n in sizes:
        if args.profile:
            _profile(args, n)
        elif args.both:  # the same N without faults, then with the faults given
            _point(argparse.Namespace(**{**vars(args), "killed": 0.0, "hung": 0.0}), n)
            _point(args, n)
        else:
            _point(args, n)


if __name__ == "__main__":
    main()
