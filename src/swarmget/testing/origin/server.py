"""``TestOrigin``: the aiohttp server that serves the files, misbehaves on request and
answers the control routes (``/_config``, ``/_reset``, ``/_stats``) and the redirects."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from swarmget.testing.origin.behaviour import (
    BEHAVIOUR_FIELDS,
    SHUTDOWN_TIMEOUT,
    Behaviour,
    Counters,
    OriginStats,
    behaviour_from_json,
)
from swarmget.testing.origin.files import ServedFile
from swarmget.testing.origin.responses import OriginState, Transfer, respond


def _client_ip(request: web.BaseRequest) -> str:
    return request.remote or "unknown"


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


class TestOrigin:
    """The origin server. Register files, ``await start()``, ``await close()``."""

    __test__ = False  # not a pytest test class

    def __init__(self, behaviour: Behaviour | None = None, **changes: Any) -> None:
        self._initial = dataclasses.replace(behaviour or Behaviour(), **changes)
        self._files: dict[str, ServedFile] = {}
        self._open: collections.Counter[str] = collections.Counter()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._state = OriginState(self._initial)

    # --- files --------------------------------------------------------------------------------

    def add_generated(
        self,
        name: str,
        size: int,
        seed: int = 0,
        *,
        content_disposition: str | None = None,
        digest: bool = False,
    ) -> None:
        """Serve ``generate_content(size, seed)`` at ``/files/{name}``."""
        self._files[name] = ServedFile(
            name=name, size=size, seed=seed, content_disposition=content_disposition, digest=digest
        )

    def add_file(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        content_disposition: str | None = None,
        digest: bool = False,
    ) -> None:
        """Serve the file at ``path`` from disk (with ``digest``, it is hashed on first use)."""
        p = Path(path)
        st = p.stat()
        self._files[name] = ServedFile(
            name=name,
            size=st.st_size,
            path=p,
            mtime=int(st.st_mtime),
            content_disposition=content_disposition,
            digest=digest,
        )

    def content(self, name: str, version: int | None = None) -> bytes:
        """The whole body of a file (default: its current version); real files are read."""
        f = self._files[name]
        return f.body(f.version if version is None else version).read(0, f.size)

    def expected_sha256(self, name: str, version: int | None = None) -> str:
        """Hex SHA-256 of a file's body (default: current version). Reads real files."""
        f = self._files[name]
        return f.sha256(f.version if version is None else version).hex()

    def etag(self, name: str) -> str:
        """The current ETag of a file, quotes included."""
        f = self._files[name]
        return f.etag(f.version)

    # --- behaviour and counters ---------------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        return self._state.behaviour

    def configure(self, **changes: Any) -> Behaviour:
        """Change some behaviour fields; counts of drops/unavailable restart if given."""
        self._state.set_behaviour(dataclasses.replace(self.behaviour, **changes), changes.keys())
        return self.behaviour

    def reset(self) -> None:
        """Back to the construction-time behaviour, file versions and zero counters."""
        self._state.set_behaviour(self._initial, BEHAVIOUR_FIELDS)
        self._state.counters = Counters()
        for f in self._files.values():
            f.version = 0

    def stats(self) -> OriginStats:
        c = self._state.counters
        return OriginStats(
            bytes_total=c.bytes_total,
            bytes_by_ip=MappingProxyType(dict(c.bytes_by_ip)),
            bytes_by_file=MappingProxyType(dict(c.bytes_by_file)),
            requests_by_method=MappingProxyType(dict(c.requests_by_method)),
            open_responses_by_ip=MappingProxyType(dict(+self._open)),
            open_connections_by_ip=MappingProxyType(self._open_connections()),
            file_versions=MappingProxyType({n: f.version for n, f in self._files.items()}),
            served=tuple(c.served),
        )

    def _open_connections(self) -> dict[str, int]:
        server = self._runner.server if self._runner else None
        transports = [h.transport for h in server.connections] if server else []
        peers = [t.get_extra_info("peername") for t in transports if t is not None]
        return dict(collections.Counter(p[0] for p in peers if p))

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the origin is not started")
        return self._base_url

    def url(self, name: str) -> str:
        return f"{self.base_url}/files/{name}"

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Listen on ``host:port`` (0: any free port); with ``ssl_context``, over TLS
        (``base_url`` is then https)."""
        runner = web.AppRunner(
            self._make_app(),
            handler_cancellation=True,  # a client that goes away cancels its handler
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
        )
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        except BaseException:
            await self.close()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        scheme = "http" if ssl_context is None else "https"
        self._base_url = f"{scheme}://{shown}:{bound_port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._track])
        app.router.add_get("/files/{name}", self._handle_file)  # and HEAD
        app.router.add_get("/redirect/{n:[0-9]+}/{name}", _handle_redirect)
        app.router.add_get("/redirect-loop", _handle_redirect_loop)
        app.router.add_get("/redirect-to", _handle_redirect_to)
        app.router.add_get("/_stats", self._handle_stats)
        app.router.add_get("/_config", self._handle_get_config)
        app.router.add_post("/_config", self._handle_post_config)
        app.router.add_post("/_reset", self._handle_reset)
        return app

    # --- handlers -----------------------------------------------------------------------------

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count requests and open responses by client IP (control routes excepted)."""
        if request.path.startswith("/_"):
            return await handler(request)
        ip = _client_ip(request)
        self._state.counters.requests_by_method[request.method] += 1
        self._open[ip] += 1
        try:
            return await handler(request)
        finally:  # also on cancellation (client gone): the count must come back down
            self._open[ip] -= 1

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        f = self._files.get(request.match_info["name"])
        if f is None:
            raise web.HTTPNotFound()
        t = Transfer(ip=_client_ip(request), file=f, version=f.version)
        try:
            return await respond(request, t, self._state)
        finally:  # also when the client went away and the handler was cancelled
            if request.method == "GET":
                self._state.counters.served.append(t.served())

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats().to_json())

    async def _handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(self.behaviour))

    async def _handle_post_config(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            new = behaviour_from_json(self.behaviour, body)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self._state.set_behaviour(new, json.loads(body).keys())
        return web.json_response(dataclasses.asdict(self.behaviour))

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(dataclasses.asdict(self.behaviour))


async def _handle_redirect(request: web.Request) -> web.Response:
    n, name = int(request.match_info["n"]), request.match_info["name"]
    return _redirect(f"/redirect/{n - 1}/{name}" if n > 1 else f"/files/{name}")


async def _handle_redirect_loop(request: web.Request) -> web.Response:
    hop = request.query.get("hop", "0")  # a new URL each time: no loop detection
    return _redirect(f"/redirect-loop?hop={int(hop) + 1 if hop.isdigit() else 1}")


async def _handle_redirect_to(request: web.Request) -> web.Response:
    url = request.query.get("url")
    status = request.query.get("status", "302")
    if not url or status not in {"301", "302", "303", "307", "308"}:
        raise web.HTTPBadRequest(text="need ?url=... and optionally status=30x\n")
    return _redirect(url, int(status))


@asynccontextmanager
async def open_test_origin(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **behaviour: Any,
) -> AsyncIterator[TestOrigin]:
    """A started ``TestOrigin`` with the given ``Behaviour`` fields, closed on exit."""
    origin = TestOrigin(**behaviour)
    await origin.start(host, port, ssl_context=ssl_context)
    try:
        yield origin
    finally:
        await origin.close()
