"""The namespace LAN: an origin, a hub and N hosts on one bridge, on one Linux machine.

Topology (every name starts with ``sgb-``, which is how ``down`` finds what to remove; two
testbeds coexist with ``SWARMGET_BENCH_PREFIX=sgc-`` and ``SWARMGET_BENCH_NET=10.78.0`` for the
second, whose ``down`` then removes only its own namespaces)::

    sgb-origin 10.77.0.1 (nginx)  sgb-hub 10.77.0.2  sgb-h0 10.77.0.10 ... sgb-hN 10.77.0.10+N
         eth0                         eth0               eth0                 eth0
          |                            |                  |                    |
    p-origin ----------------------- p-hub ------------ p-h0 ---- ... ------ p-hN
                              br0 in namespace sgb-lan (the switch)

Shaping (HTB: this kernel has no netem; HTB and TBF work):

* **The internet link of each host** is the origin's egress (``eth0`` in ``sgb-origin``): one
  HTB class per host, keyed by the host's address with a u32 filter, rate = ceil = the host's
  cap, with a short byte FIFO (``queue_ms`` of the cap) so that a full queue does not add
  seconds of delay. Only the data direction (origin → host) is shaped: requests and ACKs
  (host → origin) go through unshaped, as they would on a link whose bottleneck is downstream.
  Traffic from the origin to anything else (the hub) is in an unshaped default class.
* **The LAN** is every switch port's egress (``p-X`` in ``sgb-lan``, towards host X): one HTB
  class at ``lan_mbit`` (1 Gbit/s by default, ``None`` for unshaped), so host ↔ host traffic
  (helpers streaming to the requester) is fast and each host receives at most one port's rate.

Processes run inside with ``ip netns exec NS ...``. ``down`` first ends every process still in
one of our namespaces (``ip netns pids``: only what we started lives there), then deletes the
namespaces; the veths and the bridge go with them. ``up`` starts with ``down``, so both are
idempotent.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from common import pid_alive

DEFAULT_PREFIX = "sgb-"


def _env(name: str, default: str, pattern: str) -> str:
    value = os.environ.get(name, default)
    if re.fullmatch(pattern, value) is None:
        raise SystemExit(f"{name}={value!r} does not match {pattern}")
    return value


PREFIX = _env("SWARMGET_BENCH_PREFIX", DEFAULT_PREFIX, r"[a-z][a-z0-9]{0,7}-")
NET = _env(
    "SWARMGET_BENCH_NET", "10.77.0", r"10\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)"
)
LAN_NS = f"{PREFIX}lan"
ORIGIN_NS = f"{PREFIX}origin"
HUB_NS = f"{PREFIX}hub"
PROBE_NS = f"{PREFIX}probe"
BRIDGE = "br0"
SUBNET = f"{NET}.0/24"
ORIGIN_IP = f"{NET}.1"
HUB_IP = f"{NET}.2"
MAX_HOSTS = 32
LAN_QUEUE_S = 0.005  # the switch's buffer, in seconds of its port rate
MIN_QUEUE = 192 * 1024  # bytes: three 64 KiB GSO packets
STOP_GRACE = 5.0


def host_ns(i: int) -> str:
    return f"{PREFIX}h{i}"


def host_ip(i: int) -> str:
    return f"{NET}.{10 + i}"


@dataclass(frozen=True, kw_only=True)
class Shaping:
    """The testbed's links: per-host caps on the origin's side, and the LAN's port rate."""

    caps_mbit: tuple[float, ...]  # host i's link to the origin, Mbit/s
    lan_mbit: float | None = 1000.0  # switch port rate; None: unshaped
    queue_ms: float = 100.0  # per-host FIFO on the origin's side, in ms of the cap


class NetError(RuntimeError):
    """A command that builds the testbed failed."""


def sh(cmd: str | Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    """Run ``cmd`` (a string is split on blanks); its stdout, or ``NetError`` with its stderr
    when it fails."""
    if isinstance(cmd, str):
        cmd = cmd.split()
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetError(f"{' '.join(cmd)}: {exc}") from exc
    if check and proc.returncode != 0:
        raise NetError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def in_ns(ns: str, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run inside namespace ``ns`` (``ip netns exec`` execs it: same PID)."""
    return ["ip", "netns", "exec", ns, *cmd]


# --- can we? ------------------------------------------------------------------------------------


def why_impossible() -> str | None:
    """None when this machine lets us build the testbed, else the reason (for a clean skip)."""
    if os.geteuid() != 0:
        return "not root: network namespaces need root (run with sudo)"
    if shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
        return "no `ip` command (Debian package iproute2)"
    try:
        _delete_ns(PROBE_NS)
        sh(["ip", "netns", "add", PROBE_NS])
        sh(in_ns(PROBE_NS, ["true"]))
        sh(["ip", "-n", PROBE_NS, "link", "add", "pa", "type", "veth", "peer", "name", "pb"])
        sh(["ip", "-n", PROBE_NS, "link", "add", "pbr", "type", "bridge"])
        sh(["tc", "-n", PROBE_NS, "qdisc", "add", "dev", "pa", "root", "handle", "1:", "htb"])
    except NetError as exc:
        return f"network namespaces are not permitted here: {exc}"
    finally:
        with contextlib.suppress(NetError):
            _delete_ns(PROBE_NS)
    return None


# --- up and down --------------------------------------------------------------------------------


def namespaces() -> list[str]:
    """Our namespaces that exist now (exactly our names: not another prefix that starts alike)."""
    out = sh(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    ours = {LAN_NS, ORIGIN_NS, HUB_NS, PROBE_NS}
    return [n for n in names if n in ours or re.fullmatch(rf"{PREFIX}h\d+", n)]


def ns_pids(ns: str) -> list[int]:
    out = sh(["ip", "netns", "pids", ns], check=False)
    return [int(w) for w in out.split() if w.isdigit()]


def end_processes(pids: Sequence[int], grace: float = STOP_GRACE) -> None:
    """SIGCONT + SIGTERM to each PID, then SIGKILL to those still alive after ``grace``."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _delete_ns(ns: str) -> None:
    if ns in namespaces():
        sh(["ip", "netns", "del", ns])


def down() -> list[str]:
    """End every process in our namespaces, delete them (veths and bridge go too)."""
    found = namespaces()
    pids = [pid for ns in found for pid in ns_pids(ns)]
    if pids:
        end_processes(pids)
    for ns in found:
        _delete_ns(ns)
    return found


def up(hosts: int, shaping: Shaping) -> None:
    """Build the LAN from scratch (after ``down``): see the module docstring."""
    if not 1 <= hosts <= MAX_HOSTS or len(shaping.caps_mbit) != hosts:
        raise ValueError(f"need 1..{MAX_HOSTS} hosts and one cap per host")
    down()
    sh(["ip", "netns", "add", LAN_NS])
    sh(["ip", "-n", LAN_NS, "link", "set", "lo", "up"])
    sh(["ip", "-n", LAN_NS, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0"])
    sh(["ip", "-n", LAN_NS, "link", "set", BRIDGE, "up"])
    ends = [(ORIGIN_NS, ORIGIN_IP, "p-origin"), (HUB_NS, HUB_IP, "p-hub")]
    ends += [(host_ns(i), host_ip(i), f"p-h{i}") for i in range(hosts)]
    for ns, ip, port in ends:
        _attach(ns, ip, port)
        if shaping.lan_mbit is not None:
            _shape_port(port, shaping.lan_mbit)
    _shape_origin(hosts, shaping)


def _attach(ns: str, ip: str, port: str) -> None:
    """Namespace ``ns`` with ``eth0`` = ``ip``/24, its peer ``port`` on the bridge."""
    sh(f"ip netns add {ns}")
    sh(f"ip -n {ns} link set lo up")
    sh(f"ip -n {LAN_NS} link add {port} type veth peer name eth0 netns {ns}")
    sh(f"ip -n {LAN_NS} link set {port} master {BRIDGE} up")
    sh(f"ip -n {ns} addr add {ip}/24 dev eth0")
    sh(f"ip -n {ns} link set eth0 up")


def _queue_bytes(mbit: float, seconds: float) -> int:
    return max(MIN_QUEUE, int(mbit * 1e6 / 8 * seconds))


def _htb_leaf(ns: str, dev: str, minor: int, mbit: float, queue: int, verb: str) -> None:
    """Class 1:minor at ``mbit`` (rate = ceil: no borrowing) with a ``queue``-byte FIFO."""
    burst = max(16, int(mbit * 1e6 / 8 * 0.002) // 1024)  # KiB: 2 ms of the rate
    sh(f"tc -n {ns} class {verb} dev {dev} parent 1: classid 1:{minor:x} htb rate {mbit:g}mbit "
       f"ceil {mbit:g}mbit burst {burst}k cburst {burst}k quantum 65536")  # fmt: skip
    qdisc = "replace" if verb == "change" else "add"
    sh(f"tc -n {ns} qdisc {qdisc} dev {dev} parent 1:{minor:x} handle {minor + 0x1000:x}: "
       f"bfifo limit {queue}")  # fmt: skip


def _shape_port(port: str, mbit: float) -> None:
    sh(f"tc -n {LAN_NS} qdisc add dev {port} root handle 1: htb default 1")
    _htb_leaf(LAN_NS, port, 1, mbit, _queue_bytes(mbit, LAN_QUEUE_S), "add")


def _shape_origin(hosts: int, shaping: Shaping) -> None:
    sh(f"tc -n {ORIGIN_NS} qdisc add dev eth0 root handle 1: htb default 1")
    sh(f"tc -n {ORIGIN_NS} class add dev eth0 parent 1: classid 1:1 htb rate 10gbit quantum 65536")
    for i in range(hosts):
        sh(f"tc -n {ORIGIN_NS} filter add dev eth0 parent 1: protocol ip prio 1 u32 "
           f"match ip dst {host_ip(i)}/32 flowid 1:{0x100 + i:x}")  # fmt: skip
    set_caps(shaping.caps_mbit, shaping.queue_ms, verb="add")


def set_caps(caps_mbit: Sequence[float], queue_ms: float, *, verb: str = "change") -> None:
    """Set host i's link to the origin to ``caps_mbit[i]`` Mbit/s (the testbed must be up)."""
    for i, mbit in enumerate(caps_mbit):
        queue = _queue_bytes(mbit, queue_ms / 1000)
        _htb_leaf(ORIGIN_NS, "eth0", 0x100 + i, mbit, queue, verb)


def origin_bytes_sent() -> dict[str, int]:
    """Bytes the origin sent to each host so far (the HTB class counters), by host address."""
    out = sh(["tc", "-n", ORIGIN_NS, "-s", "class", "show", "dev", "eth0"], check=False)
    sent: dict[str, int] = {}
    minor: int | None = None
    for line in out.splitlines():
        words = line.split()
        if words[:2] == ["class", "htb"]:
            minor = int(words[2].partition(":")[2], 16)
        elif words[:1] == ["Sent"] and minor is not None and minor >= 0x100:
            sent[host_ip(minor - 0x100)] = int(words[1])
    return sent
