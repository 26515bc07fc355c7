"""``share``: the same file, many requesters (fetch once per LAN, issue #15).

Every download is ``swarmget get URL -o FILE --checksum sha256:...`` handed to the node running
in the requester's namespace, timed from the command to its exit with the verified file (and
checked again here: size and sha256). The cases, on ``share_hosts`` hosts (8 in the full plan):

``lone``      one requester, the others as helpers, sharing off (today's product: T1 at
              ``share_size``) and on (``--share-downloads`` on every node: its origin link
              works only on what the group grants it), at each of ``share_lone_sizes``
``at once``   every host requests the same file within a second, without and with sharing
``2nd``       a second requester after the first finished (the first holds the file)
``2nd sampled`` (case ``sampled``, 4 hosts or more) one more later requester (the last
              host), without ``--checksum``: holder streams are then sampled against the
              origin (``--verify-sample``, 1 %)
``holder gone`` a third requester while two hold it; one holder SIGKILLed when the
              requester has ``share_holder_kill_at`` of the file (its ``eth0`` rx counter)
``killed``    every host at once with sharing; the first requester's node SIGKILLed when h1
              has ``share_kill_at`` of the file; the others must still finish, correctly
``at once on, N slots`` (full plan) the same with ``--slots N`` on every node (default 3):
              LAN holder streams share a node's slots with helper streams
``origin``    (full plan) curl from one host: the time "from the origin" the 2nd is held to

Per case: origin bytes per host (the origin's HTB class counters: bytes on the wire, headers
included), LAN bytes per host (the host's ``eth0`` rx minus what the origin sent it), the
result's own ``sharing`` report and timeline. Each sharing case uses a URL of its own (a
symlink to the same test file: another content for the hub's index), so no holder is left
over from an earlier case unless the case wants one. Files stay until their swarm ends (a
holder serves from its download directory). Timings are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import lan_net as net
from common import MiB, ensure_test_file, human, load_average, sha256_of
from lan_swarm import NodeOptions, Run, Swarm, cli_command, cpu_seconds, wait_for_helpers

if TYPE_CHECKING:
    from lan_experiments import Lab, Plan

EXPERIMENT = "share"
SHARE_FLAGS = ("--share-downloads",)  # the cache budget stays the default (4 GiB)
GOODPUT = 1448 / 1514  # TCP payload per byte on the wire (as lan_experiments.GOODPUT)
WATCH_EVERY = 0.05  # seconds between two looks at a fault's trigger counter


@dataclass
class Fault:
    """SIGKILL ``pid`` once host ``watch``'s eth0 has received ``at`` x the file."""

    pid: int
    watch: int
    at: float
    victim: str
    fired: float | None = None  # seconds from the group's start
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Get:
    host: int
    proc: subprocess.Popen[str]
    t0: float
    out_path: str
    wall: float | None = None
    stdout: str = ""
    stderr: str = ""


def rx_bytes(host: int) -> int:
    """Bytes host ``host``'s eth0 received so far."""
    out = net.sh(["ip", "-n", net.host_ns(host), "-s", "-j", "link", "show", "eth0"])
    return int(json.loads(out)[0]["stats64"]["rx"]["bytes"])


def _counters(hosts: Sequence[int]) -> dict[int, tuple[int, int]]:
    """host -> (origin bytes sent to it on the wire, its eth0 rx bytes)."""
    origin = net.origin_bytes_sent()
    return {h: (origin.get(net.host_ip(h), 0), rx_bytes(h)) for h in hosts}


def _cpu(swarm: Swarm) -> dict[str, float]:
    """CPU seconds so far of every node, the hub and our reaped children (the ``get``s)."""
    out = {f"h{h}": cpu_seconds(n.pid) for h, n in swarm.nodes.items()}
    out["hub"] = cpu_seconds(swarm.hub.pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["gets"] = children.ru_utime + children.ru_stime
    return {k: v for k, v in out.items() if v is not None}


def _log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def body_bytes(log: Path, offset: int) -> dict[str, int]:
    """Response body bytes nginx logged per client address after ``offset`` (the combined
    format: ``ADDR - - [DATE ZONE] "METHOD PATH PROTO" STATUS BYTES ...``)."""
    out: dict[str, int] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for line in f.read().decode(errors="replace").splitlines():
            words = line.split()
            if len(words) > 9 and words[9].isdigit():
                out[words[0]] = out.get(words[0], 0) + int(words[9])
    return out


def alias_url(lab: Lab, size: int, tag: str) -> str:
    """Another URL for the test file of ``size`` (a symlink beside it): another content."""
    path = ensure_test_file(lab.files, size)
    link = path.with_name(f"share-{tag}.bin")
    if not link.is_symlink():
        link.symlink_to(path.name)
    return f"{lab.base_url}/{size}/{link.name}"


def _watch(fault: Fault, size: int, t0: float, deadline: float) -> None:
    base = rx_bytes(fault.watch)
    while not fault.stop.is_set() and time.monotonic() < deadline:
        if rx_bytes(fault.watch) - base >= fault.at * size:
            with contextlib.suppress(ProcessLookupError):
                os.kill(fault.pid, signal.SIGKILL)
            fault.fired = time.monotonic() - t0
            return
        fault.stop.wait(WATCH_EVERY)


def _wait(get: _Get, timeout: float) -> None:
    try:
        get.stdout, get.stderr = get.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        net.end_processes([get.proc.pid], grace=2)
        get.stdout, get.stderr = get.proc.communicate()
        get.stderr += f"\ntimed out after {timeout:.0f}s"
        return
    get.wall = time.monotonic() - get.t0


def run_gets(
    lab: Lab,
    swarm: Swarm,
    case: str,
    requesters: Sequence[int],
    *,
    url: str,
    size: int,
    sharing: bool,
    fault: Fault | None = None,
    checksum: bool = True,
) -> list[Run]:
    """``swarmget get`` on every host of ``requesters`` at once (one after the other as fast
    as processes start); one ``Run`` per requester, each with the group's byte counts.
    ``checksum=False``: no ``--checksum`` (the harness still checks the sha256 after)."""
    sha = lab.sha256(size)
    hosts = sorted(swarm.nodes)
    timeout = lab.timeout(size, lab.plan.goodput(lab.plan.cap_mbit))
    load = load_average()
    before = _counters(hosts)
    cpu0 = _cpu(swarm)
    log = lab.work / "nginx" / "access.log"  # where lan_swarm.start_origin has nginx log
    log_at = _log_size(log)
    gets: list[_Get] = []
    start = time.monotonic()
    for i in requesters:
        node = swarm.nodes[i]
        out = node.download_dir / f"share-{case}-h{i}.bin".replace(" ", "_")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        cmd = cli_command(swarm, i, "node", url, sha if checksum else None, out)
        proc = subprocess.Popen(
            net.in_ns(node.ns, cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        gets.append(_Get(i, proc, time.monotonic(), str(out)))
    waiters = [threading.Thread(target=_wait, args=(g, timeout), daemon=True) for g in gets]
    if fault is not None:
        waiters.append(
            threading.Thread(target=_watch, args=(fault, size, start, start + timeout), daemon=True)
        )
    for t in waiters:
        t.start()
    for t in waiters[: len(gets)]:
        t.join()
    if fault is not None:
        fault.stop.set()
        waiters[-1].join()
    after = _counters([h for h in hosts if h in before])
    cpu = {k: round(c - cpu0[k], 2) for k, c in _cpu(swarm).items() if k in cpu0}
    time.sleep(0.2)  # nginx logs a cancelled stream when its connection closes
    wire = {f"h{h}": after[h][0] - before[h][0] for h in after}
    lan = {f"h{h}": max(0, after[h][1] - before[h][1] - wire[f"h{h}"]) for h in after}
    if lab.plan.rtt_ms:  # nginx sees the delay line's address: the wire counters' payload
        origin = {h: round(b * GOODPUT) for h, b in wire.items()}
    else:
        logged = body_bytes(log, log_at)
        origin = {f"h{h}": logged.get(net.host_ip(h), 0) for h in after}
    runs = []
    for g in gets:
        run = Run(EXPERIMENT, f"{case} h{g.host}", "swarmget", len(hosts), size)
        run.params = {
            "sha256": sha,
            "case": case,
            "sharing": sharing,
            "checksum": checksum,
            "requester": f"h{g.host}",
            "requesters": len(requesters),
            "started_at": round(g.t0 - start, 3),
            "origin_bytes": origin,  # response bodies (nginx's log)
            "origin_wire_bytes": wire,  # headers included (the origin's HTB counters)
            "lan_bytes": lan,
            "load": load,
            "rtt_ms": lab.plan.rtt_ms,
            # CPU seconds during the case: each node, the hub, every `get` process together
            "cpu": cpu,
        }
        if fault is not None:
            run.params.update(fault=fault.victim, fault_at=fault.at, fired_at=fault.fired)
        killed = fault is not None and fault.fired is not None and fault.victim == f"h{g.host}"
        _fill(run, g, victim=killed)
        lab._record(run)
        runs.append(run)
    return runs


def _fill(run: Run, get: _Get, *, victim: bool) -> None:
    """Time, timeline and sharing report from ``get --json``; the file checked (kept)."""
    run.wall = get.wall
    if get.proc.returncode != 0 or get.wall is None:
        run.error = f"exit {get.proc.returncode}: {get.stderr.strip()[-300:]}"
        if victim:  # its node was killed on purpose (the fault fired): not a failure
            run.skipped, run.error = True, f"its node was killed (the fault): {run.error}"
        return
    try:
        data = json.loads(get.stdout)
        run.timeline = {**data.get("timeline", {}), **(data.get("command_timeline") or {})}
        run.elapsed = float(data["elapsed"])
        run.last_byte_to_done = float(data["last_byte_to_done"])
        run.params["report"] = data.get("sharing")
        run.params["sources"] = data.get("sources")  # received vs claimed, per source
    except (ValueError, KeyError, TypeError) as exc:
        run.events.append(f"no result in get --json: {exc}")
    path = Path(get.out_path)
    try:
        run.ok = path.stat().st_size == run.size and sha256_of(path) == run.params["sha256"]
    except OSError as exc:
        run.error = f"cannot read the output: {exc}"
        return
    if not run.ok:
        run.error = "sha256 mismatch"


def _ready(swarm: Swarm) -> None:
    """Every node sees every other one (all registered with the hub)."""
    hosts = sorted(swarm.nodes)
    for h in hosts:
        wait_for_helpers(swarm, h, [o for o in hosts if o != h], limit=60.0)


def _clean(swarm: Swarm) -> None:
    for node in swarm.nodes.values():
        shutil.rmtree(node.download_dir, ignore_errors=True)


def _swarm(lab: Lab, n: int, options: NodeOptions) -> AbstractContextManager[Swarm]:
    """``lab.swarm`` with no state left from an earlier run in its directory: a node would
    resume a download its journal kept (one of ours whose node was killed) into the same
    output name as this run's."""
    shutil.rmtree(lab.work / f"swarm{lab._swarms + 1}", ignore_errors=True)
    return lab.swarm(n, options)


#: the cases ``--share-cases`` may pick (see the module docstring)
CASES = ("lone", "off", "2nd", "sampled", "group", "gone", "wide", "killed", "origin")


def exp_share(lab: Lab) -> None:
    plan = lab.plan
    n, size = plan.share_hosts, plan.share_size
    everyone = list(range(n))
    lone_sizes = list(dict.fromkeys((*plan.share_lone_sizes, size)))
    base = NodeOptions(stall_timeout=plan.stall_timeout)
    shared = NodeOptions(stall_timeout=plan.stall_timeout, extra=SHARE_FLAGS)
    cases = set(CASES) if plan.share_cases is None else set(plan.share_cases)
    if cases & {"2nd", "sampled", "gone"}:  # they need h0 to hold the file
        cases.add("lone")
    if cases & {"lone", "off"}:  # today's product: no sharing
        with _swarm(lab, n, base) as swarm:
            _ready(swarm)
            try:
                for s in lone_sizes if "lone" in cases else []:
                    run_gets(lab, swarm, f"lone {human(s)} off", [0], url=lab.url(s), size=s,
                             sharing=False)  # fmt: skip
                if "off" in cases:
                    run_gets(lab, swarm, "at once off", everyone,
                             url=alias_url(lab, size, "off"), size=size, sharing=False)  # fmt: skip
            finally:
                _clean(swarm)
    if cases & {"lone", "2nd", "sampled", "group", "gone"}:
        with _swarm(lab, n, shared) as swarm:
            _ready(swarm)
            try:
                for s in lone_sizes if "lone" in cases else []:
                    run_gets(lab, swarm, f"lone {human(s)} on", [0],
                             url=alias_url(lab, s, "lone"), size=s, sharing=True)  # fmt: skip
                held = alias_url(lab, size, "lone")  # h0 holds it now
                if "2nd" in cases:
                    run_gets(lab, swarm, "2nd", [1], url=held, size=size, sharing=True)
                if "group" in cases:
                    group = alias_url(lab, size, "group")
                    run_gets(lab, swarm, "at once on", everyone, url=group, size=size,
                             sharing=True)  # fmt: skip
                if "gone" in cases:
                    gone = Fault(swarm.nodes[1].pid, 2, plan.share_holder_kill_at, "h1")
                    run_gets(lab, swarm, "holder gone", [2], url=held, size=size, sharing=True,
                             fault=gone)  # fmt: skip
                if "sampled" in cases and n > 3:  # h3..: holds nothing of it yet
                    # no whole-file digest: holder streams are sampled against the origin
                    run_gets(lab, swarm, "2nd sampled", [n - 1], url=held, size=size,
                             sharing=True, checksum=False)  # fmt: skip
            finally:
                _clean(swarm)
    if plan.share_wide_slots and "wide" in cases:  # the holders' slots (shared with helpers)
        wide = NodeOptions(
            stall_timeout=plan.stall_timeout, slots=plan.share_wide_slots, extra=SHARE_FLAGS
        )
        with _swarm(lab, n, wide) as swarm:
            _ready(swarm)
            try:
                run_gets(lab, swarm, f"at once on, {plan.share_wide_slots} slots", everyone,
                         url=alias_url(lab, size, "wide"), size=size, sharing=True)  # fmt: skip
            finally:
                _clean(swarm)
    if "killed" in cases:
        with _swarm(lab, n, shared) as swarm:
            _ready(swarm)
            try:
                # watched on h1 (a survivor): h0's own counter stalls if its download fails
                killed = Fault(swarm.nodes[0].pid, 1, plan.share_kill_at, "h0")
                run_gets(lab, swarm, "killed", everyone, url=alias_url(lab, size, "kill"),
                         size=size, sharing=True, fault=killed)  # fmt: skip
            finally:
                _clean(swarm)
    if plan.share_origin_ref and "origin" in cases:
        run = lab.tool(EXPERIMENT, "curl", "origin", size)
        run.params.update(case="origin", load=load_average())


# --- report -------------------------------------------------------------------------------------


def _cases(runs: Sequence[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for r in runs:
        if r.experiment == EXPERIMENT and "case" in r.params:
            out.setdefault(str(r.params["case"]), []).append(r)
    return out


def _walls(runs: Sequence[Run]) -> list[float]:
    return [r.wall for r in runs if r.ok and r.wall is not None]


def _t1(cases: dict[str, list[Run]], size: int) -> float | None:
    walls = _walls(cases.get(f"lone {human(size)} off", []))
    return walls[0] if walls else None


def _origin_ref(cases: dict[str, list[Run]], cap_bytes_s: float, size: int) -> tuple[float, str]:
    walls = _walls(cases.get("origin", []))
    if walls:
        return walls[0], "curl, measured"
    return size / cap_bytes_s, "size / link goodput"


def share_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    cases = _cases(runs)
    if not cases:
        return None
    t1 = _t1(cases, plan.share_size)
    head = "| case | requesters | verified | time per requester, s | slowest × T1 "
    head += "| origin Σ (× size) | received by members | cut by members | CPU s "
    head += "| LAN Σ (× size) | load |\n|---|---|---|---|---|---|---|---|---|---|---|"
    lines = [head]
    for case, rs in cases.items():
        walls = _walls(rs)
        good = sum(1 for r in rs if r.ok)
        spread = f"{min(walls):.2f}–{max(walls):.2f}" if len(walls) > 1 else _s(walls)
        ratio = f"{max(walls) / t1:.2f}" if walls and t1 else "-"
        origin = sum(rs[0].params.get("origin_bytes", {}).values()) / rs[0].size
        lan = sum(rs[0].params.get("lan_bytes", {}).values()) / rs[0].size
        skipped = sum(1 for r in rs if r.skipped)
        note = f" (+{skipped} killed)" if skipped else ""
        lines.append(
            f"| {case} ({human(rs[0].size)}) | {len(rs)} | {good}/{len(rs) - skipped}{note} "
            f"| {spread} | {ratio} | {origin:.3f} | {_members(rs)} "
            f"| {lan:.2f} | {rs[0].params.get('load', '')} |"
        )
    return "\n".join(lines) + "\n\n" + _per_host(cases) + "\n\n" + _timelines(cases)


def _members(rs: Sequence[Run]) -> str:
    """What the requesters' own sharing reports say: origin bytes their links received
    (× size), origin streams they cut short (``origin_cuts``), and the CPU seconds of
    every node, the hub and the ``get``s together."""
    reports = [r.params["report"] for r in rs if isinstance(r.params.get("report"), dict)]
    got = sum(int(x.get("origin_bytes", 0)) for x in reports) / rs[0].size
    counted = [int(x["origin_cuts"]) for x in reports if "origin_cuts" in x]
    cuts = str(sum(counted)) if counted else "-"  # (a node from before they were counted)
    cpu = rs[0].params.get("cpu") or {}
    return f"{got:.3f} | {cuts} | {sum(cpu.values()):.1f}"


def _s(walls: Sequence[float]) -> str:
    return f"{walls[0]:.2f}" if walls else "-"


def _per_host(cases: dict[str, list[Run]]) -> str:
    hosts = sorted({h for rs in cases.values() for h in rs[0].params.get("origin_bytes", {})})
    lines = ["origin MiB per host (LAN MiB received) per case:", ""]
    lines.append("| case | " + " | ".join(hosts) + " |")
    lines.append("|---" * (len(hosts) + 1) + "|")
    for case, rs in cases.items():
        o, lan = rs[0].params.get("origin_bytes", {}), rs[0].params.get("lan_bytes", {})
        if not o:
            continue
        cells = [f"{o.get(h, 0) / MiB:.1f} ({lan.get(h, 0) / MiB:.0f})" for h in hosts]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _first(value: object) -> float | None:
    if isinstance(value, dict):
        vals = [float(v) for v in value.values() if v is not None]
        return min(vals) if vals else None
    return float(value) if isinstance(value, int | float) else None


def _timelines(cases: dict[str, list[Run]]) -> str:
    """Where the time goes: the node's points (s from its download start) and the command."""
    keys = ("accepted", "probe", "joined", "first_byte", "last_byte", "verified", "result")
    lines = ["timeline per requester (seconds; node points from its download start, "
             "accepted/result from the command's start):", ""]  # fmt: skip
    lines.append("| case | requester | started at | " + " | ".join(keys) + " | wall |")
    lines.append("|---" * (len(keys) + 4) + "|")
    for case, rs in cases.items():
        for r in rs:
            if not r.timeline and r.wall is None:
                continue
            cells = []
            for k in keys:
                v = _first(r.timeline.get(k))
                cells.append("-" if v is None else f"{v:.2f}")
            wall = "-" if r.wall is None else f"{r.wall:.2f}"
            start = r.params.get("started_at", "-")
            lines.append(
                f"| {case} | {r.params.get('requester', '-')} | {start} | "
                + " | ".join(cells)
                + f" | {wall}{'' if r.ok else ' ✗'} |"
            )
    return "\n".join(lines)


def share_goals(plan: Plan, runs: Sequence[Run]) -> list[tuple[str, str, bool | None]]:
    """Issue #15's goals as (goal, measured, met); nothing when ``share`` did not run."""
    cases = _cases(runs)
    if not cases:
        return []
    size = plan.share_size
    t1 = _t1(cases, size)
    out: list[tuple[str, str, bool | None]] = []
    group = cases.get("at once on", [])
    walls = _walls(group)
    if group and t1 and len(walls) == len(group):
        worst = max(walls) / t1
        out.append((f"{len(group)} at once, sharing: all within 1.25 × T1 ({t1:.2f} s)",
                    f"slowest {max(walls):.2f} s = {worst:.2f} × T1", worst <= 1.25))  # fmt: skip
    elif group:
        out.append(("at once, sharing: all within 1.25 × T1", "not all verified", False))
    if group:
        origin = sum(group[0].params["origin_bytes"].values()) / size
        out.append(("at once, sharing: origin bytes Σ ≤ 1.05 × size", f"{origin:.3f} ×",
                    origin <= 1.05))  # fmt: skip
    for case, how_checked in (("2nd", "--checksum"), ("2nd sampled", "sampled")):
        second = cases.get(case, [])
        if not (second and _walls(second)):
            continue
        ref, how = _origin_ref(cases, plan.goodput(plan.cap_mbit), size)
        speed = ref / _walls(second)[0]
        origin = sum(second[0].params["origin_bytes"].values()) / size
        out.append((f"2nd requester ({how_checked}) ≥ 10× faster than from the origin "
                    f"({ref:.1f} s, {how})",
                    f"{_walls(second)[0]:.2f} s = {speed:.1f}×", speed >= 10))  # fmt: skip
        out.append((f"2nd requester ({how_checked}): origin bytes ≤ 1 % of the file",
                    f"{origin:.2%}", origin <= 0.01))  # fmt: skip
    for case, what in (("killed", "first requester killed"), ("holder gone", "holder gone")):
        rs = cases.get(case, [])
        alive = [r for r in rs if not r.skipped]
        if rs:
            origin = sum(rs[0].params["origin_bytes"].values()) / size
            fired = rs[0].params.get("fired_at")
            when = "not fired" if fired is None else f"fired at {fired:.2f} s"
            out.append((f"{what}: the others finish, verified, no restart from zero",
                        f"{sum(r.ok for r in alive)}/{len(alive)} verified, origin Σ "
                        f"{origin:.3f} ×, {when}",
                        all(r.ok for r in alive) and fired is not None))  # fmt: skip
    for s in plan.share_lone_sizes:
        off, on = (
            _walls(cases.get(f"lone {human(s)} off", [])),
            _walls(cases.get(f"lone {human(s)} on", [])),
        )
        if off and on:
            out.append((f"lone requester {human(s)}: sharing on costs ≤ 10 %",
                        f"{on[0]:.2f} s vs {off[0]:.2f} s ({on[0] / off[0]:.2f} ×)",
                        on[0] <= 1.1 * off[0]))  # fmt: skip
    return out
