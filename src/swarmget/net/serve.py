"""Listening for HTTP: every swarmget server (the hub, a node's peer API and its local API with
the portal, the relay) opens its socket with ``open_listener``, which adds the limits an
aiohttp server does not have by itself.

Theory of operation. Left alone, aiohttp reads a request head for as long as the client
cares to send it (its keep-alive timer, an hour by default, is the only clock), reads a body
without any deadline and accepts any number of connections from one address. A few hundred
half-sent requests ("slowloris") then hold as many file descriptors until the process hits
``RLIMIT_NOFILE``, stops accepting connections and cannot open its own files. And every
malformed request is logged with a full traceback, so a flood of them fills the disk.

``ListenLimits`` (``swarmget.core.listening``, with the bookkeeping of open connections;
defaults in brackets; every server takes its own):

* ``head_timeout`` [10 s]: each request head (request line and header fields) must be
  complete within this long of its first byte (for the first request of a connection: of
  the connection opening); otherwise the connection is closed.
* ``body_timeout`` [30 s]: the whole body within this long of its head (our APIs take
  bodies of at most 1 MiB). Time the server itself is not reading (flow control) is not the
  client's: then the deadline moves on.
* ``idle_timeout`` [75 s]: an idle keep-alive connection between requests is closed (longer
  than the 15 s aiohttp clients keep idle connections, so it is they who close first).
* ``per_address`` [64]: open connections from one IP address; more get ``503`` with
  ``Retry-After: 1`` and are closed at once. Addresses in ``uncounted`` (trusted reverse
  proxies, which speak for many clients) have no per-address cap.
* ``max_connections`` [half the soft ``RLIMIT_NOFILE``]: open connections in all, so that the
  process keeps descriptors for its database, files and outgoing connections.

None of these bounds the time to *write* a response: helpers stream ranges for minutes and
the local API's progress streams stay open; a handler at work is never interrupted.

Logging: the server's own lines (malformed requests, timeouts, refused connections, handler
errors) go to the ``swarmget.http`` logger through one ``EventBudget`` per listener (a burst
of ``LOG_BURST`` lines, then one per ``1 / LOG_RATE`` s, with a count of the lines left out).
A malformed request or a client that went away mid-request is one short line, never a
traceback; only a handler's own failure (a bug) keeps its traceback.

Out of descriptors. Connections over a limit are accepted and closed at once, so a burst can
still take the process to ``RLIMIT_NOFILE`` for a moment. asyncio then stops accepting on
that socket for a second and reports each failed ``accept()`` to the loop's exception handler,
which logs a traceback per attempt. ``_AcceptErrors`` takes those reports for our listening
sockets and logs one line through the listener's budget; the listen backlog (how many
connections asyncio accepts in one go) is sized so that a burst fits in the descriptors left
over by ``max_connections``, while the kernel's queue of connections waiting to be accepted
stays ``MAX_BACKLOG`` long.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import resource
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from swarmget.core.addresses import IPAddress
from swarmget.core.errors import UsageError
from swarmget.core.listening import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PER_ADDRESS,
    ConnectionTable,
    ListenLimits,
    Refusal,
)
from swarmget.core.ratelimit import EventBudget

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_PER_ADDRESS",
    "LOG",
    "ConnectionTable",
    "Listening",
    "ListenLimits",
    "Refusal",
    "open_listener",
]

LOG = logging.getLogger("swarmget.http")

LOG_BURST = 20  # server log lines at once ...
LOG_RATE = 0.2  # ... then this many per second
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)


MAX_BACKLOG = 128  # aiohttp's default
ACCEPT_PAUSE = 1.0  # asyncio's pause after a failed accept() (constants.ACCEPT_RETRY_DELAY)
_ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _soft_nofile() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _total(limits: ListenLimits) -> int:
    """``max_connections``, or half the soft limit on open files."""
    if limits.max_connections is not None:
        return limits.max_connections
    soft = _soft_nofile()
    return 4096 if soft is None else max(8, soft // 2)


def _backlog(total: int) -> int:
    """How many connections asyncio may accept in one go: a quarter of the descriptors not
    taken by ``total`` open connections (several batches can be open before the refused ones
    are closed), between 8 and ``MAX_BACKLOG``."""
    soft = _soft_nofile()
    if soft is None:
        return MAX_BACKLOG
    return max(8, min(MAX_BACKLOG, (soft - total) // 4))


class _AcceptErrors:
    """The loop's exception handler while listeners are open: a failed ``accept()`` on one
    of our listening sockets for want of descriptors or memory (asyncio pauses that socket
    for a second and reports every attempt) becomes one line in that listener's log budget;
    any other report goes to the handler that was there before."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._guards: dict[int, _Guard] = {}
        self._quiet_until: dict[int, float] = {}  # one line per pause of a socket

    @classmethod
    def watch(cls, loop: asyncio.AbstractEventLoop, fds: list[int], guard: _Guard) -> None:
        current = loop.get_exception_handler()
        owner = getattr(current, "__self__", None)
        if not isinstance(owner, cls):
            owner = cls(loop)
            loop.set_exception_handler(owner.handle)
        for fd in fds:
            owner._guards[fd] = guard

    @classmethod
    def unwatch(cls, loop: asyncio.AbstractEventLoop, fds: list[int]) -> None:
        owner = getattr(loop.get_exception_handler(), "__self__", None)
        if not isinstance(owner, cls):
            return
        for fd in fds:
            owner._guards.pop(fd, None)
            owner._quiet_until.pop(fd, None)
        if not owner._guards:
            loop.set_exception_handler(owner._previous)

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        sock = context.get("socket")
        fileno = getattr(sock, "fileno", None)
        fd = fileno() if callable(fileno) else None
        guard = self._guards.get(fd) if isinstance(fd, int) else None
        if guard is not None and isinstance(exc, OSError) and exc.errno in _ACCEPT_RESOURCE_ERRNOS:
            assert isinstance(fd, int)
            now = loop.time()
            if now >= self._quiet_until.get(fd, 0.0):  # asyncio reports every attempt
                self._quiet_until[fd] = now + ACCEPT_PAUSE
                guard.log(
                    logging.WARNING,
                    "not accepting connections for a second: %s",
                    os.strerror(exc.errno or 0).lower(),
                )
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


class _Guard:
    """What the connections of one listener share: limits, the table, the log budget."""

    def __init__(self, limits: ListenLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.total = _total(limits)
        self.table = ConnectionTable(
            per_address=limits.per_address, total=self.total, uncounted=limits.uncounted
        )
        self._budget = EventBudget(LOG_RATE, LOG_BURST)
        self._loop = loop

    def log(self, level: int, msg: str, *args: object, **kwargs: Any) -> None:
        if not LOG.isEnabledFor(level) or not self._budget.allow(self._loop.time()):
            return
        if skipped := self._budget.take_skipped():
            msg, args = msg + " (%d similar lines left out)", (*args, skipped)
        LOG.log(level, msg, *args, **kwargs)


def _client_of(transport: asyncio.BaseTransport) -> IPAddress | None:
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return None
    try:
        ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


#: Errors that say the client sent garbage or went away: one short line, no traceback.
_CLIENT_FAULTS = (HttpProcessingError, RequestPayloadError, ConnectionError)


class _GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol plus the deadlines and counting of ``ListenLimits``.

    It reads three attributes ``RequestHandler`` keeps to itself: ``_request_count`` (heads
    parsed so far), ``_messages`` (parsed requests not yet handled, with their bodies) and
    ``_waiter`` (set while it waits for the next request); tests/net/test_serve.py fails if
    an aiohttp release changes them.
    """

    def __init__(self, manager: web.Server, *, guard: _Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._client: IPAddress | None = None
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._heads = 0
        self._body: StreamReader | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client = _client_of(transport)
        refusal = self._guard.table.admit(self._client)
        if refusal is not None:
            self._guard.log(
                logging.WARNING, "refused a connection from %s: %s", self._client, refusal.value
            )
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_BUSY)
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)
        self._arm(self._guard.limits.head_timeout, self._head_due)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._disarm()
        self._body = None
        self._guard.table.release(self._client)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_count != self._heads:  # one or more heads complete
            self._heads = self._request_count
            self._disarm()
            body = self._messages[-1][1] if self._messages else None
            if body is not None and not body.is_eof():
                self._body = body
                self._arm(self._guard.limits.body_timeout, self._body_due)
        elif self._body is not None:
            if self._body.is_eof():
                self._body = None
                self._disarm()
        elif data and self._deadline is None:  # the first bytes of the next head
            self._arm(self._guard.limits.head_timeout, self._head_due)

    # --- deadlines ------------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _waiting_for_request(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _head_due(self) -> None:
        self._deadline = None
        # a handler at work (or a pipelined head behind it) is left to the idle timeout
        if self.transport is not None and self._waiting_for_request():
            self._guard.log(
                logging.INFO,
                "closed a connection from %s: no complete request head within %g s",
                self._client,
                self._guard.limits.head_timeout,
            )
            self.transport.abort()

    def _body_due(self) -> None:
        self._deadline = None
        body, self._body = self._body, None
        if self.transport is None or body is None or body.is_eof():
            return
        if self._reading_paused:  # we are not reading it: not the client's delay
            self._body = body
            self._arm(self._guard.limits.body_timeout, self._body_due)
            return
        self._guard.log(
            logging.INFO,
            "closed a connection from %s: request body not complete within %g s",
            self._client,
            self._guard.limits.body_timeout,
        )
        self.transport.abort()

    # --- logging --------------------------------------------------------------------------------

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, _CLIENT_FAULTS):
            self._guard.log(logging.INFO, "bad request from %s: %s", self._client, _short(exc))
        else:
            self._guard.log(logging.ERROR, *args, **kw)


def _short(exc: BaseException) -> str:
    """One line saying what was wrong with a request (no bytes of it, no traceback)."""
    if isinstance(exc, HttpProcessingError):
        first = (exc.message or "").strip().splitlines()
        text = f"{exc.code} {first[0].rstrip(':') if first else type(exc).__name__}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:120].encode("ascii", "backslashreplace").decode()


class _Site(web.BaseSite):
    """A TCP site whose connections are ``_GuardedHandler``s."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        factory: Callable[[], RequestHandler],
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = MAX_BACKLOG,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._factory = factory

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory, self._host, self._port, backlog=self._backlog, ssl=self._ssl_context
        )


class _SockSite(web.BaseSite):
    """The same guarded connections on a socket bound by the caller (the node's Unix socket)."""

    def __init__(
        self,
        runner: web.AppRunner,
        sock: socket.socket,
        factory: Callable[[], RequestHandler],
        backlog: int = MAX_BACKLOG,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._sock = sock
        self._factory = factory

    @property
    def name(self) -> str:
        return f"unix:{self._sock.getsockname()}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory, sock=self._sock, backlog=self._backlog
        )


def _listening_fds(site: web.BaseSite) -> list[int]:
    """The site's listening sockets; their kernel accept queue is set to ``MAX_BACKLOG``
    (asyncio uses one number for that queue and for its accept batch: the batch is
    ``_backlog``, the queue stays long so that a burst of clients is not dropped)."""
    server = site._server  # the asyncio.Server started above
    if not isinstance(server, asyncio.Server):
        return []
    for sock in server.sockets:
        with sock.dup() as same:  # the same socket: listen() again only resizes the queue
            same.listen(MAX_BACKLOG)
    return [sock.fileno() for sock in server.sockets]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listening:
    """Where a listener is bound (``port`` is the real one when 0 was asked for)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def bind_failure(host: str, port: int, exc: OSError, option: str) -> str:
    """One line for a failed bind: what, why in plain words, and the setting to change."""
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason += " (another swarmget service or program listens there)"
    hint = f"; choose another port with {option}" if option else ""
    return f"cannot listen on {host}:{port}: {reason}{hint}"


@contextlib.asynccontextmanager
async def open_listener(
    app: web.Application,
    host: str,
    port: int,
    *,
    limits: ListenLimits | None = None,
    shutdown_timeout: float = 60.0,
    handler_cancellation: bool = False,
    unix: socket.socket | None = None,
    option: str = "",
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Listening]:
    """Serve ``app`` on ``host:port`` with ``limits`` while the block runs (and on ``unix``,
    an already bound listening socket, when given); on exit stop listening and give requests
    in flight ``shutdown_timeout`` seconds. With ``ssl_context`` the TCP listener speaks TLS.
    Raises ``UsageError`` when the address cannot be bound, in one line naming ``option``
    (the setting that chooses the port)."""
    limits = limits or ListenLimits()
    runner = web.AppRunner(
        app,
        handler_cancellation=handler_cancellation,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    watched: list[int] = []
    try:
        server = runner.server
        assert server is not None  # set up above
        guard = _Guard(limits, loop)
        backlog = _backlog(guard.total)
        handler_args: dict[str, Any] = {
            "loop": loop,
            "guard": guard,
            "keepalive_timeout": limits.idle_timeout,
            "logger": LOG,
            "access_log": None,
        }

        def factory() -> RequestHandler:
            return _GuardedHandler(server, **handler_args)

        sites: list[web.BaseSite] = [_Site(runner, host, port, factory, ssl_context, backlog)]
        try:
            await sites[0].start()
        except OSError as exc:
            raise UsageError(bind_failure(host, port, exc, option)) from exc
        if unix is not None:
            sites.append(_SockSite(runner, unix, factory, backlog))
            await sites[-1].start()
        watched = [fd for site in sites for fd in _listening_fds(site)]
        _AcceptErrors.watch(loop, watched, guard)
        bound = runner.addresses[0]
        yield Listening(host=bound[0], port=bound[1])
    finally:
        _AcceptErrors.unwatch(loop, watched)
        await runner.cleanup()
