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
    A chunk is a ``memoryview`` of a buffer. It stays valid for as long as the caller holds
    it: a buffer is only refilled once no view of it is left (CPython counts the views: a
    ``bytearray`` with exports cannot be resized, which is what ``_free`` asks).

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
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from swarmget.core.addresses import AddressPolicy
from swarmget.core.errors import ForbiddenTarget, SourceBroken, SourceRetryable, UsageError
from swarmget.core.http1 import (
    ResponseHead,
    build_request,
    find_head_end,
    parse_response_head,
)
from swarmget.net.lowat import ReadCoalescer

__all__ = ["RAW_CHUNK", "RawBody", "RawHttp", "RawResponse", "RawUnsupported"]

#: Largest chunk (and buffer) a raw body yields.
RAW_CHUNK = 1024 * 1024
#: A chunk is handed over at the latest this long after its first byte arrived.
FLUSH_AFTER = 0.05
#: How often a reading thread looks up from the socket (to stop, or to hand over).
_POLL = 0.05
#: Buffers a body keeps for reuse, and the client for its next bodies.
_BUFFERS = 4
_SPARE_BUFFERS = 16
#: A pooled connection idle longer than this is closed rather than reused.
IDLE_LIMIT = 4.0
_MAX_IDLE_PER_HOST = 16
_MAX_INTERIM = 8  # 1xx answers skipped before the real one
#: A read with no byte for this long gives its thread back (and is started again).
_MAX_WAIT = 0.5
_NOTHING_YET = -1


class RawUnsupported(Exception):
    """The answer is framed in a way this client leaves to aiohttp (Transfer-Encoding)."""


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    key: tuple[str, int]
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)


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
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._spare: list[bytearray] = []  # RAW_CHUNK buffers of finished bodies
        self._executor = ThreadPoolExecutor(max_streams, thread_name_prefix="swarmget-raw")
        self._closed = False
        #: connections opened so far (tests and statistics)
        self.connects = 0

    @staticmethod
    def supports(url: str) -> bool:
        """True for an ``http://`` URL without user or password in it."""
        try:
            parsed = URL(url)
        except ValueError:
            return False
        return (
            parsed.scheme == "http"
            and parsed.raw_host is not None
            and parsed.user is None
            and parsed.password is None
        )

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
    ) -> tuple[_Conn, ResponseHead, bytes]:
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
        self, conn: _Conn, request: bytes, what: str
    ) -> tuple[_Conn, ResponseHead, bytes]:
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

    async def _connect(self, key: tuple[str, int], what: str) -> _Conn:
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
            return _Conn(sock, key)
        if failure is None and refused is not None:
            raise refused
        if failure is None:
            raise SourceRetryable(f"{what}: {host} has no address")
        reason = "connect timed out" if isinstance(failure, TimeoutError) else str(failure)
        raise SourceRetryable(f"{what}: {reason}") from failure

    def _take_idle(self, key: tuple[str, int]) -> _Conn | None:
        conns = self._idle.get(key)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since <= IDLE_LIMIT and _still_open(conn.sock):
                conn.reused = True
                return conn
            conn.sock.close()
        return None

    def _give_back(self, conn: _Conn) -> None:
        conns = self._idle.setdefault(conn.key, [])
        if self._closed or len(conns) >= _MAX_IDLE_PER_HOST:
            conn.sock.close()
            return
        conn.sock.setblocking(False)
        conn.idle_since = time.monotonic()
        conns.append(conn)

    def _spare_buffer(self) -> bytearray | None:
        while self._spare:
            buf = self._spare.pop()
            if _free(buf):
                return buf
        return None

    def _keep_buffers(self, buffers: list[bytearray]) -> None:
        for buf in buffers:
            if len(buf) == RAW_CHUNK and len(self._spare) < _SPARE_BUFFERS and not self._closed:
                self._spare.append(buf)

    def _submit_read(self, body: RawBody, buf: bytearray, want: int) -> asyncio.Future[int]:
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


class RawResponse:
    """A response whose head was read; ``body(expected)`` reads the rest."""

    def __init__(
        self,
        client: RawHttp,
        conn: _Conn,
        head: ResponseHead,
        rest: bytes,
        what: str,
        *,
        head_only: bool = False,
    ) -> None:
        self._client = client
        self._head_only = head_only  # the answer to a HEAD: no body, whatever it says
        self._conn: _Conn | None = conn
        self.head = head
        self.status = head.status
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(head.headers))
        self._rest = rest
        self._what = what
        self._body: RawBody | None = None

    def body(self, expected: int) -> RawBody:
        """The body's chunks: exactly ``expected`` bytes or an error (see ``RawBody``).
        Raises ``RawUnsupported`` for a Transfer-Encoding this client does not decode."""
        if self._head_only:
            raise ValueError("the answer to a HEAD request has no body")
        framing = self.head.framing
        if framing in ("chunked", "other"):
            raise RawUnsupported(
                f"{self._what}: Transfer-Encoding {self.head.get('Transfer-Encoding')}"
            )
        assert self._conn is not None
        assert self._body is None
        reusable = self.head.reusable and self.head.content_length == expected
        self._body = RawBody(
            self._client,
            self._conn.sock,
            expected,
            self._rest,
            self._what,
            reusable=reusable,
            length_framed=framing == "length",
        )
        return self._body

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        body = self._body
        if body is None:
            if self._head_only and self.head.reusable and not self._rest:
                self._client._give_back(conn)
            else:
                conn.sock.close()
        else:
            body.close(lambda reuse: self._client._give_back(conn) if reuse else conn.sock.close())


class RawBody:
    """Exactly ``expected`` bytes of a body, as memoryviews of at most ``RAW_CHUNK`` bytes.

    Raises ``SourceRetryable`` when the connection drops (an error, or a close before the
    promised Content-Length, as aiohttp's path does) or no byte comes for the read timeout;
    ``SourceBroken`` when a body without Content-Length ends before ``expected``, or when
    more than ``expected`` came with the head. Cancelling a waiting ``__anext__`` loses
    nothing: the read goes on in its thread and the next call returns it. While a chunk is
    handed over, the thread already reads the next one.
    """

    def __init__(
        self,
        client: RawHttp,
        sock: socket.socket,
        expected: int,
        prefix: bytes,
        what: str,
        *,
        reusable: bool,
        length_framed: bool,
    ) -> None:
        self._client = client
        self._length_framed = length_framed
        self._sock = sock
        self._expected = expected
        self._prefix = prefix
        self._what = what
        self._reusable = reusable
        self.received = 0
        self._pending: asyncio.Future[int] | None = None
        self._pending_buf: bytearray | None = None
        self._pending_want = 0
        self._buffers: list[bytearray] = []
        self._stop = False
        self._quiet_since = time.monotonic()  # the last byte's arrival (read timeout)
        self._failed = False
        self._coalescer = ReadCoalescer(sock)  # used by the reading thread only
        sock.settimeout(_POLL)  # for the reading thread; the fd stays non-blocking

    def __aiter__(self) -> RawBody:
        return self

    async def __anext__(self) -> memoryview:
        if self._prefix:
            prefix, self._prefix = self._prefix, b""
            if len(prefix) > self._expected:
                self._failed = True
                raise SourceBroken(f"{self._what}: body longer than {self._expected} bytes")
            self.received += len(prefix)
            return memoryview(prefix)
        if self.received >= self._expected:
            raise StopAsyncIteration
        if self._pending is None:
            self._start_read()
        pending, buf = self._pending, self._pending_buf
        assert pending is not None
        assert buf is not None
        try:
            count = await asyncio.shield(pending)  # cancelled: the next call picks it up
            while count == _NOTHING_YET:
                self._pending = self._client._submit_read(self, buf, self._pending_want)
                count = await asyncio.shield(self._pending)
        except TimeoutError as exc:
            self._fail()
            raise SourceRetryable(f"reading {self._what}: timed out") from exc
        except OSError as exc:
            self._fail()
            raise SourceRetryable(f"reading {self._what}: {type(exc).__name__}: {exc}") from exc
        self._pending = self._pending_buf = None
        if count == 0:
            self._fail()
            if self._length_framed:  # the server promised more: the connection dropped
                raise SourceRetryable(
                    f"reading {self._what}: connection closed after {self.received} of "
                    f"{self._expected} bytes"
                )
            raise SourceBroken(
                f"{self._what}: body ended after {self.received} of {self._expected} bytes"
            )
        self.received += count
        chunk = memoryview(buf)[:count]  # first: a view keeps the read-ahead off this buffer
        if self.received < self._expected:
            self._start_read()  # read ahead while the caller deals with this chunk
        return chunk

    def _start_read(self) -> None:
        want = min(RAW_CHUNK, self._expected - self.received)
        buf = self._buffer(want)
        self._pending_buf, self._pending_want = buf, want
        self._pending = self._client._submit_read(self, buf, want)

    def _buffer(self, want: int) -> bytearray:
        for buf in self._buffers:
            if len(buf) >= want and buf is not self._pending_buf and _free(buf):
                return buf
        spare = self._client._spare_buffer()
        buf = spare if spare is not None else _new_buffer(max(want, min(RAW_CHUNK, self._expected)))
        if len(self._buffers) < _BUFFERS:
            self._buffers.append(buf)
        return buf

    def _fail(self) -> None:
        self._failed = True
        self._pending = self._pending_buf = None

    def fill(self, buf: bytearray, want: int) -> int:
        """In a worker thread: read up to ``want`` bytes into ``buf``; return how many, 0 at
        EOF, or ``_NOTHING_YET`` after ``_MAX_WAIT`` without a byte (a stalled stream does
        not hold a thread for long; the caller asks again). Returns early ``FLUSH_AFTER``
        after the first byte, or when told to stop; raises ``TimeoutError`` once the read
        timeout passed without a byte."""
        view = memoryview(buf)
        filled = 0
        first = 0.0
        started = time.monotonic()
        sock = self._sock
        limit = self._client.read_timeout
        coalescer = self._coalescer
        while filled < want and not self._stop:
            # through a capped link: wake for ~50 ms of data, not for every packet
            coalescer.before_read(self.received + filled, want - filled)
            try:
                count = sock.recv_into(view[filled:want])
            except TimeoutError:
                now = time.monotonic()
                if filled:
                    if now - first >= FLUSH_AFTER:
                        break
                elif now - self._quiet_since >= limit:
                    raise
                elif now - started >= _MAX_WAIT:
                    return _NOTHING_YET
                continue
            if count == 0:
                break
            now = time.monotonic()
            self._quiet_since = now
            if not filled:
                first = now
            filled += count
            if now - first >= FLUSH_AFTER:
                break
        return filled

    def close(self, done: Callable[[bool], None]) -> None:
        """Stop reading; ``done(reusable)`` once no thread touches the socket any more."""
        self._stop = True
        reuse = (
            self._reusable
            and not self._failed
            and self.received == self._expected
            and self._pending is None
            and not self._prefix
        )
        pending = self._pending
        if pending is None or pending.done():
            if pending is not None and not pending.cancelled():
                pending.exception()  # retrieved: nobody will ask for it any more
            self._client._keep_buffers(self._buffers)
            if reuse:
                self._coalescer.reset()  # the next answer's head must not be held back
            done(reuse)
            return

        def finished(fut: asyncio.Future[int]) -> None:
            if not fut.cancelled():
                fut.exception()
            self._client._keep_buffers(self._buffers)  # no thread writes into them now
            done(False)

        pending.add_done_callback(finished)


def _new_buffer(size: int) -> bytearray:
    """A ``size``-byte buffer with room for one more byte, so that ``_free`` never makes
    it reallocate."""
    buf = bytearray(size + 1)
    del buf[size:]
    return buf


def _free(buf: bytearray) -> bool:
    """True when no view of ``buf`` is alive (CPython refuses to resize a bytearray with
    exports), so it may be refilled."""
    try:
        buf.append(0)
    except BufferError:
        return False
    buf.pop()
    return True
