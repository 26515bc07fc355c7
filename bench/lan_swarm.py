"""Processes on the namespace LAN: the origin (nginx), a hub and nodes, and timed downloads.

* ``start_origin`` runs Debian's nginx in ``sgb-origin`` (a daemon; ``lan_net.down`` ends it
  with everything else in the namespace). ``/`` serves the test files unthrottled;
  ``/capped/`` serves the same files with ``limit_rate`` per connection.
* ``open_swarm`` starts ``swarmget hub`` in ``sgb-hub`` and one ``swarmget node`` per host
  namespace (``--listen`` its address, ``--allow-private-origins 10.77.0.0/24``), reads their
  announce lines, and stops them all on the way out (SIGCONT, SIGTERM, then SIGKILL).
* ``download_with_swarm`` runs ``lan_agent.py`` in the requester's namespace (the user API is
  on that namespace's loopback) and turns its JSON lines into a ``Run``: the time from the
  request to the verified file, the result's ``last_byte_to_done``, each node's CPU time
  (``/proc/PID/stat`` utime + stime over the download) and an independent sha256 check.
* ``download_with_cli`` times ``swarmget get URL -o FILE`` in the requester's namespace, as a
  user sees it: from the command to its exit with the verified file, handed to the running node
  (``node``) or with its own in-process node (``hub``: ``get --hub``).
* ``download_with_tool`` times ``curl`` or ``aria2c`` in a host namespace the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lan_net as net
from common import find_program, nginx_config, sha256_of, swarmget_exe

HUB_PORT = 7400
PEER_PORT = 7401
STARTUP_TIMEOUT = 30.0
AGENT = Path(__file__).resolve().parent / "lan_agent.py"
DELAYLINE = Path(__file__).resolve().parent / "delayline.py"
DELAYED_NGINX_PORT = 8080  # nginx behind the delay line, on the origin namespace's loopback
CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX_WORKERS = 2


@dataclass(frozen=True, kw_only=True)
class NodeOptions:
    connections: int = 4  # the requester's own origin connections
    slots: int = 3  # helper slots (streams it serves at once)
    stall_timeout: float = 5.0  # a lease with no data this long is revoked (requester side)
    extra: tuple[str, ...] = ()  # more ``swarmget node`` arguments (e.g. --share-downloads)


@dataclass
class NodeProc:
    index: int
    proc: subprocess.Popen[bytes]
    state_dir: Path
    api_url: str
    options: NodeOptions
    peer_id: str = ""  # the node id it announced (the fingerprint of its node key)

    @property
    def node_id(self) -> str:
        """The name reports use (h0, h1 ...); ``peer_id`` is its id in the swarm."""
        return f"h{self.index}"

    @property
    def ns(self) -> str:
        return net.host_ns(self.index)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def download_dir(self) -> Path:
        return self.state_dir / "downloads"


@dataclass
class Swarm:
    root: Path
    hub: subprocess.Popen[bytes]
    nodes: dict[int, NodeProc] = field(default_factory=dict)


@dataclass
class Run:
    """One timed download and what was checked afterwards."""

    experiment: str
    label: str
    tool: str  # swarmget | curl | aria2c
    nodes: int  # hosts taking part (1 for the baselines)
    size: int
    wall: float | None = None  # request (or process start) to verified file, seconds
    ok: bool = False  # exit/state ok and the sha256 of the output matched
    skipped: bool = False  # the tool is not installed: not a failure
    elapsed: float | None = None  # swarmget's own result: download start to verified file
    last_byte_to_done: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # node id -> CPU seconds in the run
    cpu_sys: dict[str, float] = field(default_factory=dict)  # ... of which in the kernel
    received: dict[str, int] = field(default_factory=dict)  # source id -> bytes received
    events: list[str] = field(default_factory=list)  # what happened (faults, bans)
    #: ``swarmget get --json``'s timeline (seconds from the node's download start: hub,
    #: probe, joined {id: s}, first_byte {id: s}, last_data {id: s}, last_byte, verified)
    #: with the command's own points (seconds from the command's start: accepted, result)
    #: and what each source delivered (claimed {id: bytes}) and had cut (cut {id: streams})
    timeline: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return self.size / self.wall if self.wall else None

    def cpu_share(self) -> dict[str, float]:
        return {k: v / self.wall for k, v in self.cpu.items()} if self.wall else {}


# --- the origin ---------------------------------------------------------------------------------


def start_origin(
    nginx: str, run_dir: Path, files_root: Path, conn_rate: int, rtt_ms: float = 0.0
) -> str:
    """nginx in ``sgb-origin`` serving ``files_root``; returns its base URL.

    With ``rtt_ms`` > 0, nginx listens on the namespace's loopback and ``delayline.py`` on the
    origin's address in front of it: every request then costs that round trip (see there).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    capped = f"        location /capped/ {{ alias {files_root}/; limit_rate {conn_rate}; }}\n"
    conf = run_dir / "nginx.conf"
    listen = f"{net.ORIGIN_IP}:80" if rtt_ms <= 0 else f"127.0.0.1:{DELAYED_NGINX_PORT}"
    text = nginx_config(run_dir, files_root, listen, NGINX_WORKERS, locations=capped, daemon=True)
    conf.write_text(text)
    net.sh(net.in_ns(net.ORIGIN_NS, [nginx, "-p", str(run_dir), "-c", str(conf)]))
    if rtt_ms > 0:
        _start_delayline(run_dir, f"127.0.0.1:{DELAYED_NGINX_PORT}", rtt_ms)
    return f"http://{net.ORIGIN_IP}"


def _start_delayline(run_dir: Path, to: str, rtt_ms: float) -> None:
    """``delayline.py`` in ``sgb-origin`` (ended by ``lan_net.down`` with the namespace)."""
    args = ["--listen", f"{net.ORIGIN_IP}:80", "--to", to, "--rtt-ms", f"{rtt_ms:g}"]
    with (run_dir / "delayline.log").open("ab") as err:
        proc = subprocess.Popen(
            net.in_ns(net.ORIGIN_NS, [sys.executable, str(DELAYLINE), *args]),
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    if not ready or proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the delay line did not start (see {run_dir / 'delayline.log'})")


def wait_origin(url: str, size: int, limit: float = 15.0) -> None:
    """HEAD ``url`` from host 0 until nginx answers with the right length."""
    deadline = time.monotonic() + limit
    last = ""
    while time.monotonic() < deadline:
        cmd = ["curl", "-s", "-I", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
        out = net.sh(net.in_ns(net.host_ns(0), cmd), check=False).strip()
        if out.startswith("200"):
            return
        last = out
        time.sleep(0.2)
    raise RuntimeError(f"the origin does not answer {url}: {last!r}")


# --- hub and nodes ------------------------------------------------------------------------------


def _read_announce(proc: subprocess.Popen[bytes], what: str, deadline: float) -> dict[str, Any]:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise RuntimeError(f"{what} did not start (exit {proc.poll()})")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"{what} closed its stdout (exit {proc.wait()})")
            buf += chunk
    info: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    return info


def _spawn(ns: str, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            net.in_ns(ns, [str(swarmget_exe()), *args]),
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def flags(options: dict[str, object]) -> list[str]:
    """``{"--port": 80}`` → ``["--port", "80"]``."""
    return [w for k, v in options.items() for w in (k, str(v))]


def _node_args(i: int, state: Path, secret: Path, o: NodeOptions) -> list[str]:
    options = {
        "--hub": f"http://{net.HUB_IP}:{HUB_PORT}",
        "--listen": net.host_ip(i),
        "--port": PEER_PORT,
        "--api-port": 0,
        "--allow-private-origins": net.SUBNET,
        "--slots": o.slots,
        "--connections": o.connections,
        "--stall-timeout": o.stall_timeout,
        # heartbeats as the hub asks (every 5 s by default): their CPU is part of what we measure
        "--secret-file": secret,
        "--state-dir": state,
        "--download-dir": state / "downloads",
    }
    return ["node", *flags(options), *o.extra]


@contextlib.contextmanager
def open_swarm(
    root: Path, hosts: Sequence[int], options: NodeOptions | dict[int, NodeOptions]
) -> Iterator[Swarm]:
    """A hub and one node per host index in ``hosts``; all stopped on the way out."""
    root.mkdir(parents=True, exist_ok=True)
    secret = root / "secret"
    secret.write_text(os.urandom(32).hex())
    secret.chmod(0o600)
    db = root / "hub.db"
    db.unlink(missing_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hub_options = {
            "--host": net.HUB_IP,
            "--port": HUB_PORT,
            "--db": f"sqlite+aiosqlite:///{db}",
            "--secret-file": secret,
        }
        hub_args = ["hub", *flags(hub_options)]
        hub = _spawn(net.HUB_NS, hub_args, root / "hub.log")
        procs.append(hub)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        _read_announce(hub, "the hub", deadline)
        swarm = Swarm(root=root, hub=hub)
        started: list[tuple[int, subprocess.Popen[bytes], Path, NodeOptions]] = []
        for i in hosts:
            opts = options.get(i, NodeOptions()) if isinstance(options, dict) else options
            state = root / f"h{i}"
            state.mkdir(parents=True, exist_ok=True)
            proc = _spawn(net.host_ns(i), _node_args(i, state, secret, opts), root / f"h{i}.log")
            procs.append(proc)
            started.append((i, proc, state, opts))
        for i, proc, state, opts in started:
            info = _read_announce(proc, f"node h{i}", deadline)
            peer_id = str(info["node_id"])
            swarm.nodes[i] = NodeProc(i, proc, state, str(info["api_url"]), opts, peer_id)
        yield swarm
    finally:
        net.end_processes([p.pid for p in procs if p.poll() is None])
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
            if p.stdout is not None:
                p.stdout.close()


def cpu_times(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of ``pid`` in seconds (a zombie keeps its counters until reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid``."""
    times = cpu_times(pid)
    return None if times is None else sum(times)


# --- timed downloads ----------------------------------------------------------------------------

Progress = Callable[[float], None]


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's stdout lines, read by a thread (None at EOF)."""
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def download_with_swarm(
    swarm: Swarm,
    run: Run,
    *,
    url: str,
    sha256: str,
    requester: int,
    helpers: Sequence[int],
    timeout: float,
    on_progress: Progress | None = None,
) -> Run:
    """Have node ``requester`` download ``url`` with ``helpers``; fill and return ``run``."""
    node = swarm.nodes[requester]
    name = f"{run.experiment}-{run.label}.bin".replace(" ", "_").replace("/", "_")
    options = {
        "--api": node.api_url,
        "--token-file": node.state_dir / "api-token",
        "--url": url,
        "--output": name,
        "--download-dir": node.download_dir,
        "--sha256": sha256,
        "--helpers": ",".join(swarm.nodes[h].peer_id for h in helpers),
        "--timeout": timeout,
    }
    cmd = [sys.executable, str(AGENT), *flags(options)]
    if on_progress is not None:
        cmd.append("--progress")
    watched = [swarm.nodes[i] for i in (requester, *helpers)]
    cpu0: dict[str, tuple[float, float] | None] = {}
    end: dict[str, Any] | None = None
    os.sync()  # the previous run's dirty pages are not written back on this run's clock
    agent = subprocess.Popen(
        net.in_ns(node.ns, cmd), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    lines = _lines(agent)
    deadline = time.monotonic() + timeout + 60
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=1.0)
                if line is None:
                    break
                msg = json.loads(line)
                if msg["event"] == "started":
                    cpu0 = {n.node_id: cpu_times(n.pid) for n in watched}
                elif msg["event"] == "progress" and on_progress is not None and msg["size"]:
                    on_progress(msg["done"] / msg["size"])
                elif msg["event"] == "end":
                    cpu1 = {n.node_id: cpu_times(n.pid) for n in watched}
                    both = {
                        k: (c0, c1)
                        for k, c1 in cpu1.items()
                        if (c0 := cpu0.get(k)) is not None and c1 is not None
                    }
                    run.cpu = {k: round(sum(c1) - sum(c0), 3) for k, (c0, c1) in both.items()}
                    run.cpu_sys = {k: round(c1[1] - c0[1], 3) for k, (c0, c1) in both.items()}
                    end = msg
    finally:
        if agent.poll() is None:
            net.end_processes([agent.pid], grace=2)
        agent.wait()
    if end is None:
        run.error = f"the agent ended without a result (exit {agent.returncode})"
        return run
    _fill_from_agent(run, end, {n.peer_id: n.node_id for n in swarm.nodes.values()})
    return run


def _fill_from_agent(run: Run, end: dict[str, Any], names: dict[str, str]) -> None:
    """``names`` maps node ids to the names reports use (h0, h1 ...)."""
    download = end.get("download") or {}
    run.wall = float(end["t"])
    for e in download.get("events", []):
        if e["kind"] in ("failure", "ban", "cancel", "duplicate"):
            run.events.append(f"{e['at']:.1f}s {e['kind']} {e['source']}: {e['detail'][:80]}")
    sources = (download.get("progress") or {}).get("sources", [])
    run.received = {names.get(str(s["id"]), str(s["id"])): int(s["received"]) for s in sources}
    if end["state"] != "done":
        error = download.get("error") or {}
        run.error = f"{end['state']}: {error.get('message', '')}"[:300]
        return
    result = download["result"]
    run.elapsed = float(result["elapsed"])
    run.last_byte_to_done = float(result["last_byte_to_done"])
    path = Path(result["path"])
    run.ok = _verify_and_remove(path, run)


def _verify_and_remove(path: Path, run: Run) -> bool:
    expected = run.params["sha256"]
    try:
        good = path.stat().st_size == run.size and sha256_of(path) == expected
    except OSError as exc:
        run.error = f"cannot read the output: {exc}"
        return False
    finally:
        path.unlink(missing_ok=True)
    if not good:
        run.error = "sha256 mismatch"
    return good


def tool_command(tool: str, url: str, out: Path) -> list[str]:
    if tool == "curl":
        return ["curl", "-s", "-f", "-o", str(out), url]
    if tool == "aria2c":
        fixed = "-x16 -s16 -k1M --file-allocation=falloc --allow-overwrite=true "
        fixed += "--auto-file-renaming=false --console-log-level=warn --summary-interval=0 "
        fixed += "--download-result=hide"
        return ["aria2c", *fixed.split(), "-d", str(out.parent), "-o", out.name, url]
    raise ValueError(tool)


def download_with_tool(run: Run, *, url: str, work: Path, host: int, timeout: float) -> Run:
    """Time ``run.tool`` (curl, aria2c) downloading ``url`` in host ``host``'s namespace."""
    if find_program(run.tool) is None:
        run.error, run.skipped = f"{run.tool} is not installed", True
        return run
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{run.experiment}-{run.tool}.bin"
    out.unlink(missing_ok=True)
    os.sync()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            net.in_ns(net.host_ns(host), tool_command(run.tool, url, out)),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        run.error = f"timed out after {timeout:.0f}s"
        out.unlink(missing_ok=True)
        return run
    run.wall = time.perf_counter() - t0
    if proc.returncode != 0:
        run.error = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-200:]}"
        out.unlink(missing_ok=True)
        return run
    run.ok = _verify_and_remove(out, run)
    return run


def _read_cli_result(stdout: str, run: Run) -> None:
    """The timeline and times of ``get --json``'s answer (left empty when unreadable)."""
    try:
        data = json.loads(stdout)
        command = data.get("command_timeline") or {}
        sources = data.get("sources") or []
        # the ranges all sources were asked for and what they waited for a first byte
        # (absent from an older node's answer: then 0)
        ranges = {
            "ranges": sum(int(s.get("ranges", 0)) for s in sources),
            "waited": sum(float(s.get("waited", 0.0)) for s in sources),
            # of those, the ones asked for while a stream of that source was about to end
            "ahead": sum(int(s.get("ahead", 0)) for s in sources),
            # the bytes each source delivered into the file (its share of the end)
            "claimed": {str(s["id"]): int(s.get("claimed", 0)) for s in sources},
            # its streams we ended early (steals, rescues, lost races): each wastes what was
            # in flight on its link
            "cut": {str(s["id"]): int(s.get("cut", 0)) for s in sources},
        }
        run.timeline = {**data["timeline"], **command, **ranges}
        run.received = {str(s["id"]): int(s.get("received", 0)) for s in sources}
        run.elapsed = float(data["elapsed"])
        run.last_byte_to_done = float(data["last_byte_to_done"])
    except (ValueError, KeyError, TypeError) as exc:
        run.events.append(f"no timeline in get --json: {exc}")


def wait_for_helpers(swarm: Swarm, requester: int, helpers: Sequence[int], limit: float) -> None:
    """Until node ``requester`` sees every node of ``helpers`` (they registered with the hub)."""
    node = swarm.nodes[requester]
    options = {
        "--api": node.api_url,
        "--token-file": node.state_dir / "api-token",
        "--url": "-",
        "--output": "-",
        "--download-dir": node.download_dir,
        "--sha256": "-",
        "--helpers": ",".join(swarm.nodes[h].peer_id for h in helpers),
    }
    cmd = [sys.executable, str(AGENT), *flags(options), "--wait-only"]
    proc = subprocess.run(
        net.in_ns(node.ns, cmd), capture_output=True, text=True, timeout=limit, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helpers not seen: {(proc.stderr or proc.stdout).strip()[-300:]}")


def cli_command(
    swarm: Swarm, requester: int, mode: str, url: str, sha256: str | None, out: Path
) -> list[str]:
    """``swarmget get`` as a user types it on host ``requester`` (with ``--checksum`` unless
    ``sha256`` is None: then helpers' and holders' bytes are sampled against the origin)."""
    node = swarm.nodes[requester]
    cmd = [str(swarmget_exe()), "get", url, "-o", str(out)]
    if sha256 is not None:
        cmd += ["--checksum", f"sha256:{sha256}"]
    cmd += ["-q", "--json"]  # the result with its timeline on stdout (no progress)
    if mode == "node":  # handed to the node running there (its state directory has node.json)
        return [*cmd, "--state-dir", str(node.state_dir)]
    if mode == "hub":  # its own node in the process, with the swarm of the hub
        lone = swarm.root / f"cli-h{requester}"
        lone.mkdir(exist_ok=True)
        hub = f"http://{net.HUB_IP}:{HUB_PORT}"
        return [
            *cmd,
            "--hub",
            hub,
            "--secret-file",
            str(swarm.root / "secret"),
            "--state-dir",
            str(lone),
        ]
    raise ValueError(mode)


def download_with_cli(
    swarm: Swarm, run: Run, *, url: str, sha256: str, requester: int, mode: str, timeout: float
) -> Run:
    """Time ``swarmget get`` from the command to its exit; then check the file (sha256)."""
    node = swarm.nodes[requester]
    name = f"{run.experiment}-{run.label}.bin".replace(" ", "_").replace("/", "_")
    # the node takes a download only into its download directory (else the CLI goes alone)
    out = (node.download_dir if mode == "node" else node.state_dir / "cli-out") / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = cli_command(swarm, requester, mode, url, sha256, out)
    watched = [n for n in swarm.nodes.values()]
    os.sync()
    cpu0 = {n.node_id: cpu_times(n.pid) for n in watched}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            net.in_ns(node.ns, cmd), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        run.error = f"timed out after {timeout:.0f}s"
        out.unlink(missing_ok=True)
        return run
    run.wall = time.perf_counter() - t0
    cpu1 = {n.node_id: cpu_times(n.pid) for n in watched}
    run.cpu = {
        k: round(sum(c1) - sum(c0), 3)
        for k, c1 in cpu1.items()
        if (c0 := cpu0.get(k)) is not None and c1 is not None
    }
    if proc.returncode != 0:
        run.error = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"
        out.unlink(missing_ok=True)
        return run
    _read_cli_result(proc.stdout, run)
    run.ok = _verify_and_remove(out, run)
    return run
