"""The body side of the raw range client (``net.rawhttp``): a response whose head was read
(``RawResponse``), and its body read by a worker thread with ``recv_into`` (``RawBody``).

Chunks and buffers
    A chunk is a ``memoryview`` of a buffer. It stays valid for as long as the caller holds
    it: a buffer is only refilled once no view of it is left (CPython counts the views: a
    ``bytearray`` with exports cannot be resized, which is what ``is_free`` asks).

Connections
    A connection goes back to its pool (``ConnPool.give_back``) only when its body was read
    to the end and the head allowed it (``ResponseHead.reusable``); anything else closes it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from swarmget.core.errors import SourceBroken, SourceRetryable
from swarmget.core.http1 import ResponseHead
from swarmget.net.lowat import ReadCoalescer

__all__ = [
    "RAW_CHUNK",
    "ConnPool",
    "RawBody",
    "RawConn",
    "RawResponse",
    "RawUnsupported",
    "is_free",
]

#: Largest chunk (and buffer) a raw body yields.
RAW_CHUNK = 1024 * 1024
#: A chunk is handed over at the latest this long after its first byte arrived.
FLUSH_AFTER = 0.05
#: How often a reading thread looks up from the socket (to stop, or to hand over).
_POLL = 0.05
#: Buffers a body keeps for reuse.
_BUFFERS = 4
#: A read with no byte for this long gives its thread back (and is started again).
_MAX_WAIT = 0.5
_NOTHING_YET = -1


class RawUnsupported(Exception):
    """The answer is framed in a way this client leaves to aiohttp (Transfer-Encoding)."""


@dataclass(eq=False)
class RawConn:
    """One keep-alive connection of the pool."""

    sock: socket.socket
    key: tuple[str, int]
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)


class ConnPool(Protocol):
    """What a response needs of the client that made it (``net.rawhttp.RawHttp``)."""

    @property
    def read_timeout(self) -> float: ...

    def give_back(self, conn: RawConn) -> None:
        """Keep ``conn`` for another request (or close it)."""

    def spare_buffer(self) -> bytearray | None:
        """A ``RAW_CHUNK`` buffer a finished body left, free to be refilled."""

    def keep_buffers(self, buffers: list[bytearray]) -> None:
        """Buffers of a finished body, for the next bodies."""

    def submit_read(self, body: RawBody, buf: bytearray, want: int) -> asyncio.Future[int]:
        """Run ``body.fill(buf, want)`` in a reading thread."""


class RawResponse:
    """A response whose head was read; ``body(expected)`` reads the rest."""

    def __init__(
        self,
        client: ConnPool,
        conn: RawConn,
        head: ResponseHead,
        rest: bytes,
        what: str,
        *,
        head_only: bool = False,
    ) -> None:
        self._client = client
        self._head_only = head_only  # the answer to a HEAD: no body, whatever it says
        self._conn: RawConn | None = conn
        self.head = head
        self.status = head.status
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(head.headers))
        self._rest = rest
        self._what = what
        self._body: RawBody | None = None

    def body(self, expected: int, what: str | None = None) -> RawBody:
        """The body's chunks: exactly ``expected`` bytes or an error (see ``RawBody``;
        ``what`` names it in errors, by default the request). Raises ``RawUnsupported`` for
        a Transfer-Encoding this client does not decode."""
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
            what or self._what,
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
                self._client.give_back(conn)
            else:
                conn.sock.close()
        else:
            body.close(lambda reuse: self._client.give_back(conn) if reuse else conn.sock.close())


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
        client: ConnPool,
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
                self._pending = self._client.submit_read(self, buf, self._pending_want)
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
        self._pending = self._client.submit_read(self, buf, want)

    def _buffer(self, want: int) -> bytearray:
        for buf in self._buffers:
            if len(buf) >= want and buf is not self._pending_buf and is_free(buf):
                return buf
        spare = self._client.spare_buffer()
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
            self._client.keep_buffers(self._buffers)
            if reuse:
                self._coalescer.reset()  # the next answer's head must not be held back
            done(reuse)
            return

        def finished(fut: asyncio.Future[int]) -> None:
            if not fut.cancelled():
                fut.exception()
            self._client.keep_buffers(self._buffers)  # no thread writes into them now
            done(False)

        pending.add_done_callback(finished)


def _new_buffer(size: int) -> bytearray:
    """A ``size``-byte buffer with room for one more byte, so that ``is_free`` never makes
    it reallocate."""
    buf = bytearray(size + 1)
    del buf[size:]
    return buf


def is_free(buf: bytearray) -> bool:
    """True when no view of ``buf`` is alive (CPython refuses to resize a bytearray with
    exports), so it may be refilled."""
    try:
        buf.append(0)
    except BufferError:
        return False
    buf.pop()
    return True
