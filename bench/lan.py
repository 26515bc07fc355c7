"""A LAN on one Linux machine (network namespaces), and swarmget measured on it.

What it builds (``lan_net.py`` has the details)
    An origin namespace running Debian's nginx (Range and ETag built in), a hub namespace and
    N host namespaces on one bridge, 10.77.0.0/24. Each host's link to the origin is capped
    (HTB on the origin's egress, one class per host address: 40 Mbit/s by default); the LAN
    between hosts runs at 1 Gbit/s. ``/capped/`` on the origin also caps every connection
    (nginx ``limit_rate``), the case of a server that throttles each connection.

What it measures (``lan_experiments.py``), each a markdown table and a PNG in bench/results/
    nodes      1..8 nodes, 256 MiB: time from the request to the verified file, speedup over
               one host, efficiency (speedup / nodes), last byte → verified file, CPU
    conns      1..5 connections per node, 2 nodes, 1 MiB/s per connection
    sizes      8 MiB .. 1 GiB, 3 nodes vs one host
    hetero     4 nodes at 10/20/40/80 Mbit/s: aggregate rate vs the sum of the caps
    faults     4 nodes, one helper SIGKILLed / SIGSTOPped at 30 %, vs the 3-node time
    baselines  curl and aria2c -x16 -s16 from one host, with both kinds of cap
    share      the same file, many requesters (fetch once per LAN, #15; lan_share.py): 8 at
               once with and without --share-downloads, a 2nd requester after the 1st, a
               requester or a holder killed, a lone requester on/off; time per requester,
               origin bytes per host, LAN bytes
    user       (not in `all`) as a user sees it: `swarmget get URL -o FILE` to the verified
               file, handed to the node on h0 (and `get --hub`), 1..8 nodes, 16/64/256 MiB,
               median of 3, next to curl; with --rtt-ms 30 (`make bench-latency`) every
               request to the origin costs a 30 ms round trip (bench/delayline.py)

How to run it (as root; it installs nginx-light, iproute2, curl and aria2 if missing)
    make bench                                  # everything (about 17 minutes on 2 cores)
    make bench-quick                            # 16 MiB, 2 nodes: the CI smoke test (~2 min)
    make bench-latency                          # the user experiment at RTT 30 ms (~15 min)
    .venv/bin/python bench/lan.py run nodes faults [--repeat 3]
    .venv/bin/python bench/lan.py up --hosts 4  # leave the LAN up to poke at it:
    ip netns exec sgb-h0 curl -o /dev/null http://10.77.0.1/16777216/payload.bin
    .venv/bin/python bench/lan.py down          # remove everything (idempotent)
    SWARMGET_BENCH_PREFIX=sgc- SWARMGET_BENCH_NET=10.78.0 .venv/bin/python bench/lan.py ...
                                                # a second testbed next to the first (own
                                                # names, subnet, work dir and lock; pass
                                                # --results elsewhere)

    Where namespaces cannot be made (not root, a container without CAP_SYS_ADMIN) it prints
    why and exits 0. The exit code is 1 when a download failed or did not verify (sha256);
    timings are reported against the goals, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

import lan_net as net
import lan_report as report
from common import (
    MiB,
    command_output,
    compile_bytecode,
    ensure_programs,
    ensure_test_file,
    load_average,
    machine_facts,
    swarmget_exe,
)
from lan_experiments import EXPERIMENTS, RUNNERS, Lab, Plan, parse_subset, plan_for
from lan_share import CASES as SHARE_CASES
from lan_swarm import Run, start_origin, wait_origin

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
QUICK_RESULTS = BENCH_DIR / "out" / "lan-quick"  # --results elsewhere for a second testbed
# one testbed per prefix (lan_net.PREFIX): its own work directory and lock
_SUFFIX = "" if net.PREFIX == net.DEFAULT_PREFIX else f"-{net.PREFIX.rstrip('-')}"
WORK = Path(tempfile.gettempdir(), f"swarmget-lan{_SUFFIX}")
LOCK = Path(tempfile.gettempdir(), f"swarmget-lan{_SUFFIX}.lock")
LOCK_WAIT = 1800.0  # a full run of another lan.py takes ~17 minutes
FILES = Path(tempfile.gettempdir(), f"swarmget-bench{_SUFFIX}")
PROGRAMS = {
    "nginx": "nginx-light",
    "ip": "iproute2",
    "tc": "iproute2",
    "curl": "curl",
    "aria2c": "aria2",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=("up", "down", "run", "all", "report"))
    p.add_argument("experiments", nargs="*", help=f"for run: {', '.join(EXPERIMENTS)}")
    p.add_argument("--quick", action="store_true", help="16 MiB, 2 nodes: correctness smoke")
    p.add_argument("--repeat", type=int, default=1, help="downloads per point (median)")
    p.add_argument("--cap", type=float, help="Mbit/s per host (default 40)")
    p.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="round trip to the origin, ms (default 0; a delay line, see delayline.py)",
    )
    p.add_argument("--hosts", type=int, help="for up: host namespaces (default 8)")
    p.add_argument("--keep", action="store_true", help="leave the LAN up after run/all")
    p.add_argument("--no-install", action="store_true", help="never apt-get install")
    p.add_argument("--results", type=Path, help="where tables, plots and JSON go")
    p.add_argument("--note", help="a line for the report (e.g. the commit measured)")
    p.add_argument(
        "--share-cases",
        help=f"for share: only these cases, comma-separated ({', '.join(SHARE_CASES)})",
    )
    p.add_argument(
        "--user-subset",
        metavar="MIB:NODES",
        help="user only: these sizes and node counts, `get` to the node only, no dead peer "
        "(e.g. 16,64:1,2,4,8)",
    )
    p.add_argument(
        "--user-pause",
        type=float,
        default=0.0,
        metavar="S",
        help="user: wait S seconds before each download after a node count's first; past "
        "the idle connections' keep-alive (15 s: --user-pause 16) every download is a first "
        "one from the origin, its connections new (cold), as a user's usually is",
    )
    args = p.parse_args(argv)
    unknown = set(args.experiments) - set(EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiment(s): {', '.join(sorted(unknown))}")
    if args.command == "run" and not args.experiments:
        p.error("run needs one or more experiments (or use `all`)")
    if args.command == "all":  # the user's view is its own run: ``run user --rtt-ms 30``
        args.experiments = [e for e in EXPERIMENTS if e != "user"]
    if not 0 <= args.rtt_ms <= 1000:
        p.error("--rtt-ms must be within 0..1000")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.share_cases is not None:
        args.share_cases = tuple(
            sorted({c.strip() for c in args.share_cases.split(",") if c.strip()})
        )
        bad = set(args.share_cases) - set(SHARE_CASES)
        if bad or not args.share_cases:
            p.error(f"--share-cases: unknown case(s) {', '.join(sorted(bad))}")
    if not 0 <= args.user_pause <= 600:
        p.error("--user-pause must be within 0..600")
    if args.user_subset is not None:
        try:
            parse_subset(args.user_subset)
        except ValueError as e:
            p.error(f"--user-subset: {e}")
    return args


def bring_up(plan: Plan, hosts: int, allow_install: bool) -> str:
    """The LAN and the origin; returns the origin's base URL."""
    found = ensure_programs(PROGRAMS, allow_install=allow_install)
    if found["nginx"] is None or found["curl"] is None:
        raise SystemExit("nginx and curl are needed (apt-get install nginx-light curl)")
    caps = tuple([plan.cap_mbit] * hosts)
    print(f"bringing up the LAN: origin, hub, {hosts} hosts at {plan.cap_mbit:g} Mbit/s each")
    net.up(hosts, net.Shaping(caps_mbit=caps))
    if plan.rtt_ms:
        print(f"origin round trip: {plan.rtt_ms:g} ms (delay line in front of nginx)")
    base = start_origin(found["nginx"], WORK / "nginx", FILES, plan.conn_rate, plan.rtt_ms)
    return base


def run_experiments(args: argparse.Namespace, plan: Plan) -> int:
    results: Path = args.results or (QUICK_RESULTS if args.quick else RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    facts = machine_facts(swarmget_exe())
    facts["swarmget package"] = command_output(
        [sys.executable, "-c", "import swarmget; print(swarmget.__file__)"]
    )
    if args.note:
        facts["note"] = args.note
    facts["bytecode"] = compile_bytecode()
    base = bring_up(plan, plan.hosts, not args.no_install)
    facts["nginx"] = command_output(["nginx", "-v"])
    facts["aria2c"] = command_output(["aria2c", "--version"])
    facts["command"] = " ".join(["bench/lan.py", *sys.argv[1:]])
    lab = Lab(plan=plan, work=WORK, files=FILES, base_url=base)
    started = time.monotonic()
    try:
        smallest = min(plan.sizes)
        lab.sha256(smallest)
        wait_origin(lab.url(smallest), smallest)
        for name in args.experiments:
            print(f"\n# {name}", flush=True)
            try:
                RUNNERS[name](lab)
            except (RuntimeError, OSError, net.NetError) as exc:  # the next one may still work
                lab.runs.append(Run(name, "experiment", "swarmget", 0, 0, error=repr(exc)))
                print(f"  {name} FAILED: {exc!r}", flush=True)
    finally:
        if not args.keep:
            net.down()
    facts["load average at end"] = load_average()
    facts["benchmark wall time"] = f"{time.monotonic() - started:.0f} s"
    write_outputs(results, plan, lab.runs, facts)
    failed = [r for r in lab.runs if not r.ok and not r.skipped]
    for r in failed:
        print(f"FAILED: {r.experiment} {r.label}: {r.error}", file=sys.stderr)
    passed = sum(1 for r in lab.runs if r.ok)
    skipped = sum(1 for r in lab.runs if r.skipped)
    tail = f", {skipped} skipped" if skipped else ""
    print(f"\nbench: {passed} passed, {len(failed)} failed{tail}")  # downloads verified or not
    return 1 if failed else 0


def markdown(plan: Plan, runs: Sequence[Run], facts: dict[str, str], results: Path) -> str:
    lines = [f"# swarmget on a namespace LAN ({plan.name} plan)", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += [
        f"- per-host cap {plan.cap_mbit:g} Mbit/s (origin → host), LAN 1 Gbit/s, "
        f"per-connection cap {plan.conn_rate / MiB:g} MiB/s on /capped/, requester "
        f"stall timeout {plan.stall_timeout:g} s, {plan.repeat} download(s) per point, "
        f"round trip to the origin {plan.rtt_ms:g} ms"
        + (" (delay line: a request waits one RTT, two after a connect)" if plan.rtt_ms else ""),
        "",
    ]
    for name in dict.fromkeys(r.experiment for r in runs):
        table = report.TABLES[name](plan, runs)
        lines += [f"## {name}", "", table or "(no successful runs)", ""]
        if results.joinpath(f"lan-{name}.png").exists():
            lines += [f"![{name}](lan-{name}.png)", ""]
    lines += ["## goals", "", report.goals_table(plan, runs), ""]
    return "\n".join(lines)


def write_outputs(
    results: Path, plan: Plan, runs: Sequence[Run], facts: dict[str, str], *, save: bool = True
) -> None:
    try:
        plots = report.write_plots(plan, runs, results)
    except ImportError:
        plots = []
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
    text = markdown(plan, runs, facts, results)
    (results / "lan.md").write_text(text)
    if save:
        doc = {"plan": asdict(plan), "machine": facts, "runs": [asdict(r) for r in runs]}
        (results / "lan.json").write_text(json.dumps(doc, indent=1) + "\n")
    print("\n" + text)
    print(f"results: {results / 'lan.md'}, {results / 'lan.json'}, {len(plots)} plot(s)")


def rewrite_report(results: Path) -> int:
    """Tables, plots and goals again from ``results/lan.json`` (after changing the report)."""
    doc = json.loads((results / "lan.json").read_text())
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in doc["plan"].items()
    }
    plan = Plan(**fields)
    runs = [Run(**r) for r in doc["runs"]]
    write_outputs(results, plan, runs, doc["machine"], save=False)
    return 0


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One lan.py at a time on this machine: each one's ``down`` would wreck the other's LAN."""
    try:
        f = LOCK.open("a")
    except OSError:  # e.g. root of a user namespace, which cannot build the LAN anyway
        yield
        return
    with f:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"another bench/lan.py still holds {LOCK}") from None
                print(f"another bench/lan.py holds {LOCK}: waiting (at most {LOCK_WAIT:.0f} s)")
                time.sleep(5)
        yield


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that tear down


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    if args.command == "report":
        return rewrite_report(args.results or (QUICK_RESULTS if args.quick else RESULTS))
    if os.geteuid() != 0:  # before the lock file, which root owns
        print("SKIP: the namespace LAN benchmark needs root (network namespaces): run with sudo")
        return 0
    with exclusive():
        if args.command == "down":
            removed = net.down() if net.namespaces() else []
            print(f"removed: {', '.join(removed) or 'nothing (already down)'}")
            return 0
        why = net.why_impossible()
        if why is not None:
            print(f"SKIP: the namespace LAN benchmark cannot run here: {why}")
            return 0
        plan = plan_for(
            args.quick, args.repeat, args.cap, args.rtt_ms, args.share_cases, args.user_subset
        )
        plan = replace(plan, user_pause=args.user_pause)
        if args.command == "up":
            return up_only(plan, args)
        return run_experiments(args, plan)


def up_only(plan: Plan, args: argparse.Namespace) -> int:
    hosts = args.hosts or plan.hosts
    ensure_test_file(FILES, 16 * MiB)
    base = bring_up(plan, hosts, not args.no_install)
    print(
        f"up: origin {base}/SIZE/payload.bin (and /capped/...), hub {net.HUB_IP}, hosts "
        f"{net.host_ip(0)}..{net.host_ip(hosts - 1)} in {net.host_ns(0)}..{net.host_ns(hosts - 1)}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        net.down()
        print("interrupted; the LAN was taken down", file=sys.stderr)
        sys.exit(130)
