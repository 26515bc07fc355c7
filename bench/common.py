"""What the benchmarks share: sizes, machine facts, test files, Debian packages, nginx.

Used by ``single_host.py`` (loopback, curl vs swarmget) and ``lan.py`` (the namespace LAN).
Everything here is synchronous and stdlib-only: the benchmarks drive processes, they do not
import swarmget.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BLOCK = 4 * MiB
FILE_NAME = "payload.bin"
STOP_TIMEOUT = 5.0
SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"

_SIZE_RE = re.compile(r"([0-9]+)([KMG]?)(?:i?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB}


# --- sizes and small helpers --------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``123``, ``64M``, ``1G``, ``1GiB`` (binary units) → bytes."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(m[1]) * _SIZE_UNITS[m[2].upper()]


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def command_output(cmd: Sequence[str]) -> str:
    """First line of stdout+stderr of ``cmd``, or a note that it could not run."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if text else ""


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def mem_total() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) // (1024 * 1024)} GiB"
    return "unknown"


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def swarmget_exe() -> Path:
    beside = Path(sys.executable).parent / "swarmget"
    if beside.exists():
        return beside
    found = shutil.which("swarmget")
    if found is None:
        raise SystemExit("swarmget is not installed: run `make venv` first")
    return Path(found)


def compile_bytecode() -> str:
    """Byte-compile swarmget's own modules, as installing a wheel does: an editable install
    with PYTHONDONTWRITEBYTECODE set (as on some CI machines) would otherwise compile them
    on every start (~30 ms of every command timed), a cost curl does not pay and an
    installed swarmget does not either. Says what it did, for the results' facts."""
    code = "import compileall, swarmget, pathlib; " + (
        "print(compileall.compile_dir(pathlib.Path(swarmget.__file__).parent, quiet=1))"
    )
    done = command_output([sys.executable, "-c", code])
    return "compiled" if done == "True" else f"not compiled ({done})"


def machine_facts(swarmget: Path) -> dict[str, str]:
    return {
        "nproc": command_output(["nproc"]),
        "cpu": cpu_model(),
        "memory": mem_total(),
        "kernel": platform.release(),
        "load average at start": load_average(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "curl": " ".join(command_output(["curl", "--version"]).split()[:3]),
        "swarmget": command_output([str(swarmget), "--version"]),
    }


# --- test files ---------------------------------------------------------------------------------


def ensure_test_file(cache_dir: Path, size: int) -> Path:
    """``cache_dir/SIZE/payload.bin`` of random bytes, written once (atomically) and reused.

    The directories are 0755 and the file 0644, so an nginx worker running as ``nobody`` can
    serve it.
    """
    directory = cache_dir / str(size)
    path = directory / FILE_NAME
    if path.exists() and path.stat().st_size == size:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    for d in (cache_dir, directory):
        d.chmod(0o755)
    tmp = path.with_name(path.name + ".tmp")
    print(f"generating {human(size)} of random bytes in {path} ...", flush=True)
    with tmp.open("wb") as f:
        left = size
        while left:
            n = min(BLOCK, left)
            f.write(os.urandom(n))
            left -= n
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def cached_sha256(path: Path) -> str:
    """The file's sha256, cached beside it (``.sha256``, keyed by size and mtime)."""
    st = path.stat()
    key = f"{st.st_size}:{st.st_mtime_ns}"
    side = path.with_name(path.name + ".sha256")
    with contextlib.suppress(OSError, ValueError):
        stored_key, digest = side.read_text().split()
        if stored_key == key:
            return digest
    digest = sha256_of(path)
    side.write_text(f"{key} {digest}\n")
    return digest


# --- Debian packages ----------------------------------------------------------------------------


def find_program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN_PATH)


def apt_install(packages: Sequence[str]) -> bool:
    """``apt-get install -y PACKAGES`` (after ``apt-get update`` if the first try fails)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *packages]
    for cmd in (install, ["apt-get", "update", "-qq"], install):
        print(f"$ {' '.join(cmd)}", flush=True)
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=600)
        except subprocess.TimeoutExpired:
            return False
        if cmd is install and proc.returncode == 0:
            return True
    return False


def ensure_programs(wanted: dict[str, str], *, allow_install: bool) -> dict[str, str | None]:
    """Program name → path, installing the Debian packages (``wanted[name]``) of missing ones."""
    missing = sorted({pkg for prog, pkg in wanted.items() if find_program(prog) is None})
    if missing and allow_install:
        apt_install(missing)
    return {prog: find_program(prog) for prog in wanted}


def find_or_install_nginx(allow_install: bool) -> str | None:
    """Path of the nginx binary, installing Debian's package if missing (and allowed)."""
    found = find_program("nginx")
    if found or not allow_install:
        return found
    if not apt_install(["nginx-light"]):
        apt_install(["nginx"])
    return find_program("nginx")


# --- nginx --------------------------------------------------------------------------------------


def nginx_config(
    run_dir: Path,
    root: Path,
    listen: str,
    workers: int,
    *,
    locations: str = "",
    daemon: bool = False,
) -> str:
    """A private nginx: static files from ``root`` (Range and ETag are built in), sendfile.

    ``locations`` is extra ``location`` blocks for the server (e.g. a rate-limited alias).
    """
    temp_paths = "\n".join(
        f"    {name}_temp_path {run_dir / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
worker_processes {workers};
daemon {"on" if daemon else "off"};
pid {run_dir / "nginx.pid"};
error_log {run_dir / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    # the combined format, then the Range asked, the time taken and the end (``msec``)
    log_format timed '$remote_addr - - [$time_local] "$request" $status $body_bytes_sent '
                     '"$http_referer" "$http_user_agent" "$http_range" $request_time $msec';
    access_log {run_dir / "access.log"} timed;
{temp_paths}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;
    server {{
        listen {listen};
        root {root};
        location / {{ }}
{locations}
    }}
}}
"""


def stop_pid(pid: int) -> None:
    """SIGQUIT (nginx: graceful) then SIGTERM then SIGKILL to this one PID, which need not be
    our child (so ``/proc`` is polled instead of waiting)."""
    for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGQUIT (nginx: graceful) then SIGTERM then SIGKILL, to this one PID."""
    for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)


# --- the event-loop lag histogram (``swarmget.net.looplag`` on a /metrics page) ---------------


def lag_histogram(metrics: str) -> tuple[dict[float, float], float]:
    """The event-loop lag histogram in the text of a ``/metrics`` page: cumulative counts by
    bucket upper bound (seconds), and the largest lag seen (0.0 when the page has none:
    no probe runs)."""
    buckets: dict[float, float] = {}
    lag_max = 0.0
    for line in metrics.splitlines():
        if line.startswith("swarmget_event_loop_lag_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("swarmget_event_loop_lag_max_seconds "):
            lag_max = float(line.rsplit(" ", 1)[1])
    return buckets, lag_max


def lag_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (seconds) of the bucket holding quantile ``q`` of the observations
    made between two reads of a lag histogram; NaN when there were none."""
    diff = {b: after[b] - before.get(b, 0.0) for b in sorted(after)}
    total = diff[max(diff)] if diff else 0.0
    for bound, cumulative in diff.items():
        if total and cumulative >= q * total:
            return bound
    return float("nan")
