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

``--shared K`` runs the fetch-once experiment of issue #15 instead (``swarmget.testing.
simgroup``): K hosts on a LAN want one file; each has its own origin link. It prints, per
scenario, each requester's time, the origin bytes summed over the group (in file sizes) and
the LAN bytes: one requester with the K-1 others as helpers (today's best case), K requesters
at once as today (each with all K links as helpers), K requesters sharing one fetch (at once,
and joined over one second), the same with the first requester killed mid-way, one host's
link ``--slow-factor`` times slower (with and without the group endgame), and a second
requester that arrives after the first finished::

    PYTHONPATH=src python bench/scheduler_sim.py --shared 8 --size-mib 256

With ``--inflight-kib 768 --engine-pieces`` it counts what cut origin streams waste, with the
engine's piece boundaries (the testbed's figures); ``--claim-unleased`` claims as
``engine.group`` does now (docs/fetch-once.md §9.1, round 2).
"""

from __future__ import annotations

import argparse
import hashlib
import random

from swarmget.core.scheduler import Action, SchedulerConfig
from swarmget.testing.simgroup import GroupSim
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


def _group(
    args: argparse.Namespace, k: int, sharing: bool, *, slow: bool = False, endgame: bool = True
) -> GroupSim:
    """A group of ``k`` hosts; ``slow``: host 1's origin link is ``--slow-factor`` slower."""
    rate = args.origin_mbit * 1e6 / 8
    rates = [rate / args.slow_factor if slow and h == 1 else rate for h in range(k)]
    return GroupSim(
        args.size_mib * MiB,
        hosts=k,
        sharing=sharing,
        origin_rate=rate,
        lan_rate=args.lan_mbit * 1e6 / 8,
        advertise_every=args.advertise_every,
        link_rates=rates,
        endgame=endgame,
        inflight=args.inflight_kib * 1024,
        claim_unleased=args.claim_unleased,
        **({"config": SchedulerConfig(align=1)} if args.engine_pieces else {}),
    )


def _report(label: str, sim: GroupSim, done: bool) -> None:
    """One line: per requester (alive) its time from joining to done; group totals."""
    times = [m.finished - m.joined for m in sim.members.values() if m.finished is not None]
    size = sim.size
    lan = sum(m.from_lan for m in sim.members.values())
    origin = sum(sim.link_bytes)
    span = f"{min(times):7.2f}-{max(times):7.2f}s" if times else "      -"
    print(
        f"{label:<50} {'ok' if done else 'STUCK'} time/requester {span}  "
        f"origin {origin / size:5.3f}x  max/host {max(sim.link_bytes) / size:5.3f}x  "
        f"lan {lan / size:5.2f}x  cut origin streams {sim.cuts}"
    )


def _shared(args: argparse.Namespace) -> None:
    """The fetch-once experiment (see the module docstring)."""
    k = args.shared
    print(
        f"{k} hosts, {args.size_mib} MiB, origin {args.origin_mbit} Mbit/s per host, "
        f"LAN {args.lan_mbit} Mbit/s per host, news every {args.advertise_every}s; "
        "origin bytes in file sizes, summed over hosts"
    )
    lone = _group(args, k, sharing=False)
    lone.join(0)
    _report(f"1 requester, {k - 1} helpers (today)", lone, lone.run())
    today = _group(args, k, sharing=False)
    for h in range(k):
        today.join(h)
    _report(f"{k} requesters at once, no sharing (today)", today, today.run())
    shared = _group(args, k, sharing=True)
    for h in range(k):
        shared.join(h)
    _report(f"{k} requesters at once, sharing", shared, shared.run())
    t_shared = shared.now
    staggered = _group(args, k, sharing=True)
    for h in range(k):
        while staggered.now < h / k - 1e-9:
            staggered.step(0.05)
        staggered.join(h)
    _report(f"{k} requesters joined over 1 s, sharing", staggered, staggered.run())
    killed = _group(args, k, sharing=True)
    for h in range(k):
        killed.join(h)
    while killed.now < 0.4 * t_shared:
        killed.step(0.05)
    killed.kill("m0")
    _report(f"... first requester killed at {killed.now:.1f}s", killed, killed.run())
    if k > 1:
        _slow_link(args, k)
    late = _group(args, 2, sharing=True)
    late.join(0)
    late.run()
    late.join(1)
    ok = late.run()
    second = late.members["m1"]
    assert second.finished is not None or not ok
    _report("2nd requester after the 1st finished", late, ok)
    if second.finished is not None:
        print(
            f"  2nd requester: {second.finished - second.joined:.2f}s, "
            f"origin bytes {second.from_origin}, LAN bytes {second.from_lan}"
        )


def _slow_link(args: argparse.Namespace, k: int) -> None:
    """Host 1's link ``--slow-factor`` times slower: today, and sharing with and without
    the group endgame (``ClaimBook.steal``)."""
    label = f"host 1 link /{args.slow_factor:g}:"
    lone = _group(args, k, sharing=False, slow=True)
    lone.join(0)
    _report(f"{label} 1 requester, {k - 1} helpers", lone, lone.run())
    for endgame in (False, True):
        sim = _group(args, k, sharing=True, slow=True, endgame=endgame)
        for h in range(k):
            sim.join(h)
        name = "with" if endgame else "without"
        _report(f"{label} {k} sharing, {name} group endgame", sim, sim.run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument(
        "--shared", type=int, metavar="K", help="run the fetch-once experiment with K hosts"
    )
    parser.add_argument("--size-mib", type=int, default=256, help="with --shared")
    parser.add_argument("--origin-mbit", type=float, default=40.0, help="with --shared")
    parser.add_argument("--lan-mbit", type=float, default=1000.0, help="with --shared")
    parser.add_argument(
        "--slow-factor", type=float, default=10.0, help="with --shared: the slow link's factor"
    )
    parser.add_argument(
        "--advertise-every",
        type=float,
        default=1.0,
        help="with --shared: seconds between a member's reports of what it has (0: each step)",
    )
    parser.add_argument(
        "--inflight-kib",
        type=int,
        default=0,
        help="with --shared: KiB a cut origin stream wastes (in flight; the testbed: ~768)",
    )
    parser.add_argument(
        "--claim-unleased",
        action="store_true",
        help="with --shared: claims keep granted bytes unleased while grants are whole",
    )
    parser.add_argument(
        "--engine-pieces",
        action="store_true",
        help="with --shared: pieces on any byte (the engine without a manifest), not 1 MiB",
    )
    parser.add_argument(
        "--observe",
        action="store_true",
        help="snapshot statistics() after every step (a query: must not change any figure)",
    )
    args = parser.parse_args()
    if args.shared is not None:
        if args.shared < 1 or args.size_mib < 1 or not args.slow_factor >= 1:
            parser.error("--shared and --size-mib must be >= 1, --slow-factor >= 1")
        _shared(args)
        return
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
