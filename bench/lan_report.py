"""Tables (markdown), plots (PNG, matplotlib) and the goals' verdicts from the runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import MiB, human
from lan_experiments import Plan
from lan_share import share_goals, share_table
from lan_swarm import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIG_SIZE = (6.4, 3.4)
DPI = 90


@dataclass(frozen=True)
class Goal:
    text: str
    measured: str
    met: bool | None  # None: not measured in this run

    def line(self) -> str:
        verdict = {True: "met", False: "**NOT met**", None: "not measured"}[self.met]
        return f"| {self.text} | {self.measured} | {verdict} |"


def _ok(runs: Sequence[Run], experiment: str) -> list[Run]:
    return [r for r in runs if r.experiment == experiment and r.ok and r.wall]


def _f(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _mib_s(run: Run | None) -> str:
    return _f(run.rate / MiB if run and run.rate else None, ".2f")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu(run: Run, helpers: bool) -> float | None:
    shares = run.cpu_share()
    values = [v for k, v in shares.items() if (k != "h0") == helpers]
    return max(values) if values else None


def _cpu_cell(run: Run, helpers: bool) -> str:
    """The busiest such node's CPU share, and the kernel's part of it when recorded."""
    shares = {k: v for k, v in run.cpu_share().items() if (k != "h0") == helpers}
    if not shares:
        return "-"
    node = max(shares, key=lambda k: shares[k])
    sys_s = run.cpu_sys.get(node)
    kernel = f" (sys {sys_s / run.wall:.1%})" if sys_s is not None and run.wall else ""
    return f"{shares[node]:.1%}{kernel}"


def _lbd(run: Run) -> str:
    if run.last_byte_to_done is None or not run.wall:
        return "-"
    return f"{run.last_byte_to_done:.3f} s ({run.last_byte_to_done / run.wall:.1%})"


def _by_param(runs: Sequence[Run], key: str) -> dict[object, Run]:
    return {r.params.get(key): r for r in runs}


# --- per experiment -----------------------------------------------------------------------------


def nodes_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    mine = _ok(runs, "nodes")
    base = _by_param(mine, "n").get(1)
    if not mine:
        return None
    rows = []
    for r in sorted(mine, key=lambda r: r.nodes):
        speedup = base.wall / r.wall if base and base.wall and r.wall else None
        eff = speedup / r.nodes if speedup else None
        rows.append(
            [
                str(r.nodes),
                _f(r.wall),
                _mib_s(r),
                _f(speedup, ".2f", "x"),
                _f(eff, ".2f"),
                _lbd(r),
                _cpu_cell(r, helpers=False),
                _cpu_cell(r, helpers=True),
            ]
        )
    head = [
        "nodes",
        "total s",
        "MiB/s",
        "speedup",
        "efficiency",
        "last byte → verified",
        "requester CPU",
        "max helper CPU",
    ]
    return _table(head, rows)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def conns_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    mine = sorted(_ok(runs, "conns"), key=lambda r: r.params["c"])
    if not mine:
        return None
    host = plan.goodput(plan.cap_mbit)
    rows = []
    for r in mine:
        bound = 2 * min(r.params["c"] * plan.conn_rate, host)
        rows.append(
            [
                str(r.params["c"]),
                _f(r.wall),
                _mib_s(r),
                _f(bound / MiB),
                _f(r.rate / bound if r.rate else None, ".2f", "x"),
                _lbd(r),
            ]
        )
    head = [
        "connections per node",
        "total s",
        "MiB/s",
        "strict bound MiB/s",
        "x bound",
        "last byte → verified",
    ]
    return _table(head, rows)


def sizes_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    mine = _ok(runs, "sizes")
    if not mine:
        return None
    rows = []
    for size in sorted({r.size for r in mine}):
        alone = next((r for r in mine if r.size == size and r.nodes == 1), None)
        swarm = next((r for r in mine if r.size == size and r.nodes > 1), None)
        speedup = alone.wall / swarm.wall if alone and swarm and alone.wall and swarm.wall else None
        eff = speedup / swarm.nodes if speedup and swarm else None
        rows.append(
            [
                human(size),
                _f(alone.wall if alone else None),
                _f(swarm.wall if swarm else None),
                _f(speedup, ".2f", "x"),
                _f(eff),
                _lbd(swarm) if swarm else "-",
            ]
        )
    n = plan.size_nodes
    head = [
        "size",
        "one host s",
        f"{n} nodes s",
        "speedup",
        "efficiency",
        f"last byte → verified ({n} nodes)",
    ]
    return _table(head, rows)


def hetero_summary(plan: Plan, runs: Sequence[Run]) -> tuple[float, float] | None:
    """(aggregate bytes/s, sum of caps in bytes/s on the wire) of the heterogeneous run."""
    mine = _ok(runs, "hetero")
    if not mine or not mine[0].rate:
        return None
    run = mine[0]
    caps = run.params["caps"]
    assert run.rate is not None
    return run.rate, sum(caps) * 1e6 / 8


def hetero_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    mine = _ok(runs, "hetero")
    if not mine:
        return None
    run = mine[0]
    caps: list[float] = run.params["caps"]
    total = sum(run.received.values()) or 1
    rows = []
    for i, cap in enumerate(caps):
        got = run.received.get(f"h{i}", 0)
        rows.append(
            [
                f"h{i}" + (" (requester)" if i == 0 else ""),
                f"{cap:g}",
                f"{cap / sum(caps):.1%}",
                _f(got / MiB, ".1f"),
                f"{got / total:.1%}",
            ]
        )
    summary = hetero_summary(plan, runs)
    assert summary is not None
    rate, line = summary
    rows.append(
        [
            "**all**",
            f"{sum(caps):g}",
            "100%",
            _f(total / MiB, ".1f"),
            f"**{rate / MiB:.2f} MiB/s = {rate / line:.1%} of the sum of caps** "
            f"(TCP/IP headers leave at most {plan.goodput(1) / (1e6 / 8):.1%})",
        ]
    )
    head = ["node", "cap Mbit/s", "share of caps", "MiB received", "share of bytes"]
    return _table(head, rows)


def faults_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    mine = _ok(runs, "faults")
    if not mine:
        return None
    ref = next(
        (r for r in mine if r.nodes == plan.fault_nodes - 1 and "fault" not in r.params), None
    )
    rows = []
    for r in mine:
        ratio = r.wall / ref.wall if ref and ref.wall and r.wall else None
        fired = r.params.get("fired_at")
        note = f"signal at {fired:.0%} of the bytes" if fired is not None else ""
        if r.params.get("fault") == "hung":
            note += f"; stall timeout {plan.stall_timeout:g} s"
        rows.append([r.label, _f(r.wall), _mib_s(r), _f(ratio, ".2f", "x"), note])
    head = ["run", "total s", "MiB/s", f"x {plan.fault_nodes - 1}-node time", "note"]
    return _table(head, rows)


def baselines_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    mine = [r for r in runs if r.experiment == "baselines"]
    if not mine:
        return None
    rows = []
    for scenario in ("host cap", "connection cap"):
        group = [r for r in mine if r.params.get("scenario") == scenario]
        curl = next((r for r in group if r.tool == "curl" and r.ok), None)
        for r in group:
            x = curl.wall / r.wall if curl and curl.wall and r.ok and r.wall else None
            what = "ok" if r.ok else ("skipped: " if r.skipped else "FAILED: ") + str(r.error)
            rows.append(
                [
                    scenario,
                    r.label.rsplit(",", 1)[0],
                    human(r.size),
                    _f(r.wall if r.ok else None),
                    _mib_s(r if r.ok else None),
                    _f(x, ".2f", "x"),
                    what,
                ]
            )
    head = ["scenario", "tool", "file", "total s", "MiB/s", "x curl", "result"]
    return _table(head, rows)


UserKey = tuple[str, int, int]  # (mode, size, nodes); a fault run's mode is "node+FAULT"


def _user_medians(runs: Sequence[Run]) -> dict[UserKey, tuple[float, int]]:
    """(mode, size, n) -> (median wall of the good runs, how many were good)."""
    walls: dict[UserKey, list[float]] = {}
    for r in _ok(runs, "user"):
        fault = r.params.get("fault")
        mode = str(r.params.get("mode")) + (f"+{fault}" if fault else "")
        key = (mode, r.size, int(r.params.get("n") or r.nodes))
        walls.setdefault(key, []).append(r.wall or 0.0)
    return {k: (statistics.median(v), len(v)) for k, v in walls.items()}


def user_table(plan: Plan, runs: Sequence[Run]) -> str | None:
    """Command to verified file; ideal = curl's median time for that size / N."""
    med = _user_medians(runs)
    if not med:
        return None
    rows = []
    for (mode, size, n), (wall, count) in sorted(
        med.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])
    ):
        curl = med.get(("curl", size, 1))
        ideal = curl[0] / n if curl else None
        eff = ideal / wall if ideal else None
        over = wall - ideal if ideal is not None else None
        what = {"curl": "curl", "node": "get (node)", "hub": "get --hub"}.get(mode, mode)
        if mode.startswith("node+"):
            what = f"get (node), + 1 peer {mode.partition('+')[2]}"
        rows.append([what, human(size), str(n), f"{wall:.2f} s", _f(ideal, ".2f", " s"),
                     _f(eff, ".2f"), _f(over, "+.2f", " s"), str(count)])  # fmt: skip
    head = [
        "what",
        "size",
        "nodes",
        "median",
        "ideal (curl / N)",
        "efficiency",
        "over ideal",
        "runs",
    ]
    table = _table(head, rows)
    extra = [t for t in (timeline_table(runs), sources_table(runs)) if t is not None]
    return "\n\n".join([table, *extra])


#: the timeline's columns: (heading, what it reads from a run's timeline)
_PHASES: tuple[tuple[str, Any], ...] = (
    ("startup", lambda t: t.get("startup")),
    ("accepted", lambda t: t.get("accepted")),
    ("hub", lambda t: t.get("hub")),
    ("probe", lambda t: t.get("probe")),
    ("1st helper joined", lambda t: min(t.get("joined", {}).values(), default=None)),
    ("1st byte", lambda t: min(t.get("first_byte", {}).values(), default=None)),
    ("last source's 1st byte", lambda t: max(t.get("first_byte", {}).values(), default=None)),
    # the first source to run dry: how long the others ran on without it (the end's spread)
    ("1st source's last byte", lambda t: min(t.get("last_data", {}).values(), default=None)),
    ("last byte", lambda t: t.get("last_byte")),
    ("verified", lambda t: t.get("verified")),
    ("get's result", lambda t: t.get("result")),
)


def _median_of(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _after_result(run: Run) -> float | None:
    startup, result = run.timeline.get("startup"), run.timeline.get("result")
    if startup is None or result is None or not run.wall:
        return None
    return float(run.wall - startup - result)


def _wait_per_range(timeline: dict[str, Any]) -> float | None:
    ranges = timeline.get("ranges")
    return float(timeline.get("waited", 0.0)) / ranges if ranges else None


def timeline_table(runs: Sequence[Run]) -> str | None:
    """Where the time goes, per point of ``user`` (median of each phase over its runs):
    ``accepted`` and ``get's result`` count from the command's start, the other points
    from the node's download start (which is about ``accepted``); ``exit`` is the wall."""
    points: dict[UserKey, list[Run]] = {}
    for r in _ok(runs, "user"):
        if r.timeline and r.tool == "swarmget":
            fault = r.params.get("fault")
            mode = str(r.params.get("mode")) + (f"+{fault}" if fault else "")
            points.setdefault((mode, r.size, int(r.params.get("n") or r.nodes)), []).append(r)
    if not points:
        return None
    rows = []
    for (mode, size, n), group in sorted(
        points.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])
    ):
        cells = [_f(_median_of([read(r.timeline) for r in group]), ".3f") for _, read in _PHASES]
        peers = _median_of([r.timeline.get("hub_peers") for r in group])
        ranges = _median_of([r.timeline.get("ranges") or None for r in group])
        ahead = _median_of([r.timeline.get("ahead") for r in group])
        wait = _median_of([_wait_per_range(r.timeline) for r in group])
        exit_wall = _median_of([r.wall for r in group])
        after = _median_of([_after_result(r) for r in group])
        rows.append([mode, human(size), str(n), *cells, _f(peers, ".0f"), _f(ranges, ".0f"),
                     _f(ahead, ".0f"), _f(wait, ".3f"), _f(after, ".3f"),
                     _f(exit_wall, ".3f")])  # fmt: skip
    head = ["timeline (s)", "size", "nodes", *(h for h, _ in _PHASES), "peers listed"]
    head += ["ranges", "ahead", "wait per range", "result → exit", "exit"]
    note = (
        "Median seconds per phase. `startup`: the process's start (exec) to `get`'s code "
        "running (Python, imports); `accepted` (the node took the download, or it started "
        "here) and `get's result` count from there; `hub` ... `verified` from the download's "
        "start (on the node or in the process, ≈ `accepted`); `exit`: the wall time of the "
        "command; `result → exit` = exit - startup - get's result (shutting down, printing); "
        "`1st source's last byte`: when the first source ran dry (to `last byte`: how "
        "unevenly the sources finished); `ranges`: the ranges all sources were asked for, "
        "`ahead`: of those, asked for while a stream of the same source was about to end "
        "(pipelined: the wait overlapped its last bytes), "
        "`wait per range`: their mean wait "
        "from the request until the requester read its first bytes (a helper's includes up to "
        "~0.5 s of its stream: the requester reads helpers in bulk, SO_RCVLOWAT)."
    )
    return f"{note}\n\n{_table(head, rows)}"


def _per_source(t: dict[str, Any], received: dict[str, int]) -> dict[str, float] | None:
    """One download's sources, from its timeline: our own (the sources that did not join as
    helpers) against the helpers. None when the timeline has no per-source figures (an older
    node) or no helper delivered."""
    first, claimed = t.get("first_byte") or {}, t.get("claimed") or {}
    last_data, cut = t.get("last_data") or {}, t.get("cut") or {}
    helpers = [s for s in t.get("joined") or {} if claimed.get(s)]
    own = [s for s in claimed if s not in (t.get("joined") or {}) and claimed[s]]
    if not helpers or not own or not last_data or t.get("last_byte") is None:
        return None
    own_first = [first[s] for s in own if s in first]
    helper_first = [first[s] for s in helpers if s in first]
    if not own_first or not helper_first:
        return None
    return {
        "lag": statistics.median(helper_first) - min(own_first),
        "spread": float(t["last_byte"]) - min(last_data.values()),
        "own share": sum(claimed[s] for s in own) / statistics.mean(claimed[s] for s in helpers),
        "waste": sum(max(0, received.get(s, 0) - claimed.get(s, 0)) for s in claimed) / MiB,
        "cut ours": float(sum(cut.get(s, 0) for s in own)),
        "cut per helper": statistics.mean(cut.get(s, 0) for s in helpers),
    }


def sources_table(runs: Sequence[Run]) -> str | None:
    """Per source, for the downloads with helpers (median over each point's runs): how late
    the helpers started, how unevenly the sources ended, our own link's share of the file,
    the bytes received and not written, the streams we cut."""
    points: dict[tuple[int, int], list[dict[str, float]]] = {}
    for r in _ok(runs, "user"):
        if r.tool != "swarmget" or r.params.get("mode") != "node" or r.params.get("fault"):
            continue
        figures = _per_source(r.timeline, r.received)
        if figures is not None:
            points.setdefault((r.size, int(r.params.get("n") or r.nodes)), []).append(figures)
    if not points:
        return None
    names = ("lag", "spread", "own share", "waste", "cut ours", "cut per helper")
    formats = (".3f", ".3f", ".2f", ".2f", ".0f", ".1f")
    rows = [
        [human(size), str(n)]
        + [_f(_median_of([g[k] for g in group]), f) for k, f in zip(names, formats, strict=True)]
        for (size, n), group in sorted(points.items())
    ]
    head = ["per source: size", "nodes", "helpers' 1st byte after ours (s)"]
    head += ["1st dry → last byte (s)", "own link's share / a helper's"]
    head += ["received, not written (MiB)", "cut: ours", "cut: per helper"]
    note = (
        "Per source, median over runs: our own sources are those that did not join as "
        "helpers. A share under 1 means our own link wrote less of the file than a helper "
        "(it also carries the sampled checks); bytes received and not written are what cut "
        "streams and lost races brought in."
    )
    return f"{note}\n\n{_table(head, rows)}"


TABLES = {
    "nodes": nodes_table,
    "conns": conns_table,
    "sizes": sizes_table,
    "hetero": hetero_table,
    "faults": faults_table,
    "baselines": baselines_table,
    "share": share_table,
    "user": user_table,
}


# --- goals --------------------------------------------------------------------------------------


def goals(plan: Plan, runs: Sequence[Run]) -> list[Goal]:
    out = [_goal_efficiency(plan, runs), _goal_last_byte(plan, runs), _goal_hetero(plan, runs)]
    out += _goal_faults(plan, runs)
    out.append(_goal_cpu(runs))
    out += _goal_user(plan, runs)
    out += [Goal(text, measured, met) for text, measured, met in share_goals(plan, runs)]
    return out


def _goal_user(plan: Plan, runs: Sequence[Run]) -> list[Goal]:
    """Issue #14's goals, from the ``user`` experiment (command to verified file)."""
    med = _user_medians(runs)
    if not med:
        return []
    rtt = f"RTT {plan.rtt_ms:g} ms"
    out = []
    for size, slack, floor in ((64 * MiB, 0.25, None), (256 * MiB, None, 0.97)):
        curl = med.get(("curl", size, 1))
        mine = {n: w for (mode, sz, n), (w, _) in med.items() if mode == "node" and sz == size}
        if slack is not None:
            text = f"get {human(size)}, {rtt}: <= ideal + {slack} s for every N"
        else:
            text = f"get {human(size)}, {rtt}: efficiency >= {floor} for every N"
        if curl is None or not mine:
            out.append(Goal(text, "-", None))
            continue
        over = {n: w - curl[0] / n for n, w in mine.items()}
        effs = {n: curl[0] / n / w for n, w in mine.items()}
        cells = ", ".join(f"N={n}: {effs[n]:.2f} ({over[n]:+.2f} s)" for n in sorted(mine))
        met = (
            all(o <= slack for o in over.values())
            if slack is not None
            else all(e >= (floor or 0) for e in effs.values())
        )
        out.append(Goal(text, cells, met))
    for fault in ("black-holed", "stopped"):
        text = f"a listed peer {fault}: costs < 0.5 s ({human(plan.user_fault_size)})"
        key = (f"node+{fault}", plan.user_fault_size, plan.user_fault_nodes)
        ref = med.get(("node", plan.user_fault_size, plan.user_fault_nodes))
        if key not in med or ref is None:
            out.append(Goal(text, "-", None))
            continue
        cost = med[key][0] - ref[0]
        out.append(Goal(text, f"{cost:+.2f} s at N={plan.user_fault_nodes}", cost < 0.5))
    alone = med.get(("node", 16 * MiB, 1))
    most = max((n for (mode, sz, n) in med if mode == "node" and sz == 16 * MiB), default=None)
    text = "get 16 MiB at the most nodes >= 3x faster than alone"
    if alone is None or most is None or most == 1:
        out.append(Goal(text, "-", None))
    else:
        speedup = alone[0] / med[("node", 16 * MiB, most)][0]
        out.append(Goal(text, f"{speedup:.2f}x at N={most}", speedup >= 3))
    return out


def _goal_efficiency(plan: Plan, runs: Sequence[Run]) -> Goal:
    mine = _ok(runs, "nodes")
    base = _by_param(mine, "n").get(1)
    text = f"efficiency >= 0.90 for every N <= {plan.max_nodes} at {human(plan.size)}"
    if base is None or base.wall is None or len(mine) < 2:
        return Goal(text, "-", None)
    effs = {r.nodes: base.wall / r.wall / r.nodes for r in mine if r.wall and r.nodes > 1}
    worst = min(effs, key=lambda n: effs[n])
    below = [str(n) for n, e in sorted(effs.items()) if e < 0.9]
    measured = f"min {effs[worst]:.2f} (N={worst})" + (
        f"; below at N={','.join(below)}" if below else ""
    )
    return Goal(text, measured, not below)


def _lbd_share(run: Run) -> float:
    return (run.last_byte_to_done or 0.0) / (run.wall or 1.0)


def _goal_last_byte(plan: Plan, runs: Sequence[Run]) -> Goal:
    """Judged on the nodes experiment (the issue's setting); the worst elsewhere is noted."""
    text = f"last byte → verified file <= 2% of the total (nodes, {human(plan.size)})"
    done = [r for r in runs if r.ok and r.tool == "swarmget" and r.last_byte_to_done is not None]
    nodes = [r for r in done if r.experiment == "nodes"]
    if not nodes:
        return Goal(text, "-", None)
    worst = max(nodes, key=_lbd_share)
    measured = f"worst {_lbd_share(worst):.2%} ({worst.label})"
    elsewhere = max(done, key=_lbd_share)
    if _lbd_share(elsewhere) > 0.02 and elsewhere is not worst:
        measured += (
            f"; elsewhere up to {_lbd_share(elsewhere):.1%} "
            f"({elsewhere.experiment}: {elsewhere.label}, {elsewhere.last_byte_to_done:.3f} s)"
        )
    return Goal(text, measured, _lbd_share(worst) <= 0.02)


def _goal_hetero(plan: Plan, runs: Sequence[Run]) -> Goal:
    summary = hetero_summary(plan, runs)
    text = "heterogeneous caps: aggregate >= 90% of the sum of caps"
    if summary is None:
        return Goal(text, "-", None)
    rate, line = summary
    return Goal(
        text, f"{rate / line:.1%} ({rate / MiB:.2f} of {line / MiB:.2f} MiB/s)", rate / line >= 0.9
    )


def _goal_faults(plan: Plan, runs: Sequence[Run]) -> list[Goal]:
    mine = _ok(runs, "faults")
    ref = next((r for r in mine if r.nodes == plan.fault_nodes - 1), None)
    killed = next((r for r in mine if r.params.get("fault") == "killed"), None)
    hung = next((r for r in mine if r.params.get("fault") == "hung"), None)
    n1 = plan.fault_nodes - 1
    kill_text = f"one helper killed at 30% <= 1.15x the {n1}-node time"
    hung_text = (
        f"a hung helper costs <= the stall timeout ({plan.stall_timeout:g} s) "
        "plus redoing its work (hung - killed <= stall timeout)"
    )
    out = []
    if ref and killed and ref.wall and killed.wall:
        ratio = killed.wall / ref.wall
        out.append(
            Goal(
                kill_text, f"{ratio:.2f}x ({killed.wall:.1f} s vs {ref.wall:.1f} s)", ratio <= 1.15
            )
        )
    else:
        out.append(Goal(kill_text, "-", None))
    if killed and hung and killed.wall and hung.wall:
        extra = hung.wall - killed.wall
        out.append(
            Goal(
                hung_text,
                f"{extra:+.1f} s ({hung.wall:.1f} s vs {killed.wall:.1f} s)",
                extra <= plan.stall_timeout,
            )
        )
    else:
        out.append(Goal(hung_text, "-", None))
    return out


def _goal_cpu(runs: Sequence[Run]) -> Goal:
    """Judged on the nodes experiment; the requester and the helpers apart."""
    text = "CPU time of each node <= 5% of the download's wall time (nodes experiment)"
    mine = [r for r in runs if r.ok and r.experiment == "nodes" and r.cpu and r.wall]
    if not mine:
        return Goal(text, "-", None)
    parts, met = [], True
    for name, helpers in (("requester", False), ("helpers", True)):
        values = [(v, r) for r in mine if (v := _cpu(r, helpers)) is not None]
        if values:
            v, r = max(values, key=lambda p: p[0])
            low = min(p[0] for p in values)
            parts.append(f"{name} {low:.1%} .. {v:.1%} (worst: {r.label})")
            met = met and v <= 0.05
    return Goal(text, "; ".join(parts), met)


def goals_table(plan: Plan, runs: Sequence[Run]) -> str:
    lines = ["| goal | measured | verdict |", "|---|---|---|"]
    lines += [g.line() for g in goals(plan, runs)]
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------------


def write_plots(plan: Plan, runs: Sequence[Run], out_dir: Path) -> list[Path]:
    """One small PNG per experiment that has results; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    for name, plot in PLOTS.items():
        fig = plot(plan, runs)
        if fig is None:
            continue
        path = out_dir / f"lan-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
        import matplotlib.pyplot as plt

        plt.close(fig)
        written.append(path)
    return written


def _figure(ncols: int = 1) -> tuple[Figure, Any]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=FIG_SIZE)
    return fig, axes


def plot_nodes(plan: Plan, runs: Sequence[Run]) -> Figure | None:
    mine = sorted(_ok(runs, "nodes"), key=lambda r: r.nodes)
    base = _by_param(mine, "n").get(1)
    if base is None or base.wall is None or len(mine) < 2:
        return None
    ns = [r.nodes for r in mine]
    speed = [base.wall / (r.wall or 1) for r in mine]
    fig, (a, b) = _figure(2)
    a.plot(ns, ns, "--", color="grey", label="ideal")
    a.plot(ns, speed, "o-", label="swarmget")
    a.set(
        xlabel="nodes",
        ylabel="speedup over one host",
        title=f"{human(plan.size)}, {plan.cap_mbit:g} Mbit/s per host",
    )
    a.legend()
    b.axhline(0.9, ls="--", color="red", label="goal 0.90")
    b.plot(ns, [s / n for s, n in zip(speed, ns, strict=True)], "o-")
    b.set(xlabel="nodes", ylabel="efficiency (speedup / nodes)", ylim=(0, 1.1))
    for axis in (a, b):
        axis.set_xticks(ns)
    b.legend(loc="lower left")
    return fig


def plot_conns(plan: Plan, runs: Sequence[Run]) -> Figure | None:
    mine = sorted(_ok(runs, "conns"), key=lambda r: r.params["c"])
    if not mine:
        return None
    cs = [r.params["c"] for r in mine]
    host = plan.goodput(plan.cap_mbit)
    fig, a = _figure()
    a.plot(
        cs,
        [2 * min(c * plan.conn_rate, host) / MiB for c in cs],
        "--",
        color="grey",
        label="strict bound: 2 x min(c x per-connection cap, host cap)",
    )
    a.plot(cs, [(r.rate or 0) / MiB for r in mine], "o-", label="swarmget, 2 nodes")
    a.set_xticks(cs)
    a.set(
        xlabel="connections per node",
        ylabel="MiB/s",
        ylim=(0, None),
        title=f"{human(plan.conn_size)}, {plan.conn_rate / MiB:g} MiB/s per connection",
    )
    a.legend(loc="lower right")
    return fig


def plot_sizes(plan: Plan, runs: Sequence[Run]) -> Figure | None:
    mine = _ok(runs, "sizes")
    sizes = sorted({r.size for r in mine})
    if not sizes:
        return None
    fig, a = _figure()
    for alone, label in ((True, "one host"), (False, f"{plan.size_nodes} nodes")):
        pts = [
            (s / MiB, (r.rate or 0) / MiB)
            for s in sizes
            for r in mine
            if r.size == s and (r.nodes == 1) == alone
        ]
        a.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    a.set_xscale("log", base=2)
    a.set(
        xlabel="file size, MiB",
        ylabel="MiB/s (request to verified file)",
        ylim=(0, None),
        title=f"{plan.cap_mbit:g} Mbit/s per host",
    )
    a.legend()
    return fig


def plot_hetero(plan: Plan, runs: Sequence[Run]) -> Figure | None:
    mine = _ok(runs, "hetero")
    if not mine:
        return None
    run = mine[0]
    caps: list[float] = run.params["caps"]
    total = sum(run.received.values()) or 1
    xs = range(len(caps))
    fig, a = _figure()
    a.bar([x - 0.2 for x in xs], [c / sum(caps) for c in caps], 0.4, label="share of caps")
    a.bar(
        [x + 0.2 for x in xs],
        [run.received.get(f"h{i}", 0) / total for i in xs],
        0.4,
        label="share of bytes",
    )
    a.set_xticks(list(xs), [f"h{i}\n{c:g} Mbit/s" for i, c in enumerate(caps)])
    summary = hetero_summary(plan, runs)
    ratio = f"{summary[0] / summary[1]:.0%}" if summary else "-"
    a.set(ylabel="share", title=f"aggregate = {ratio} of the sum of caps")
    a.legend()
    return fig


def plot_faults(plan: Plan, runs: Sequence[Run]) -> Figure | None:
    mine = _ok(runs, "faults")
    if not mine:
        return None
    fig, a = _figure()
    labels = [r.label.replace(", ", "\n") for r in mine]
    a.barh(labels, [r.wall or 0 for r in mine])
    ref = next((r for r in mine if r.nodes == plan.fault_nodes - 1), None)
    if ref and ref.wall:
        goal = 1.15 * ref.wall
        a.axvline(goal, ls="--", color="red", label=f"goal: 1.15 x {ref.label} time")
        a.set_xlim(0, 1.6 * max(goal, *(r.wall or 0 for r in mine)))
        a.legend(loc="center right")
    a.invert_yaxis()
    a.set(xlabel="seconds, request to verified file", title=f"{human(plan.size)}")
    return fig


def plot_baselines(plan: Plan, runs: Sequence[Run]) -> Figure | None:
    mine = [r for r in runs if r.experiment == "baselines" and r.ok]
    if not mine:
        return None
    fig, a = _figure()
    labels = [r.label.replace(", ", "\n") for r in mine]
    a.barh(labels, [(r.rate or 0) / MiB for r in mine])
    a.invert_yaxis()
    a.tick_params(axis="y", labelsize=7)
    a.set(xlabel="MiB/s (request to verified file)", title="one host vs the swarm")
    return fig


PLOTS = {
    "nodes": plot_nodes,
    "conns": plot_conns,
    "sizes": plot_sizes,
    "hetero": plot_hetero,
    "faults": plot_faults,
    "baselines": plot_baselines,
}
