"""A real HTTP origin for tests, demos and the benchmark, with switchable misbehaviour.

``TestOrigin`` is an aiohttp server on real sockets that stands in for an internet origin.
It serves files under ``/files/{name}``: generated ones (deterministic pseudo-random bytes
held in memory) and real ones (read from disk in chunks). It speaks honest HTTP:

* HEAD and GET, strong quoted ETag, Last-Modified, ``Accept-Ranges: bytes``, Content-Length,
  optional Content-Disposition and RFC 9530 ``Repr-Digest``; never a Content-Encoding.
* One range per request (RFC 9110 §14.2): ``bytes=a-b``, ``a-``, ``-n`` → 206; an
  unsatisfiable one → 416 with ``Content-Range: bytes */size``; several ranges or an invalid
  one → the whole file with 200 (a server may ignore Range). Range only applies to GET.
* ``If-Range`` (§13.1.5) with a strong ETag or the exact Last-Modified date; anything else
  makes the Range be ignored. ``If-Match`` (§13.1.1) mismatch → 412.

Misbehaviours are fields of ``Behaviour``; set them at construction, with
``origin.configure(...)``, or with ``POST /_config`` (JSON). ``POST /_reset`` restores the
behaviour the origin was built with and zeroes the counters; ``GET /_stats`` and
``origin.stats()`` report them. Redirects live under ``/redirect/{n}/{name}``,
``/redirect-loop`` and ``/redirect-to?url=...``.

Run it as a process with ``python -m swarmget.testing.origin --file big=300M``; it prints one
JSON line ``{"base_url": ...}`` once listening and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import dataclasses
import hashlib
import json
import os
import random
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import pydantic
from aiohttp import web
from aiohttp.typedefs import Handler

from swarmget.core.ranges import ByteRange

KiB = 1024
MiB = 1024 * KiB
UNTHROTTLED_CHUNK = 256 * KiB
MAX_THROTTLED_CHUNK = 64 * KiB
MIN_BURST = 64 * KiB
GENERATED_BLOCK = 1 * MiB
ROTATION = 0x9E3779B1  # odd, so blocks i < 2**20 of a generated file get distinct rotations
SERVED_LOG_LIMIT = 100_000
GENERATED_MTIME = 1_700_000_000  # Last-Modified of generated files (version 0)
VERSION_MTIME_STEP = 3600  # each new version of a file is one hour newer
DRAIN_TIMEOUT = 1.0  # how long a drop waits for the client to read what was sent
SHUTDOWN_TIMEOUT = 1.0  # how long close() lets in-flight responses finish

Unsatisfiable = Literal["unsatisfiable"]
UNSATISFIABLE: Unsatisfiable = "unsatisfiable"


# --- behaviour and statistics ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Behaviour:
    """How (badly) the origin behaves. The defaults are a well-behaved server."""

    ignore_range: bool = False  # answer Range requests with 200 and the whole body
    no_content_length: bool = False  # chunked bodies, no length anywhere, no range support
    etag_change_after: int | None = None  # after N body bytes of a file, it changes
    drop_after: int | None = None  # abort the connection after N body bytes of a response
    drop_count: int | None = None  # how many responses to drop (None: every one)
    lie_content_range: bool = False  # 206 carries a Content-Range other than the one sent
    lie_content_range_every: int | None = None  # ... only every Nth 206 (N=3: 3rd, 6th ...)
    unavailable_count: int = 0  # the next N /files requests get `unavailable_status`
    unavailable_status: int = 503
    retry_after: int | None = 1  # seconds in Retry-After on those (None: no header)
    first_byte_delay: float = 0.0  # seconds before the response headers
    rate_per_ip: float | None = None  # bytes/s shared by every connection from one IP
    rate_per_conn: float | None = None  # bytes/s for each response
    announce_size: int | None = None  # HEAD answers claim this Content-Length (any size)

    def __post_init__(self) -> None:
        if self.lie_content_range_every is not None and self.lie_content_range_every < 1:
            raise ValueError("lie_content_range_every must be >= 1")
        for name in (
            "etag_change_after",
            "drop_after",
            "drop_count",
            "retry_after",
            "announce_size",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.unavailable_count < 0 or self.first_byte_delay < 0:
            raise ValueError("unavailable_count and first_byte_delay must be >= 0")
        if not 400 <= self.unavailable_status <= 599:
            raise ValueError(f"unavailable_status must be 4xx or 5xx: {self.unavailable_status}")
        for name in ("rate_per_ip", "rate_per_conn"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")


_BEHAVIOUR_FIELDS = frozenset(f.name for f in dataclasses.fields(Behaviour))
_BEHAVIOUR_ADAPTER = pydantic.TypeAdapter(Behaviour)


def behaviour_from_json(current: Behaviour, body: bytes) -> Behaviour:
    """``current`` updated with a JSON object of fields; ValueError if it is not valid."""
    try:
        update = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(update, dict):
        raise ValueError("expected a JSON object")
    if unknown := sorted(set(update) - _BEHAVIOUR_FIELDS):
        raise ValueError(f"unknown behaviour fields: {', '.join(unknown)}")
    merged = json.dumps({**dataclasses.asdict(current), **update})
    try:
        return _BEHAVIOUR_ADAPTER.validate_json(merged, strict=True)
    except pydantic.ValidationError as exc:
        raise ValueError(str(exc)) from exc


@dataclass(frozen=True, kw_only=True)
class ServedRange:
    """One GET /files response: what was planned (``start``..``end_exclusive``) and sent."""

    ip: str
    file: str
    start: int
    end_exclusive: int
    bytes_sent: int
    status: int


@dataclass(frozen=True, kw_only=True)
class OriginStats:
    """A snapshot of the origin's counters (``/_reset`` zeroes all but the open ones)."""

    bytes_total: int
    bytes_by_ip: Mapping[str, int]
    bytes_by_file: Mapping[str, int]
    requests_by_method: Mapping[str, int]
    open_responses_by_ip: Mapping[str, int]  # handlers running, by client IP
    open_connections_by_ip: Mapping[str, int]  # TCP connections, by client IP
    file_versions: Mapping[str, int]  # 0 until etag_change_after changes a file
    served: tuple[ServedRange, ...]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in out.items()}
        out["served"] = [dataclasses.asdict(s) for s in self.served]
        return out


@dataclass(kw_only=True)
class _Counters:
    bytes_total: int = 0
    bytes_by_ip: collections.Counter[str] = field(default_factory=collections.Counter)
    bytes_by_file: collections.Counter[str] = field(default_factory=collections.Counter)
    requests_by_method: collections.Counter[str] = field(default_factory=collections.Counter)
    served: collections.deque[ServedRange] = field(
        default_factory=lambda: collections.deque(maxlen=SERVED_LOG_LIMIT)
    )


# --- files -------------------------------------------------------------------------------------


def generate_content(size: int, seed: int = 0) -> bytes:
    """The deterministic pseudo-random body of a generated file (see ``_Pattern``)."""
    return _Pattern(size, seed).read(0, size)


class _Pattern:
    """Pseudo-random bytes made on demand from one block, so no file is held in memory.

    Up to 1 MiB the body is ``random.Random(seed).randbytes(size)``. Beyond, block ``i`` of
    1 MiB is that first block rotated by a distinct offset: no two blocks are equal, so a
    piece written at the wrong offset shows, yet reading costs no more than a copy.
    """

    def __init__(self, size: int, seed: int) -> None:
        base = random.Random(seed).randbytes(min(size, GENERATED_BLOCK))
        self._twice = base + base
        self._block = max(1, len(base))

    def read(self, start: int, length: int) -> bytes:
        parts = []
        while length > 0:
            i, offset = divmod(start, self._block)
            k = (i * ROTATION) % self._block + offset
            n = min(length, self._block - offset)
            parts.append(self._twice[k : k + n])
            start, length = start + n, length - n
        return b"".join(parts)


@dataclass(frozen=True)
class _DiskBody:
    """Version ``v`` of a real file: every byte of the file on disk plus ``v`` (mod 256)."""

    path: Path
    version: int

    def read(self, start: int, length: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(start)
            data = f.read(length)
        if self.version % 256 == 0:
            return data
        return data.translate(bytes((b + self.version) % 256 for b in range(256)))


@dataclass(kw_only=True, eq=False)
class _File:
    """One served file; ``version`` goes up when ``etag_change_after`` strikes."""

    name: str
    size: int
    seed: int = 0  # generated files
    path: Path | None = None  # real files
    mtime: int = GENERATED_MTIME
    content_disposition: str | None = None
    digest: bool = False
    version: int = 0
    _patterns: dict[int, _Pattern] = field(default_factory=dict)
    _sha256: dict[int, bytes] = field(default_factory=dict)

    def etag(self, version: int) -> str:
        key = f"{self.name}\0{self.size}\0{self.seed}\0{self.path}\0{self.mtime}\0{version}"
        return '"' + hashlib.sha256(key.encode()).hexdigest()[:24] + '"'

    def last_modified(self, version: int) -> int:
        return self.mtime + version * VERSION_MTIME_STEP

    def body(self, version: int) -> _Pattern | _DiskBody:
        if self.path is not None:
            return _DiskBody(self.path, version)
        if version not in self._patterns:
            self._patterns[version] = _Pattern(self.size, self.seed + version)
        return self._patterns[version]

    async def read(self, start: int, length: int, version: int) -> bytes:
        body = self.body(version)
        if isinstance(body, _DiskBody):
            return await asyncio.to_thread(body.read, start, length)
        return body.read(start, length)

    async def repr_digest(self, version: int) -> str:
        """The RFC 9530 ``Repr-Digest`` value, hashed in a thread the first time."""
        if version not in self._sha256:
            await asyncio.to_thread(self.sha256, version)
        return f"sha-256=:{base64.b64encode(self._sha256[version]).decode()}:"

    def sha256(self, version: int) -> bytes:
        """Digest of the whole body, cached per version (reads the disk for real files)."""
        if version not in self._sha256:
            h, body = hashlib.sha256(), self.body(version)
            for offset in range(0, self.size, 4 * MiB):
                h.update(body.read(offset, min(4 * MiB, self.size - offset)))
            self._sha256[version] = h.digest()
        return self._sha256[version]


# --- pure HTTP helpers ---------------------------------------------------------------------------

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.ASCII | re.IGNORECASE)
_ETAG_RE = re.compile(r'(W/)?"[^"]*"')


def parse_range(header: str, size: int) -> ByteRange | Unsatisfiable | None:
    """The one range a ``Range`` header asks for (RFC 9110 §14.1.2).

    None when the header should be ignored: not bytes, several ranges, or invalid syntax.
    """
    m = _RANGE_RE.fullmatch(header)
    if m is None or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":  # suffix: the last n bytes
        n = int(m[2])
        return ByteRange(max(0, size - n), size) if n > 0 and size > 0 else UNSATISFIABLE
    first = int(m[1])
    last = int(m[2]) if m[2] else size - 1
    if m[2] and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return ByteRange(first, min(last, size - 1) + 1)


def if_range_holds(header: str | None, etag: str, last_modified: int) -> bool:
    """Whether a Range may be honoured given ``If-Range`` (RFC 9110 §13.1.5)."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return header == etag  # strong comparison: a weak tag never matches
    try:
        return int(parsedate_to_datetime(header).timestamp()) == last_modified
    except (TypeError, ValueError):
        return False


def if_match_holds(header: str | None, etag: str) -> bool:
    """Whether ``If-Match`` lets the request proceed (RFC 9110 §13.1.1, strong comparison)."""
    if header is None or header.strip() == "*":
        return True
    return any(m[1] is None and m[0] == etag for m in _ETAG_RE.finditer(header))


def _content_range(r: ByteRange, size: int, lie: bool) -> str:
    start, last = r.start, r.end - 1
    if lie:  # shift the claimed range by one byte, staying inside the file when possible
        shift = 1 if last + 1 < size else -1 if start > 0 else 0
        size += 1 if shift == 0 else 0
        start, last = start + shift, last + shift
    return f"bytes {start}-{last}/{size}"


@dataclass(frozen=True)
class _Plan:
    status: int
    start: int = 0
    end: int = 0
    content_range: str | None = None


@dataclass(kw_only=True)
class _Transfer:
    """What one GET /files response is doing, for the served log."""

    ip: str
    file: _File
    version: int
    start: int = 0
    end: int = 0
    status: int = 0
    sent: int = 0

    def finish(self, resp: web.Response) -> web.Response:
        self.status = resp.status
        return resp

    def served(self) -> ServedRange:
        return ServedRange(
            ip=self.ip,
            file=self.file.name,
            start=self.start,
            end_exclusive=self.end,
            bytes_sent=self.sent,
            status=self.status,
        )


class _TokenBucket:
    """Bytes per second with a small burst; callers may go into debt and then wait it off."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(MIN_BURST, rate / 20)
        self._tokens = self.burst
        self._stamp = asyncio.get_running_loop().time()

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` tokens now; return how many seconds to wait before using them."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= n
        return max(0.0, -self._tokens / self.rate)

    async def take(self, n: int) -> None:
        delay = self.reserve(n, asyncio.get_running_loop().time())
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._tokens += n  # the bytes will not be sent: give them back
            raise


def _chunk_size(*rates: float | None) -> int:
    limits = [r for r in rates if r is not None]
    if not limits:
        return UNTHROTTLED_CHUNK
    return int(min(MAX_THROTTLED_CHUNK, max(KiB, min(limits) / 20)))


def _client_ip(request: web.BaseRequest) -> str:
    return request.remote or "unknown"


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


# --- the server ----------------------------------------------------------------------------------


class TestOrigin:
    """The origin server. Register files, ``await start()``, ``await close()``."""

    __test__ = False  # not a pytest test class

    def __init__(self, behaviour: Behaviour | None = None, **changes: Any) -> None:
        self._initial = dataclasses.replace(behaviour or Behaviour(), **changes)
        self._files: dict[str, _File] = {}
        self._open: collections.Counter[str] = collections.Counter()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self.reset()

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
        self._files[name] = _File(
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
        self._files[name] = _File(
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

    def configure(self, **changes: Any) -> Behaviour:
        """Change some behaviour fields; counts of drops/unavailable restart if given."""
        self._set_behaviour(dataclasses.replace(self.behaviour, **changes), changes.keys())
        return self.behaviour

    def reset(self) -> None:
        """Back to the construction-time behaviour, file versions and zero counters."""
        self._set_behaviour(self._initial, _BEHAVIOUR_FIELDS)
        self._counters = _Counters()
        for f in self._files.values():
            f.version = 0

    def _set_behaviour(self, behaviour: Behaviour, changed: Iterable[str]) -> None:
        self.behaviour = behaviour
        self._ip_buckets: dict[str, _TokenBucket] = {}
        changed = set(changed)
        if "unavailable_count" in changed:
            self._unavailable_left = behaviour.unavailable_count
        if {"drop_after", "drop_count"} & changed:
            self._drops_left = behaviour.drop_count
        if "lie_content_range_every" in changed:
            self._partial_answers = 0

    def stats(self) -> OriginStats:
        c = self._counters
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
        app.router.add_get("/redirect/{n:[0-9]+}/{name}", self._handle_redirect)
        app.router.add_get("/redirect-loop", self._handle_redirect_loop)
        app.router.add_get("/redirect-to", self._handle_redirect_to)
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
        self._counters.requests_by_method[request.method] += 1
        self._open[ip] += 1
        try:
            return await handler(request)
        finally:  # also on cancellation (client gone): the count must come back down
            self._open[ip] -= 1

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        f = self._files.get(request.match_info["name"])
        if f is None:
            raise web.HTTPNotFound()
        t = _Transfer(ip=_client_ip(request), file=f, version=f.version)
        try:
            return await self._respond(request, t)
        finally:  # also when the client went away and the handler was cancelled
            if request.method == "GET":
                self._counters.served.append(t.served())

    async def _respond(self, request: web.Request, t: _Transfer) -> web.StreamResponse:
        if self.behaviour.first_byte_delay:
            await asyncio.sleep(self.behaviour.first_byte_delay)
        t.version = t.file.version
        if self._unavailable_left > 0:
            self._unavailable_left -= 1
            return t.finish(self._unavailable())
        etag = t.file.etag(t.version)
        if not if_match_holds(request.headers.get("If-Match"), etag):
            return t.finish(web.Response(status=412, headers={"ETag": etag}))
        plan = self._plan(request, t.file, t.version)
        t.start, t.end, t.status = plan.start, plan.end, plan.status
        if plan.status == 416:
            return web.Response(status=416, headers={"Content-Range": plan.content_range or ""})
        headers = self._headers(t, plan)
        if t.file.digest:  # RFC 9530 §3: of the whole representation, even on a 206
            headers["Repr-Digest"] = await t.file.repr_digest(t.version)
        resp = web.StreamResponse(status=plan.status, headers=headers)
        if self.behaviour.no_content_length:
            resp.enable_chunked_encoding()
        elif request.method == "HEAD" and self.behaviour.announce_size is not None:
            resp.content_length = self.behaviour.announce_size
        else:
            resp.content_length = plan.end - plan.start
        await resp.prepare(request)
        if request.method == "GET":
            await self._send_body(request, resp, t)
        return resp

    def _unavailable(self) -> web.Response:
        b = self.behaviour
        headers = {} if b.retry_after is None else {"Retry-After": str(b.retry_after)}
        return web.Response(status=b.unavailable_status, headers=headers, text="try later\n")

    def _plan(self, request: web.Request, f: _File, version: int) -> _Plan:
        full = _Plan(200, 0, f.size)
        header = request.headers.get("Range")
        b = self.behaviour
        if header is None or request.method != "GET" or b.ignore_range or b.no_content_length:
            return full
        if_range = request.headers.get("If-Range")
        if not if_range_holds(if_range, f.etag(version), f.last_modified(version)):
            return full
        r = parse_range(header, f.size)
        if r is None:
            return full
        if r == UNSATISFIABLE:
            return _Plan(416, content_range=f"bytes */{f.size}")
        assert isinstance(r, ByteRange)
        return _Plan(206, r.start, r.end, _content_range(r, f.size, self._lie_now()))

    def _lie_now(self) -> bool:
        """Whether this 206 answer gets a shifted Content-Range."""
        every = self.behaviour.lie_content_range_every
        if every is None:
            return self.behaviour.lie_content_range
        self._partial_answers += 1
        return self._partial_answers % every == 0

    def _headers(self, t: _Transfer, plan: _Plan) -> dict[str, str]:
        f, version = t.file, t.version
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f.etag(version),
            "Last-Modified": formatdate(f.last_modified(version), usegmt=True),
        }
        if not self.behaviour.no_content_length:
            headers["Accept-Ranges"] = "bytes"
        if plan.content_range:
            headers["Content-Range"] = plan.content_range
        if f.content_disposition:
            headers["Content-Disposition"] = f.content_disposition
        return headers

    async def _send_body(
        self, request: web.Request, resp: web.StreamResponse, t: _Transfer
    ) -> None:
        drop_at = self._take_drop(t.end - t.start)
        stop = t.end if drop_at is None else t.start + drop_at
        rate = self.behaviour.rate_per_conn
        conn_bucket = _TokenBucket(rate) if rate else None
        chunk = _chunk_size(rate, self.behaviour.rate_per_ip)
        pos = t.start
        try:
            while pos < stop:
                n = min(chunk, stop - pos)
                await self._throttle(t.ip, conn_bucket, n)
                await resp.write(await t.file.read(pos, n, t.version))
                pos += n
                t.sent += n
                self._account(t.ip, t.file, n)
        except ConnectionResetError:  # includes aiohttp's ClientConnectionResetError
            return  # the client went away; the log shows how far it got
        if drop_at is not None:
            await _abort(request)

    def _take_drop(self, body_length: int) -> int | None:
        """Where to cut this response, if it is one the behaviour says to drop."""
        drop_after = self.behaviour.drop_after
        if drop_after is None or body_length <= drop_after or self._drops_left == 0:
            return None
        if self._drops_left is not None:
            self._drops_left -= 1
        return drop_after

    async def _throttle(self, ip: str, conn_bucket: _TokenBucket | None, n: int) -> None:
        if conn_bucket is not None:
            await conn_bucket.take(n)
        rate = self.behaviour.rate_per_ip
        if rate is None:
            return
        bucket = self._ip_buckets.get(ip)
        if bucket is None or bucket.rate != rate:
            bucket = self._ip_buckets[ip] = _TokenBucket(rate)
        await bucket.take(n)

    def _account(self, ip: str, f: _File, n: int) -> None:
        c = self._counters
        c.bytes_total += n
        c.bytes_by_ip[ip] += n
        c.bytes_by_file[f.name] += n
        threshold = self.behaviour.etag_change_after
        if threshold is not None and f.version == 0 and c.bytes_by_file[f.name] >= threshold:
            f.version = 1  # responses already under way keep sending version 0

    async def _handle_redirect(self, request: web.Request) -> web.Response:
        n, name = int(request.match_info["n"]), request.match_info["name"]
        return _redirect(f"/redirect/{n - 1}/{name}" if n > 1 else f"/files/{name}")

    async def _handle_redirect_loop(self, request: web.Request) -> web.Response:
        hop = request.query.get("hop", "0")  # a new URL each time: no loop detection
        return _redirect(f"/redirect-loop?hop={int(hop) + 1 if hop.isdigit() else 1}")

    async def _handle_redirect_to(self, request: web.Request) -> web.Response:
        url = request.query.get("url")
        status = request.query.get("status", "302")
        if not url or status not in {"301", "302", "303", "307", "308"}:
            raise web.HTTPBadRequest(text="need ?url=... and optionally status=30x\n")
        return _redirect(url, int(status))

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
        self._set_behaviour(new, json.loads(body).keys())
        return web.json_response(dataclasses.asdict(self.behaviour))

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(dataclasses.asdict(self.behaviour))


async def _abort(request: web.Request) -> None:
    """Cut the connection once the client has what was sent (so the cut lands at N bytes)."""
    transport = request.transport
    if transport is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT
    # asyncio has no "write buffer empty" event to wait for, hence the polling
    while transport.get_write_buffer_size() > 0 and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    transport.abort()


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


# --- command line ---------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"([0-9]+)([KMG]?)(?:i?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": KiB, "M": MiB, "G": 1024 * MiB}


def parse_size(text: str) -> int:
    """``123``, ``64K``, ``300M``, ``1G`` (binary units) → bytes."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(m[1]) * _SIZE_UNITS[m[2].upper()]


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _generated_spec(text: str) -> tuple[str, int, int]:
    """``NAME=SIZE[:SEED]`` → (name, size, seed)."""
    name, spec = _name_value(text)
    size, _, seed = spec.partition(":")
    if seed and not seed.isdigit():
        raise argparse.ArgumentTypeError(f"not a seed: {seed!r}")
    return name, parse_size(size), int(seed or 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m swarmget.testing.origin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--file",
        action="append",
        default=[],
        type=_generated_spec,
        metavar="NAME=SIZE[:SEED]",
        help="a generated file",
    )
    p.add_argument(
        "--real-file",
        action="append",
        default=[],
        type=_name_value,
        metavar="NAME=PATH",
        help="a file served from disk",
    )
    p.add_argument("--digest", action="store_true", help="send Repr-Digest for every file")
    p.add_argument("--rate-per-ip", type=float, help="bytes/s per client IP")
    p.add_argument("--rate-per-conn", type=float, help="bytes/s per response")
    p.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds")
    p.add_argument("--ignore-range", action="store_true")
    p.add_argument("--no-content-length", action="store_true")
    p.add_argument("--behaviour", default="{}", help="JSON object of more Behaviour fields")
    return p


def _behaviour_from_args(args: argparse.Namespace) -> Behaviour:
    base = Behaviour(
        rate_per_ip=args.rate_per_ip,
        rate_per_conn=args.rate_per_conn,
        first_byte_delay=args.first_byte_delay,
        ignore_range=args.ignore_range,
        no_content_length=args.no_content_length,
    )
    return behaviour_from_json(base, args.behaviour.encode())


def _origin_from_args(args: argparse.Namespace) -> TestOrigin:
    origin = TestOrigin(_behaviour_from_args(args))
    for name, size, seed in args.file:
        origin.add_generated(name, size, seed, digest=args.digest)
    for name, path in args.real_file:
        origin.add_file(name, path, digest=args.digest)
    return origin


async def _serve(origin: TestOrigin, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, announcing the base URL on stdout once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await origin.start(host, port)
    try:
        print(json.dumps({"base_url": origin.base_url, "pid": os.getpid()}), flush=True)
        await stop.wait()
    finally:
        await origin.close()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        origin = _origin_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    asyncio.run(_serve(origin, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
