"""Range requests to plain-HTTP origins on connections of our own: the fast path.

Why it exists
    Through aiohttp every body chunk is read by the event loop, copied once more by the
    response parser and handed over in at most 256 KiB pieces, each with Python work around
    it; on a fast link (loopback, a LAN, a 10 Gbit/s origin) that is where a core goes.
    Here the body is read by a worker thread straight into reused 1 MiB buffers with
    ``recv_into`` (one copy, from the kernel into the buffer the file is written from), and
    the event loop sees one chunk per buffer. Through a capped link the thread asks the
    kernel to wake it for ~50 ms of data at a time (``SO_RCVLOWAT``, ``net.lowat``), not for
    every packet.

What it does
    ``RawHttp.request(method, url, headers)`` sends a ``GET`` or ``HEAD`` on a pooled
    keep-alive connection (or a new one), reads the response head on the event loop and
    parses it with ``core.http1``
    (strictly), and yields a ``RawResponse``; its ``body(expected)`` is the async iterator of
    chunks. What the answer *means* (206 with the right Content-Range, a changed ETag ...)
    is still decided by ``core.http``, by the caller (``OriginClient``).

When it is not used
    ``supports(url)`` is only true for ``http://`` URLs without credentials in them. TLS
    origins and whole-file streams stay on aiohttp. A response whose body has a
    Transfer-Encoding raises ``RawUnsupported`` before anything is yielded: the caller
    repeats the request through aiohttp (and stops using this path for that origin).
    Only ``swarmget get`` uses this client. The node daemons (helpers, their own
    downloads, the streams between them) and the relay stay on aiohttp: behind capped links
    (many streams of a few MiB/s) a reading thread per stream costs more CPU, and the swarm
    lost efficiency, than the event loop reading sockets that ``SO_RCVLOWAT`` batches
    (measured: bench/README.md, "The raw range client"). One copy less matters on fast
    streams; many slow ones are the event loop's strength.

The same rules as aiohttp's path
    * every connect is checked against the ``AddressPolicy`` (if one is given) on the
      address actually connected to, after resolution, like ``net.guard``'s socket factory;
    * ``local_addr`` binds the source address (nodes on 127.0.0.x, multi-homed hosts);
    * connect timeout, and a read timeout on any wait for the next bytes;
    * failures are the error tree's: ``SourceRetryable`` (connect, reset, timeout, a body
      cut short by a dropped connection), ``SourceBroken`` (a malformed head, a body that
      ends cleanly but short, or is longer than promised), ``ForbiddenTarget``.

Chunks and buffers
    Read by ``net.rawbody``: a chunk is a ``memoryview`` of a reused buffer, valid for as
    long as the caller holds it.

Connections
    A connection goes back to the pool only when its body was read to the end and the head
    allowed it (``ResponseHead.reusable``); anything else closes it. A pooled connection
    that the server closed meanwhile is noticed before use (a peek) or, in the race where it
    closes just as we send, by the answer failing before its first byte: that request is
    sent again once, on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from yarl import URL

from swarmget.core.addresses import AddressPolicy
from swarmget.core.errors import ForbiddenTarget, SourceBroken, SourceRetryable, UsageError
from swarmget.core.http1 import (
    ResponseHead,
    build_request,
    find_head_end,
    parse_response_head,
)
from swarmget.net.rawbody import (
    RAW_CHUNK,
    RawBody,
    RawConn,
    RawResponse,
    RawUnsupported,
    is_free,
)
from swarmget.net.transport import raw_can_fetch

__all__ = ["RAW_CHUNK", "RawBody", "RawHttp", "RawResponse", "RawUnsupported"]

#: Buffers the client keeps for its next bodies.
_SPARE_BUFFERS = 16
#: A pooled connection idle longer than this is closed rather than reused.
IDLE_LIMIT = 4.0
_MAX_IDLE_PER_HOST = 16
_MAX_INTERIM = 8  # 1xx answers skipped before the real one


class RawHttp:
    """A pool of plain-HTTP connections and the threads that read bodies from them.

    Owned by whoever made it: ``aclose()`` closes idle connections and stops the threads.
    """

    def __init__(
        self,
        *,
        policy: AddressPolicy | None = None,
        local_addr: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_streams: int = 32,
    ) -> None:
        if local_addr is not None:
            try:
                ipaddress.ip_address(local_addr)
            except ValueError as exc:
                raise UsageError(
                    f"the source address must be an IP address: {local_addr!r}"
                ) from exc
        self._policy = policy
        self._local_addr = local_addr
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[tuple[str, int], list[RawConn]] = {}
        self._spare: list[bytearray] = []  # RAW_CHUNK buffers of finished bodies
        self._executor = ThreadPoolExecutor(max_streams, thread_name_prefix="swarmget-raw")
        self._closed = False
        #: connections opened so far (tests and statistics)
        self.connects = 0

    @staticmethod
    def supports(url: str) -> bool:
        """True for an ``http://`` URL without user or password in it."""
        return raw_can_fetch(url)

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.sock.close()
        self._idle.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> RawHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def request(
        self, method: str, url: str, headers: Mapping[str, str], what: str
    ) -> AsyncIterator[RawResponse]:
        """Send ``method url`` (GET or HEAD) with ``headers`` and yield the response, head
        read. Leaving the block returns the connection to the pool if its body was read to
        the end (a HEAD answer has none), else closes it."""
        if method not in ("GET", "HEAD"):
            raise ValueError(f"the raw client only sends GET and HEAD, not {method}")
        if self._closed:
            raise RuntimeError("RawHttp is closed")
        parsed = URL(url)
        host = parsed.raw_host
        assert host is not None
        assert parsed.port is not None
        key = (host, parsed.port)
        request = build_request(
            method, parsed.raw_path_qs, parsed.host_port_subcomponent or host, headers.items()
        )
        conn, head, rest = await self._exchange(key, request, what)
        response = RawResponse(self, conn, head, rest, what, head_only=method == "HEAD")
        try:
            yield response
        finally:
            response.close()

    async def _exchange(
        self, key: tuple[str, int], request: bytes, what: str
    ) -> tuple[RawConn, ResponseHead, bytes]:
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._send_and_read_head(conn, request, what)
            except _StaleConnection:
                pass  # the server closed it while it was idle: once more, on a new one
        conn = await self._connect(key, what)
        try:
            return await self._send_and_read_head(conn, request, what)
        except _StaleConnection as exc:
            raise SourceRetryable(f"{what}: connection closed before the response") from exc

    async def _send_and_read_head(
        self, conn: RawConn, request: bytes, what: str
    ) -> tuple[RawConn, ResponseHead, bytes]:
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        try:
            async with asyncio.timeout(self.read_timeout):
                await loop.sock_sendall(conn.sock, request)
                for _ in range(_MAX_INTERIM + 1):
                    end = find_head_end(buffer)
                    while end is None:
                        data = await loop.sock_recv(conn.sock, 65536)
                        if not data:
                            if not buffer:
                                raise _StaleConnection()
                            raise SourceRetryable(f"{what}: connection closed inside the head")
                        start = len(buffer)
                        buffer += data
                        end = find_head_end(buffer, start)
                    head = parse_response_head(bytes(buffer[:end]))
                    del buffer[:end]
                    if head.status >= 200:
                        return conn, head, bytes(buffer)
                raise SourceBroken(f"{what}: more than {_MAX_INTERIM} interim responses")
        except _StaleConnection:
            conn.sock.close()
            if conn.reused:
                raise
            raise SourceRetryable(f"{what}: connection closed before the response") from None
        except (ConnectionError, TimeoutError, OSError) as exc:
            conn.sock.close()
            if conn.reused and not buffer and isinstance(exc, ConnectionError):
                raise _StaleConnection() from exc
            reason = (
                "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            )
            raise SourceRetryable(f"{what}: {reason}") from exc
        except BaseException:
            conn.sock.close()
            raise

    async def _connect(self, key: tuple[str, int], what: str) -> RawConn:
        loop = asyncio.get_running_loop()
        host, port = key
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise SourceRetryable(f"{what}: cannot resolve {host}: {exc}") from exc
        refused: ForbiddenTarget | None = None
        failure: BaseException | None = None
        for family, type_, proto, _, sockaddr in infos:
            if self._policy is not None:
                try:
                    self._policy.check(str(sockaddr[0]))
                except ForbiddenTarget as exc:
                    refused = refused or ForbiddenTarget(f"{what}: {exc}")
                    continue
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                if self._local_addr is not None:
                    sock.bind((self._local_addr, 0))
                async with asyncio.timeout(self.connect_timeout):
                    await loop.sock_connect(sock, sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, TimeoutError) as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            self.connects += 1
            return RawConn(sock, key)
        if failure is None and refused is not None:
            raise refused
        if failure is None:
            raise SourceRetryable(f"{what}: {host} has no address")
        reason = "connect timed out" if isinstance(failure, TimeoutError) else str(failure)
        raise SourceRetryable(f"{what}: {reason}") from failure

    def _take_idle(self, key: tuple[str, int]) -> RawConn | None:
        conns = self._idle.get(key)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since <= IDLE_LIMIT and _still_open(conn.sock):
                conn.reused = True
                return conn
            conn.sock.close()
        return None

    def give_back(self, conn: RawConn) -> None:
        conns = self._idle.setdefault(conn.key, [])
        if self._closed or len(conns) >= _MAX_IDLE_PER_HOST:
            conn.sock.close()
            return
        conn.sock.setblocking(False)
        conn.idle_since = time.monotonic()
        conns.append(conn)

    def spare_buffer(self) -> bytearray | None:
        while self._spare:
            buf = self._spare.pop()
            if is_free(buf):
                return buf
        return None

    def keep_buffers(self, buffers: list[bytearray]) -> None:
        for buf in buffers:
            if len(buf) == RAW_CHUNK and len(self._spare) < _SPARE_BUFFERS and not self._closed:
                self._spare.append(buf)

    def submit_read(self, body: RawBody, buf: bytearray, want: int) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, body.fill, buf, want)


class _StaleConnection(Exception):
    """A reused connection ended before any byte of the answer."""


def _still_open(sock: socket.socket) -> bool:
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing to read: open and quiet, as it should be
    except OSError:
        return False
    return False  # EOF, or bytes nobody asked for: not reusable either way
