"""Single-host benchmark: ``swarmget get`` against ``curl`` on loopback, same origin, same run.

What it measures
    The wall time (process start to exit) of downloading one local file of random bytes
    (default 1 GiB) over 127.0.0.1, unthrottled, from a private nginx instance (Debian's
    nginx, ``sendfile on``; it serves Range and ETag natively), with

    * ``curl -s -o OUT URL``                                   (the baseline)
    * ``swarmget get URL -o OUT --json --connections 4``       (the default)
    * ``swarmget get URL -o OUT --json --connections 1``       (one stream, the extra row)

    Each tool runs ``--repeat`` times (order rotated every round), each time into a fresh
    directory on the same filesystem as the source file, with ``sync`` before the timed part
    and the output deleted after. Every output's sha256 is checked against the source outside
    the timed part. The report is the median wall time, the rate in MiB/s, the ratio of each
    swarmget row's rate to curl's (goal: >= 0.9), the CPU seconds (user + system) each tool
    used, the tools' own timings (curl's ``time_total``; swarmget's ``elapsed``, which leaves
    out interpreter start-up) and swarmget's ``last_byte_to_done``. Other load on the machine
    skews the numbers: the load average is printed, with a warning when it was >= 0.5.

    If nginx is not installed the script installs it (``apt-get install nginx-light``, as root);
    if that is impossible it falls back to swarmget's own test origin
    (``python -m swarmget.testing.origin --real-file``) and says so in the report.

How to run it
    make bench-single                                    # 1 GiB, 3 repeats
    .venv/bin/python bench/single_host.py --quick        # 64 MiB, 1 repeat: correctness only
    .venv/bin/python bench/single_host.py --size 4G --repeat 5 --connections 8

    The test file is generated once and cached in ``--cache-dir`` (default
    ``/tmp/swarmget-bench``). Results go to stdout (a markdown table) and to
    ``bench/out/single_host.json``. The exit code is 0 when every output verified, 1 if one did
    not (or a tool failed); the timing goal is reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from common import (
    FILE_NAME,
    GiB,
    MiB,
    command_output,
    compile_bytecode,
    ensure_test_file,
    find_or_install_nginx,
    human,
    load_average,
    machine_facts,
    nginx_config,
    parse_size,
    sha256_of,
    stop_process,
    swarmget_exe,
)

GOAL_RATIO = 0.9
BUSY_LOAD = 0.5  # 1-minute load average above which the report warns
QUICK_SIZE = 64 * MiB
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
READY_TIMEOUT = 15.0
MIN_RUN_TIMEOUT = 120.0
SLOWEST_RATE = 5 * MiB  # a run slower than this (bytes/s) is killed as hung


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One row of the table: a label and how to build its command line."""

    label: str
    kind: str  # "curl" | "swarmget"
    connections: int | None = None

    def command(self, url: str, out: Path, swarmget: Path) -> list[str]:
        if self.kind == "curl":
            fmt = '{"time_total": %{time_total}, "http_code": %{http_code}}'
            return ["curl", "-s", "-f", "-o", str(out), "-w", fmt, url]
        return [
            str(swarmget),
            "get",
            url,
            "-o",
            str(out),
            "--json",
            "--connections",
            str(self.connections),
        ]


@dataclass
class Run:
    """One timed download and what was checked afterwards."""

    tool: str
    round: int
    wall: float
    exit_code: int
    verified: bool
    cpu: float | None = None  # user + system seconds of the tool's process tree
    tool_elapsed: float | None = None  # curl's time_total, swarmget's elapsed
    last_byte_to_done: float | None = None  # swarmget only
    mode: str | None = None  # swarmget only
    error: str | None = None


@dataclass
class Summary:
    tool: str
    command: str
    runs: int
    ok_runs: int
    median_wall: float | None
    min_wall: float | None
    max_wall: float | None
    rate_mib_s: float | None
    ratio_vs_curl: float | None
    median_cpu: float | None
    median_tool_elapsed: float | None
    median_last_byte_to_done: float | None


@dataclass
class Origin:
    kind: str  # "nginx" | "swarmget-test-origin"
    url: str
    version: str
    note: str = ""
    pid: int = 0
    extra: dict[str, str] = field(default_factory=dict)


# --- small helpers ------------------------------------------------------------------------------


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_machine(facts: dict[str, str]) -> bool:
    """True when the 1-minute load average before the run was already >= 0.5."""
    first = facts.get("load average at start", "").split()[:1]
    with contextlib.suppress(ValueError):
        return bool(first) and float(first[0]) >= BUSY_LOAD
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the origin ---------------------------------------------------------------------------------


def wait_ready(url: str, proc: subprocess.Popen[bytes], size: int) -> None:
    """Poll with HEAD until the origin answers 200 with the right length; raise if it dies."""
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"origin exited early with code {proc.returncode}")
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=2) as resp:
                length = int(resp.headers.get("Content-Length", -1))
                if resp.status == 200 and length == size:
                    return
                last = RuntimeError(f"HEAD: status {resp.status}, length {length}")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"origin not ready after {READY_TIMEOUT}s: {last}")


def start_nginx(
    nginx: str, run_dir: Path, data: Path, workers: int
) -> tuple[subprocess.Popen[bytes], Origin]:
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(nginx_config(run_dir, data.parent, f"127.0.0.1:{port}", workers))
    cmd = [nginx, "-p", str(run_dir), "-e", str(run_dir / "error.log"), "-c", str(conf)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    origin = Origin(
        kind="nginx",
        url=f"http://127.0.0.1:{port}/{data.name}",
        version=command_output([nginx, "-v"]),
        pid=proc.pid,
        extra={"config": str(conf), "workers": str(workers)},
    )
    return proc, origin


def start_test_origin(data: Path, note: str) -> tuple[subprocess.Popen[bytes], Origin]:
    cmd = [sys.executable, "-m", "swarmget.testing.origin"]
    cmd += ["--port", "0", "--real-file", f"{data.name}={data}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    try:
        base_url = json.loads(line)["base_url"]
    except (ValueError, KeyError) as exc:
        stop_process(proc)
        raise RuntimeError(f"the test origin did not announce itself: {line!r}") from exc
    origin = Origin(
        kind="swarmget-test-origin",
        url=f"{base_url.rstrip('/')}/files/{data.name}",
        version="swarmget.testing.origin",
        note=note,
        pid=proc.pid,
    )
    return proc, origin


@contextlib.contextmanager
def running_origin(
    data: Path, size: int, *, use_nginx: bool, allow_install: bool, workers: int
) -> Iterator[Origin]:
    """A private origin serving ``data``; always stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="swarmget-bench-origin-") as tmp:
        nginx = find_or_install_nginx(allow_install) if use_nginx else None
        if nginx is not None:
            proc, origin = start_nginx(nginx, Path(tmp), data, workers)
        else:
            why = "nginx disabled by --origin builtin" if use_nginx is False else "no nginx"
            note = f"FALLBACK: {why}; serving with swarmget's own test origin (aiohttp)"
            proc, origin = start_test_origin(data, note)
        try:
            wait_ready(origin.url, proc, size)
            yield origin
        finally:
            stop_process(proc)


# --- running the tools --------------------------------------------------------------------------


def parse_tool_json(tool: Tool, stdout: str, run: Run) -> None:
    """Fill ``run`` with what the tool said about itself on stdout."""
    text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    try:
        info: dict[str, Any] = json.loads(text)
    except ValueError:
        run.error = run.error or f"no JSON on stdout: {stdout[-200:]!r}"
        return
    if tool.kind == "curl":
        run.tool_elapsed = float(info["time_total"])
        return
    if not info.get("ok"):
        run.error = f"{info.get('error')}: {info.get('message')}"
        return
    run.tool_elapsed = float(info["elapsed"])
    run.last_byte_to_done = float(info["last_byte_to_done"])
    run.mode = str(info["mode"])


def run_once(tool: Tool, url: str, work: Path, expected: str, rnd: int, size: int) -> Run:
    """One timed download into a fresh directory under ``work``; verified, then deleted."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{tool.kind}-", dir=work))
    out = run_dir / FILE_NAME
    cmd = tool.command(url, out, swarmget_exe())
    timeout = max(MIN_RUN_TIMEOUT, size / SLOWEST_RATE)
    try:
        os.sync()  # earlier runs' dirty pages are not written back on this run's clock
        cpu0, t0 = children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
        run = Run(tool.label, rnd, wall, proc.returncode, verified=False, cpu=cpu)
        if proc.returncode != 0:
            run.error = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
        parse_tool_json(tool, proc.stdout, run)
        if out.exists():
            run.verified = sha256_of(out) == expected
            if not run.verified:
                run.error = run.error or "sha256 mismatch"
        else:
            run.error = run.error or "no output file"
        return run
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_all(
    tools: Sequence[Tool], url: str, work: Path, expected: str, repeat: int, size: int
) -> list[Run]:
    """``repeat`` rounds; each round runs every tool once, the order rotated by one each round."""
    runs: list[Run] = []
    for rnd in range(repeat):
        shift = rnd % len(tools)
        for tool in [*tools[shift:], *tools[:shift]]:
            run = run_once(tool, url, work, expected, rnd, size)
            status = "ok" if run.verified and run.error is None else f"FAILED ({run.error})"
            rate = size / MiB / run.wall
            print(
                f"  round {rnd + 1}: {tool.label:<14} {run.wall:7.3f} s {rate:8.1f} MiB/s", status
            )
            runs.append(run)
    return runs


# --- the report ---------------------------------------------------------------------------------


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(tools: Sequence[Tool], runs: Sequence[Run], size: int, url: str) -> list[Summary]:
    out: list[Summary] = []
    for tool in tools:
        mine = [r for r in runs if r.tool == tool.label]
        ok = [r for r in mine if r.verified and r.error is None]
        walls = [r.wall for r in ok]
        med = statistics.median(walls) if walls else None
        command = " ".join(tool.command(url, Path("OUT"), Path("swarmget")))
        out.append(
            Summary(
                tool=tool.label,
                command=command,
                runs=len(mine),
                ok_runs=len(ok),
                median_wall=med,
                min_wall=min(walls) if walls else None,
                max_wall=max(walls) if walls else None,
                rate_mib_s=size / MiB / med if med else None,
                ratio_vs_curl=None,
                median_cpu=median_or_none([r.cpu for r in ok]),
                median_tool_elapsed=median_or_none([r.tool_elapsed for r in ok]),
                median_last_byte_to_done=median_or_none([r.last_byte_to_done for r in ok]),
            )
        )
    curl = next((s for s in out if s.tool == "curl"), None)
    for s in out:
        if curl is not None and curl.rate_mib_s and s.rate_mib_s:
            s.ratio_vs_curl = s.rate_mib_s / curl.rate_mib_s
    return out


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(summaries: Sequence[Summary]) -> str:
    head = (
        "| tool | ok/runs | median wall s | min-max s | MiB/s | x curl | CPU s "
        "| tool's own s | last_byte_to_done s |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        spread = f"{fmt(s.min_wall, '.3f')}-{fmt(s.max_wall, '.3f')}"
        lines.append(
            f"| {s.tool} | {s.ok_runs}/{s.runs} | {fmt(s.median_wall, '.3f')} | {spread} "
            f"| {fmt(s.rate_mib_s, '.1f')} | {fmt(s.ratio_vs_curl, '.2f')} "
            f"| {fmt(s.median_cpu, '.2f')} "
            f"| {fmt(s.median_tool_elapsed, '.3f')} | {fmt(s.median_last_byte_to_done, '.4f')} |"
        )
    return "\n".join(lines)


def goal_lines(summaries: Sequence[Summary]) -> list[str]:
    lines = []
    for s in summaries:
        if s.tool.startswith("swarmget") and s.ratio_vs_curl is not None:
            verdict = "met" if s.ratio_vs_curl >= GOAL_RATIO else "NOT met"
            lines.append(f"goal {s.tool} >= {GOAL_RATIO}x curl: {verdict} ({s.ratio_vs_curl:.2f}x)")
    return lines


def print_report(
    facts: dict[str, str],
    origin: Origin,
    size: int,
    repeat: int,
    summaries: Sequence[Summary],
) -> None:
    print()
    print(f"## single-host benchmark: {human(size)} on loopback, {repeat} repeat(s), unthrottled")
    print()
    for key, value in facts.items():
        print(f"- {key}: {value}")
    print(f"- origin: {origin.kind} ({origin.version}) at {origin.url}")
    if origin.note:
        print(f"- **{origin.note}**")
    print()
    print(markdown_table(summaries))
    print()
    for s in summaries:
        print(f"- {s.tool}: `{s.command}`")
    print()
    for line in goal_lines(summaries):
        print(line)


def write_json(
    path: Path,
    facts: dict[str, str],
    origin: Origin,
    args: argparse.Namespace,
    size: int,
    runs: Sequence[Run],
    summaries: Sequence[Summary],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "single_host",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "size": size,
        "repeat": args.repeat,
        "quick": args.quick,
        "machine": facts,
        "origin": asdict(origin),
        "goal_ratio": GOAL_RATIO,
        "summaries": [asdict(s) for s in summaries],
        "runs": [asdict(r) for r in runs],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=parse_size, default=GiB, help="file size (default 1G)")
    p.add_argument("--repeat", type=int, default=3, help="runs per tool (default 3)")
    p.add_argument("--connections", type=int, default=4, help="swarmget's main row (default 4)")
    p.add_argument("--quick", action="store_true", help="64 MiB, 1 repeat: correctness only")
    p.add_argument("--origin", choices=("nginx", "builtin"), default="nginx")
    p.add_argument("--no-install", action="store_true", help="never apt-get install nginx")
    p.add_argument("--nginx-workers", type=int, default=1, choices=(1, 2))
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir(), "swarmget-bench"))
    p.add_argument("--json-out", type=Path, default=OUT_DIR / "single_host.json")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.repeat = QUICK_SIZE, 1
    if args.repeat < 1 or args.connections < 1:
        p.error("--repeat and --connections must be >= 1")
    return args


def tools_for(connections: int) -> list[Tool]:
    tools = [Tool("curl", "curl"), Tool(f"swarmget -c {connections}", "swarmget", connections)]
    if connections != 1:
        tools.append(Tool("swarmget -c 1", "swarmget", 1))
    return tools


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the origin


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    size: int = args.size
    swarmget = swarmget_exe()
    facts = machine_facts(swarmget)
    facts["bytecode"] = compile_bytecode()
    data = ensure_test_file(args.cache_dir, size)
    print(f"hashing {data} (also warms the page cache) ...", flush=True)
    expected = sha256_of(data)
    tools = tools_for(args.connections)
    with (
        running_origin(
            data,
            size,
            use_nginx=args.origin == "nginx",
            allow_install=not args.no_install,
            workers=args.nginx_workers,
        ) as origin,
        tempfile.TemporaryDirectory(prefix="work-", dir=args.cache_dir) as work,
    ):
        print(f"origin {origin.kind} at {origin.url}; {len(tools)} tools x {args.repeat}")
        runs = run_all(tools, origin.url, Path(work), expected, args.repeat, size)
    facts["load average at end"] = load_average()
    summaries = summarize(tools, runs, size, origin.url)
    print_report(facts, origin, size, args.repeat, summaries)
    if busy_machine(facts):
        print(f"WARNING: other load on this {facts['nproc']}-core machine; timings are noisy")
    write_json(args.json_out, facts, origin, args, size, runs, summaries)
    print(f"\nresults: {args.json_out}")
    failed = [r for r in runs if not r.verified or r.error is not None]
    if failed:
        print(f"{len(failed)} run(s) FAILED verification or exited non-zero", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the origin was stopped", file=sys.stderr)
        sys.exit(130)
