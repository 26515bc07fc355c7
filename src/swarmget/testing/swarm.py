"""A real local swarm on loopback: a hub and N nodes as separate processes.

Used by the integration tests, the demo and the benchmark. Each node binds its own loopback
address (127.0.0.2, .3 ...) for its peer API and its outgoing connections, so a test origin
that caps bandwidth per client IP sees N separate machines. There may be several hubs sharing
one registry database (a replicated hub: nodes fail over between them). Processes are started
with ``python -m swarmget.cli`` and announce their URLs as one JSON line on stdout; everything
is stopped (SIGTERM, then SIGKILL) when the context exits, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from swarmget.core.errors import HubError
from swarmget.core.lifecycle import still_going
from swarmget.protocol.errors import USER_ERRORS

CLI = [sys.executable, "-m", "swarmget.cli"]
STARTUP_TIMEOUT = 30.0
#: seconds the node may hold a progress poll (``?wait=``): as ``swarmget get`` asks
FOLLOW_WAIT = 0.25


@dataclass
class Proc:
    """A child process that announced itself with one JSON line."""

    process: asyncio.subprocess.Process
    info: dict[str, Any]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    async def stop(self, grace: float = 5.0) -> None:
        if self.process.returncode is not None:
            return
        self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.process.wait()
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.process.wait()


async def start_proc(
    args: Sequence[str], log_path: Path, env: dict[str, str], command: Sequence[str] = CLI
) -> Proc:
    log = log_path.open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            *command, *args, stdout=asyncio.subprocess.PIPE, stderr=log, env=env
        )
    finally:
        log.close()
    assert process.stdout is not None
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            line = await process.stdout.readline()
        info = json.loads(line)
    except (TimeoutError, ValueError) as exc:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
        raise RuntimeError(f"{args[0]} did not start: {exc}\n{tail}") from exc
    return Proc(process, info, log_path)


@dataclass
class NodeHandle:
    index: int
    address: str
    proc: Proc
    state_dir: Path
    download_dir: Path

    @property
    def node_id(self) -> str:
        return str(self.proc.info["node_id"])

    @property
    def api_url(self) -> str:
        return str(self.proc.info["api_url"])

    @property
    def token(self) -> str:
        return (self.state_dir / "api-token").read_text().strip()


@dataclass
class LocalSwarm:
    root: Path
    secret_file: Path
    hub: Proc  # the first hub
    nodes: list[NodeHandle] = field(default_factory=list)
    hubs: list[Proc] = field(default_factory=list)  # every hub, ``hub`` first
    node_hubs: dict[int, Sequence[int]] = field(default_factory=dict)
    #: processes started after the swarm came up (``restart_node``): stopped with the rest
    restarted: list[Proc] = field(default_factory=list)

    def node(self, i: int) -> NodeHandle:
        return self.nodes[i]

    async def hub_states(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Each node's ``hub`` of its status, in node order (``{}``: a node without one)."""
        states = []
        for node in self.nodes:
            _, status = await NodeApi(session, node).call("GET", "/v1/status")
            states.append(dict(status["hub"] or {}))
        return states

    async def until_hub_states(
        self,
        session: aiohttp.ClientSession,
        check: Callable[[list[dict[str, Any]]], bool],
        limit: float = 15.0,
    ) -> list[dict[str, Any]]:
        """``hub_states`` once ``check`` holds for them (AssertionError naming them when it
        does not within ``limit`` seconds)."""
        deadline = asyncio.get_running_loop().time() + limit
        while not check(states := await self.hub_states(session)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"hub states not reached in {limit} s: {states}")
            await asyncio.sleep(0.1)
        return states

    def hub_urls(self, order: Sequence[int] | None = None) -> list[str]:
        """The hubs' URLs, all in order or those of the indices in ``order``."""
        chosen = range(len(self.hubs)) if order is None else order
        return [str(self.hubs[i].info["url"]) for i in chosen]

    async def restart_node(self, i: int, extra: Sequence[str] = ()) -> NodeHandle:
        """Stop node ``i`` and start it again on its state and download directories (the
        same key, address and hubs) with ``extra`` arguments; it logs to
        ``node{i}-again.log``. Its handle is updated in place and returned."""
        node = self.node(i)
        await node.proc.stop()
        args = node_args(
            self.hub_urls(self.node_hubs.get(i)),
            node.address,
            self.secret_file,
            node.state_dir,
            node.download_dir,
            extra,
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        node.proc = await start_proc(args, self.root / f"node{i}-again.log", env)
        self.restarted.append(node.proc)
        return node


def node_args(
    hub_url: str | Sequence[str],
    address: str,
    secret_file: Path,
    state: Path,
    downloads: Path,
    extra: Sequence[str],
) -> list[str]:
    urls = [hub_url] if isinstance(hub_url, str) else list(hub_url)
    hubs = [arg for url in urls for arg in ("--hub", url)]
    return [
        "node", *hubs, "--listen", address, "--port", "0", "--api-port", "0",
        "--secret-file", str(secret_file), "--state-dir", str(state),
        "--download-dir", str(downloads), "--allow-private-origins", "127.0.0.0/8",
        "--heartbeat-interval", "0.5", *extra,
    ]  # fmt: skip


def hub_args(db_url: str, secret_file: Path, ttl: float, port: int = 0) -> list[str]:
    return [
        "hub", "--host", "127.0.0.1", "--port", str(port), "--ttl", str(ttl), "--db", db_url,
        "--secret-file", str(secret_file),
    ]  # fmt: skip


@dataclass
class HubProcs:
    """Hub processes on 127.0.0.1 started one by one (``open_hubs``), for tests of the hub
    itself: restarts on the same port, replicas on one database, a SIGKILL."""

    root: Path
    secret_file: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    async def start(
        self, db_url: str, *, ttl: float, port: int = 0, extra: Sequence[str] = ()
    ) -> Proc:
        """A new hub on ``db_url``; its URL is ``proc.info["url"]``."""
        log = self.root / f"hub{len(self.procs)}.log"
        proc = await start_proc(
            [*hub_args(db_url, self.secret_file, ttl, port), *extra], log, self.env
        )
        self.procs.append(proc)
        return proc


@contextlib.asynccontextmanager
async def open_hubs(root: Path, secret: str) -> AsyncIterator[HubProcs]:
    """A ``HubProcs`` whose hubs share ``secret`` (a file in ``root``); every hub still
    running is stopped (SIGTERM, then SIGKILL) when the context exits."""
    secret_file = root / "secret"
    await asyncio.to_thread(_prepare_root, root, secret_file, secret)
    hubs = HubProcs(root, secret_file, {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield hubs
    finally:
        await asyncio.gather(*(p.stop() for p in hubs.procs), return_exceptions=True)


@contextlib.asynccontextmanager
async def open_local_swarm(
    root: Path,
    nodes: int,
    *,
    node_extra: Sequence[str] | dict[int, Sequence[str]] = (),
    hub_ttl: float = 3.0,
    node_module: dict[int, str] | None = None,
    secret: str | None = None,
    hubs: int = 1,
    db_url: str | None = None,
    node_hubs: dict[int, Sequence[int]] | None = None,
    hub_extra: Sequence[str] = (),
) -> AsyncIterator[LocalSwarm]:
    """Start ``hubs`` hubs on 127.0.0.1 and ``nodes`` nodes on 127.0.0.2 ... (processes).

    The hubs share one registry database: ``db_url`` (e.g. PostgreSQL), by default a SQLite
    file in ``root``. Each node is given every hub, in order (``--hub A --hub B``), unless
    ``node_hubs`` lists the indices of its hubs. ``hub_extra``: more arguments for every hub."""
    secret_file = root / "secret"
    await asyncio.to_thread(_prepare_root, root, secret_file, secret or secrets.token_hex(32))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    db = db_url or f"sqlite+aiosqlite:///{root / 'hub.db'}"
    procs: list[Proc] = []
    swarm: LocalSwarm | None = None
    try:
        for h in range(hubs):
            log = root / ("hub.log" if h == 0 else f"hub{h}.log")
            args = [*hub_args(db, secret_file, hub_ttl), *hub_extra]
            procs.append(await start_proc(args, log, env))
        swarm = LocalSwarm(
            root=root,
            secret_file=secret_file,
            hub=procs[0],
            hubs=list(procs),
            node_hubs=dict(node_hubs or {}),
        )
        for i in range(nodes):
            extra = node_extra.get(i, ()) if isinstance(node_extra, dict) else node_extra
            module = (node_module or {}).get(i)
            handle = await _start_node(swarm, i, extra, env, module)
            procs.append(handle.proc)
            swarm.nodes.append(handle)
        yield swarm
    finally:
        if swarm is not None:
            procs += swarm.restarted
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)


async def _start_node(
    swarm: LocalSwarm, i: int, extra: Sequence[str], env: dict[str, str], module: str | None
) -> NodeHandle:
    address = f"127.0.0.{i + 2}"
    state = swarm.root / f"node{i}"
    downloads = state / "downloads"
    args = node_args(
        swarm.hub_urls(swarm.node_hubs.get(i)), address, swarm.secret_file, state, downloads, extra
    )
    if module is None:
        proc = await start_proc(args, swarm.root / f"node{i}.log", env)
    else:  # a stand-in node program taking the same arguments (e.g. a corrupting helper)
        command = [sys.executable, "-m", module]
        proc = await start_proc(args[1:], swarm.root / f"node{i}.log", env, command)
    return NodeHandle(i, address, proc, state, downloads)


def _prepare_root(root: Path, secret_file: Path, secret: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(secret)
    secret_file.chmod(0o600)  # as a secret should be (others may not read it)


class NodeApi:
    """A small client of a node's local user API."""

    def __init__(self, session: aiohttp.ClientSession, node: NodeHandle) -> None:
        self._session = session
        self._base = node.api_url
        self._headers = {"Authorization": f"Bearer {node.token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self._session.request(
            method, self._base + path, json=body, headers=self._headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def start(self, url: str, **fields: Any) -> str:
        status, data = await self.call("POST", "/v1/downloads", {"url": url, **fields})
        if status != 201:
            raise RuntimeError(f"download refused: {status} {data}")
        return str(data["id"])

    async def wait(self, download_id: str, limit: float = 120.0) -> dict[str, Any]:
        """Follow the download as ``swarmget get`` does (progress only, the node answering
        at its end or after ``FOLLOW_WAIT`` s) until it ends, then read its full view with
        its events (or ``limit`` seconds pass: TimeoutError)."""
        async with asyncio.timeout(limit):
            path = f"/v1/downloads/{download_id}"
            while True:
                asked = asyncio.get_running_loop().time()
                status, data = await self.call("GET", f"{path}?wait={FOLLOW_WAIT}&events=0")
                if status != 200 or not still_going(data):
                    break
                # not running yet (queued): the node answers at once, so poll gently
                await asyncio.sleep(max(0.0, asked + 0.05 - asyncio.get_running_loop().time()))
            _, data = await self.call("GET", path)
            return dict(data)

    async def download(self, url: str, output: str, limit: float = 120.0) -> dict[str, Any]:
        """Download ``url`` to ``output`` (in the node's download directory) and wait for the
        end: the download's final view, which must be ``done`` (AssertionError otherwise,
        naming the view; TimeoutError after ``limit`` seconds)."""
        done = await self.wait(await self.start(url, output=output), limit)
        if done.get("state") != "done":
            raise AssertionError(f"the download ended {done.get('state')}: {done}")
        return done

    async def status(self) -> dict[str, Any]:
        """``GET /v1/status`` (RuntimeError for any answer but 200)."""
        status, data = await self.call("GET", "/v1/status")
        if status != 200 or not isinstance(data, dict):
            raise RuntimeError(f"GET /v1/status: {status} {data}")
        return data

    async def sharing(self) -> dict[str, Any]:
        """The ``sharing`` part of the node's status (fetch once per LAN, #15)."""
        sharing = (await self.status()).get("sharing")
        if not isinstance(sharing, dict):
            raise RuntimeError(f"the node's status has no sharing part: {sharing!r}")
        return sharing

    async def until_sharing(self, count: str, want: int, limit: float = 30.0) -> dict[str, Any]:
        """Poll until the sharing count ``count`` (``kept_files``, ``announced`` ...) reaches
        ``want`` (TimeoutError after ``limit`` seconds); the sharing part then."""
        async with asyncio.timeout(limit):
            while True:
                sharing = await self.sharing()
                if (sharing[count] or 0) >= want:
                    return sharing
                await asyncio.sleep(0.2)

    async def until_peers(self, count: int, limit: float = 20.0) -> None:
        """Poll until the node sees ``count`` peers (TimeoutError after ``limit`` seconds)."""
        async with asyncio.timeout(limit):
            while True:
                if len(await self.peers()) >= count:
                    return
                await asyncio.sleep(0.2)

    async def peers(self) -> list[dict[str, Any]]:
        """The peers the node sees; none yet while its hub cannot answer for it (it has not
        registered yet, or the hub is away: 503 and a hub error's code). Any other answer
        is an error of the test (RuntimeError)."""
        status, data = await self.call("GET", "/v1/peers")
        if status == 200:
            return list(data["peers"])
        code = data.get("code") if isinstance(data, dict) else None
        if issubclass(USER_ERRORS.for_code(code, status), HubError):  # (503: the hub's rows)
            return []
        raise RuntimeError(f"GET /v1/peers: {status} {data}")
