"""The experiments on the namespace LAN. Each one fills ``lab.runs`` with ``Run`` records.

``nodes``      1..N nodes (requester h0 plus helpers h1..), every host capped alike.
``conns``      2 nodes, 1..5 connections per node (``--connections`` = ``--slots`` = c), on
               ``/capped/``: nginx ``limit_rate`` caps every connection.
``sizes``      one host vs 3 nodes, file sizes from 8 MiB to 1 GiB.
``hetero``     4 nodes capped at 10/20/40/80 Mbit/s: aggregate rate vs the sum of the caps.
``faults``     4 nodes; one helper SIGKILLed, or SIGSTOPped, at 30 % of the download; against
               the 3-node and 4-node times (no fault).
``baselines``  curl and ``aria2c -x16 -s16`` from one host next to swarmget alone and with the
               swarm, with per-host caps (the 256 MiB file) and with a per-connection cap.
``share``      the same file, many requesters (fetch once per LAN, #15): see lan_share.py.
``user``       as a user sees it: ``swarmget get URL -o FILE`` from the command to the verified
               file, handed to the node running on h0, for 1..N nodes and a few sizes, next
               to curl; and ``get --hub`` (its own in-process node) at 1 and N nodes. Meant
               for ``--rtt-ms`` (a round trip to the origin, see delayline.py).

A plan (``FULL`` or ``QUICK``) says how big each is. Every download is verified (sha256)
outside the timed part and deleted; timings are measured and reported, never asserted.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

import lan_net as net
from common import MiB, cached_sha256, ensure_test_file, human
from lan_share import exp_share
from lan_swarm import (
    NodeOptions,
    Run,
    Swarm,
    download_with_cli,
    download_with_swarm,
    download_with_tool,
    open_swarm,
    wait_for_helpers,
)

GOODPUT = 1448 / 1514  # TCP payload per byte on the wire (MSS 1448 with timestamps, 1500 MTU)
EXPERIMENTS = ("nodes", "conns", "sizes", "hetero", "faults", "baselines", "share", "user")


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How big each experiment is."""

    name: str
    cap_mbit: float = 40.0  # every host's link to the origin
    size: int = 256 * MiB  # nodes, hetero, faults, baselines (per-host caps)
    max_nodes: int = 8
    conns: tuple[int, ...] = (1, 2, 3, 4, 5)
    conn_size: int = 64 * MiB
    conn_rate: int = 1 * MiB  # nginx limit_rate per connection on /capped/, bytes/s
    sizes: tuple[int, ...] = (8 * MiB, 64 * MiB, 256 * MiB, 1024 * MiB)
    size_nodes: int = 3
    hetero_caps: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0)
    fault_nodes: int = 4
    fault_at: float = 0.3
    stall_timeout: float = 5.0
    repeat: int = 1
    user_sizes: tuple[int, ...] = (16 * MiB, 64 * MiB, 256 * MiB)
    user_nodes: tuple[int, ...] = (1, 2, 3, 4, 8)
    user_repeat: int = 3  # the median of this many, for every point of ``user``
    #: seconds before each ``user`` download after a node count's first (past the idle
    #: connections' keep-alive, 15 s: every download is cold, as a user's first is)
    user_pause: float = 0.0
    user_fault_nodes: int = 4  # nodes that work, next to one listed peer that does not answer
    user_fault_size: int = 64 * MiB
    user_hub_and_faults: bool = True  # also `get --hub` and the dead peer (--user-subset: no)
    rtt_ms: float = 0.0  # the round trip to the origin (0: none; else the delay line)
    share_hosts: int = 8  # share: every host a node, all of them requesters at once
    share_size: int = 256 * MiB
    share_lone_sizes: tuple[int, ...] = (64 * MiB, 256 * MiB)
    share_kill_at: float = 0.4  # the first requester's node killed with this much received
    share_holder_kill_at: float = 0.3  # a holder killed when the requester has this much
    share_origin_ref: bool = True  # curl from one host: "from the origin" for the 2nd
    share_wide_slots: int = 8  # "at once" with sharing again, every node --slots this (0: no)
    #: share: only these cases (``lan_share.CASES``; None: every case of the plan)
    share_cases: tuple[str, ...] | None = None

    @property
    def hosts(self) -> int:
        return max(
            self.max_nodes,
            self.size_nodes,
            len(self.hetero_caps),
            self.fault_nodes,
            *self.user_nodes,
            self.user_fault_nodes + 1,
            self.share_hosts,
        )

    def goodput(self, mbit: float) -> float:
        """Bytes/s of payload through a ``mbit`` link."""
        return mbit * 1e6 / 8 * GOODPUT


FULL = Plan(name="full")
QUICK = Plan(
    name="quick",
    size=16 * MiB,
    max_nodes=2,
    conns=(1, 2),
    conn_size=16 * MiB,
    conn_rate=2 * MiB,
    sizes=(4 * MiB, 16 * MiB),
    size_nodes=2,
    hetero_caps=(20.0, 40.0),
    fault_nodes=2,
    user_sizes=(16 * MiB,),
    user_nodes=(1, 2),
    user_repeat=1,
    user_fault_nodes=1,
    user_fault_size=16 * MiB,
    share_hosts=3,
    share_size=8 * MiB,
    share_lone_sizes=(8 * MiB,),
    share_origin_ref=False,
    share_wide_slots=0,
)


@dataclass
class Lab:
    """The testbed as the experiments see it."""

    plan: Plan
    work: Path  # node state, baseline outputs
    files: Path  # nginx's root: the test files
    base_url: str
    runs: list[Run] = field(default_factory=list)
    log: Callable[[str], None] = print
    _sha: dict[int, str] = field(default_factory=dict)
    _swarms: int = 0
    _last_user_swarm: Swarm | None = None  # (``user_pause``: not before a swarm's first)

    def url(self, size: int, *, capped: bool = False) -> str:
        return f"{self.base_url}/{'capped/' if capped else ''}{size}/payload.bin"

    def sha256(self, size: int) -> str:
        if size not in self._sha:
            self._sha[size] = cached_sha256(ensure_test_file(self.files, size))
        return self._sha[size]

    def timeout(self, size: int, rate: float) -> float:
        return 60.0 + 3.0 * size / rate

    def swarm(
        self, hosts: int, options: NodeOptions | None = None
    ) -> AbstractContextManager[Swarm]:
        self._swarms += 1
        opts = options or NodeOptions(stall_timeout=self.plan.stall_timeout)
        return open_swarm(self.work / f"swarm{self._swarms}", range(hosts), opts)

    def swarmget(
        self,
        swarm: Swarm,
        experiment: str,
        label: str,
        *,
        size: int,
        helpers: Sequence[int],
        capped: bool = False,
        on_progress: Callable[[float], None] | None = None,
        repeat: int | None = None,
        **params: object,
    ) -> Run:
        """``repeat`` downloads by h0 with ``helpers``; the median one is returned."""
        runs = []
        for _ in range(repeat or self.plan.repeat):
            run = Run(
                experiment,
                label,
                "swarmget",
                1 + len(helpers),
                size,
                params={"sha256": self.sha256(size), "capped": capped, **params},
            )
            slowest = self._slowest(capped)
            download_with_swarm(
                swarm,
                run,
                url=self.url(size, capped=capped),
                sha256=self.sha256(size),
                requester=0,
                helpers=helpers,
                timeout=self.timeout(size, slowest),
                on_progress=on_progress,
            )
            self._record(run)
            runs.append(run)
        return _median(runs)

    def tool(
        self, experiment: str, tool: str, label: str, size: int, *, capped: bool = False
    ) -> Run:
        run = Run(
            experiment, label, tool, 1, size, params={"sha256": self.sha256(size), "capped": capped}
        )
        slowest = self._slowest(capped)
        download_with_tool(
            run,
            url=self.url(size, capped=capped),
            work=self.work / "tools",
            host=0,
            timeout=self.timeout(size, slowest),
        )
        self._record(run)
        return run

    def cli(
        self,
        swarm: Swarm,
        experiment: str,
        label: str,
        *,
        size: int,
        n: int,
        mode: str,
        fault: str | None = None,
    ) -> Run:
        """``user_repeat`` downloads by ``swarmget get`` on h0; every one is recorded
        (``user_pause`` seconds before each but the swarm's first)."""
        for _ in range(self.plan.user_repeat):
            if self.plan.user_pause and swarm is self._last_user_swarm:
                time.sleep(self.plan.user_pause)
            self._last_user_swarm = swarm
            run = Run(experiment, label, "swarmget", n, size, params={"sha256": self.sha256(size)})
            run.params.update(
                n=n, mode=mode, rtt_ms=self.plan.rtt_ms, fault=fault, pause=self.plan.user_pause
            )
            download_with_cli(
                swarm,
                run,
                url=self.url(size),
                sha256=self.sha256(size),
                requester=0,
                mode=mode,
                timeout=self.timeout(size, self._slowest(False)),
            )
            self._record(run)
        return run

    def _slowest(self, capped: bool) -> float:
        """The lowest rate a download could see (bytes/s), for its time limit."""
        host = self.plan.goodput(min(self.plan.cap_mbit, *self.plan.hetero_caps))
        return min(host, self.plan.conn_rate) if capped else host

    def _record(self, run: Run) -> None:
        self.runs.append(run)
        if run.skipped:
            self.log(f"  {run.experiment:<9} {run.label:<24} skipped: {run.error}")
            return
        status = "ok" if run.ok else f"FAILED: {run.error}"
        wall = f"{run.wall:8.2f} s" if run.wall else "       - s"
        rate = f"{run.rate / MiB:7.2f} MiB/s" if run.rate else "      - MiB/s"
        self.log(f"  {run.experiment:<9} {run.label:<24} {wall} {rate}  {status}")


def _median(runs: Sequence[Run]) -> Run:
    good = [r for r in runs if r.ok and r.wall is not None]
    if not good:
        return runs[-1]
    wall = statistics.median_low([r.wall for r in good if r.wall is not None])
    return next(r for r in good if r.wall == wall)


def _nodes(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


def set_caps(lab: Lab, caps: Sequence[float]) -> None:
    hosts = lab.plan.hosts
    full = [*caps, *[lab.plan.cap_mbit] * (hosts - len(caps))][:hosts]
    net.set_caps(full, queue_ms=100.0)


# --- the experiments ----------------------------------------------------------------------------


def exp_nodes(lab: Lab) -> None:
    plan = lab.plan
    with lab.swarm(plan.max_nodes) as swarm:
        for n in range(1, plan.max_nodes + 1):
            lab.swarmget(swarm, "nodes", _nodes(n), size=plan.size, helpers=range(1, n), n=n)


def exp_conns(lab: Lab) -> None:
    plan = lab.plan
    for c in plan.conns:
        options = NodeOptions(connections=c, slots=c, stall_timeout=plan.stall_timeout)
        with lab.swarm(2, options) as swarm:
            lab.swarmget(
                swarm,
                "conns",
                f"{c} conn/node",
                size=plan.conn_size,
                helpers=[1],
                capped=True,
                c=c,
                conn_rate=plan.conn_rate,
            )


def exp_sizes(lab: Lab) -> None:
    plan = lab.plan
    with lab.swarm(plan.size_nodes) as swarm:
        for size in plan.sizes:
            lab.swarmget(swarm, "sizes", f"{human(size)} alone", size=size, helpers=[], n=1)
            lab.swarmget(
                swarm,
                "sizes",
                f"{human(size)} {_nodes(plan.size_nodes)}",
                size=size,
                helpers=range(1, plan.size_nodes),
                n=plan.size_nodes,
            )


def exp_hetero(lab: Lab) -> None:
    plan = lab.plan
    caps = plan.hetero_caps
    set_caps(lab, caps)
    try:
        with lab.swarm(len(caps)) as swarm:
            lab.swarmget(
                swarm,
                "hetero",
                "+".join(f"{c:g}" for c in caps) + " Mbit/s",
                size=plan.size,
                helpers=range(1, len(caps)),
                caps=list(caps),
            )
    finally:
        set_caps(lab, [])


def exp_faults(lab: Lab) -> None:
    plan = lab.plan
    n = plan.fault_nodes
    with lab.swarm(n) as swarm:
        lab.swarmget(swarm, "faults", _nodes(n - 1), size=plan.size, helpers=range(1, n - 1))
        lab.swarmget(swarm, "faults", _nodes(n), size=plan.size, helpers=range(1, n))
    for sig, what in ((signal.SIGKILL, "killed"), (signal.SIGSTOP, "hung")):
        with lab.swarm(n) as swarm:
            victim = swarm.nodes[n - 1]
            fired: list[float] = []
            fault = _fault_at(plan.fault_at, victim.pid, sig, fired)
            run = lab.swarmget(
                swarm,
                "faults",
                f"{n} nodes, 1 {what} at {plan.fault_at:.0%}",
                size=plan.size,
                helpers=range(1, n),
                on_progress=fault,
                repeat=1,
                fault=what,
                victim=victim.node_id,
                stall_timeout=plan.stall_timeout,
            )
            run.params["fired_at"] = fired[0] if fired else None


def _fault_at(at: float, pid: int, sig: int, fired: list[float]) -> Callable[[float], None]:
    """A progress callback that sends ``sig`` to ``pid`` once, when ``at`` of the file is done
    (and notes the fraction it fired at in ``fired``)."""

    def on_progress(fraction: float) -> None:
        if not fired and fraction >= at:
            os.kill(pid, sig)
            fired.append(fraction)

    return on_progress


def exp_baselines(lab: Lab) -> None:
    plan = lab.plan
    for capped, size in ((False, plan.size), (True, plan.conn_size)):
        tag = "connection cap" if capped else "host cap"
        for tool in ("curl", "aria2c"):
            run = lab.tool("baselines", tool, f"{tool}, {tag}", size, capped=capped)
            run.params["scenario"] = tag
        with lab.swarm(plan.max_nodes) as swarm:
            for helpers in (range(0), range(1, plan.max_nodes)):
                n = 1 + len(helpers)
                label = f"swarmget {_nodes(n)}, {tag}"
                lab.swarmget(
                    swarm,
                    "baselines",
                    label,
                    size=size,
                    helpers=helpers,
                    capped=capped,
                    scenario=tag,
                    n=n,
                )


def exp_user(lab: Lab) -> None:
    """From ``swarmget get`` to the verified file: median of ``user_repeat`` per point."""
    plan = lab.plan
    for size in plan.user_sizes:
        for _ in range(plan.user_repeat):
            run = lab.tool("user", "curl", f"curl {human(size)}", size)
            run.params.update(n=1, mode="curl", rtt_ms=plan.rtt_ms)
    for n in plan.user_nodes:
        with lab.swarm(n) as swarm:
            wait_for_helpers(swarm, 0, range(1, n), limit=60.0)
            both = plan.user_hub_and_faults and n in (1, max(plan.user_nodes))
            modes = ("node", "hub") if both else ("node",)
            for mode in modes:
                for size in plan.user_sizes:
                    lab.cli(swarm, "user", f"get{' --hub' if mode == 'hub' else ''} {human(size)} "
                            f"{_nodes(n)}", size=size, n=n, mode=mode)  # fmt: skip
    if plan.user_hub_and_faults:
        _user_dead_peer(lab)


def _user_dead_peer(lab: Lab) -> None:
    """A peer the hub still lists but that does not answer h0: its SYNs are black-holed (a
    blackhole route to h0 in its namespace drops its SYN-ACKs), or it is SIGSTOPped (the
    kernel accepts, nobody answers). Compared with the same swarm without it."""
    plan = lab.plan
    n, size = plan.user_fault_nodes, plan.user_fault_size
    with lab.swarm(n + 1) as swarm:
        wait_for_helpers(swarm, 0, range(1, n + 1), limit=60.0)
        dead = swarm.nodes[n]
        requester_ip = net.host_ip(0)
        for fault in ("black-holed", "stopped"):
            if fault == "black-holed":
                net.sh(["ip", "-n", dead.ns, "route", "add", "blackhole", f"{requester_ip}/32"])
            else:
                os.kill(dead.pid, signal.SIGSTOP)
            try:
                lab.cli(swarm, "user", f"get {human(size)} {_nodes(n)} + 1 {fault}", size=size,
                        n=n, mode="node", fault=fault)  # fmt: skip
            finally:
                if fault == "black-holed":
                    net.sh(["ip", "-n", dead.ns, "route", "del", "blackhole", f"{requester_ip}/32"])
                else:
                    os.kill(dead.pid, signal.SIGCONT)


RUNNERS: dict[str, Callable[[Lab], None]] = {
    "nodes": exp_nodes,
    "conns": exp_conns,
    "sizes": exp_sizes,
    "hetero": exp_hetero,
    "faults": exp_faults,
    "baselines": exp_baselines,
    "share": exp_share,
    "user": exp_user,
}


def parse_subset(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"16,64:1,2,4,8"`` → sizes in bytes and node counts (``--user-subset``)."""
    sizes, sep, nodes = text.partition(":")
    if not sep:
        raise ValueError("expected MIB,...:NODES,... (e.g. 16,64:1,2,4,8)")
    mib = tuple(int(x) for x in sizes.split(","))
    counts = tuple(int(x) for x in nodes.split(","))
    if not all(0 < m <= 1024 for m in mib) or not all(0 < c <= 8 for c in counts):
        raise ValueError("sizes 1..1024 MiB, nodes 1..8")
    return tuple(m * MiB for m in mib), counts


def plan_for(
    quick: bool,
    repeat: int,
    cap_mbit: float | None,
    rtt_ms: float = 0.0,
    share_cases: tuple[str, ...] | None = None,
    subset: str | None = None,
) -> Plan:
    plan = QUICK if quick else FULL
    plan = replace(plan, repeat=repeat, rtt_ms=rtt_ms, share_cases=share_cases)
    if subset is not None:
        sizes, nodes = parse_subset(subset)
        plan = replace(plan, user_sizes=sizes, user_nodes=nodes, user_hub_and_faults=False)
    return replace(plan, cap_mbit=cap_mbit) if cap_mbit is not None else plan
