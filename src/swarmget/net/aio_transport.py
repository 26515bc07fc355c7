"""The aiohttp transport (``net.transport.Transport``): requests through a session the
caller owns, bodies read as ``CheckedBody``, aiohttp's errors translated to the error tree.

* No redirect is followed and nothing is decompressed (``auto_decompress`` off): the bytes
  we get are the file's own bytes and ranges line up.
* aiohttp errors and socket timeouts become ``SourceRetryable`` (``raise ... from exc``);
  a failed TLS certificate check becomes ``OriginUnusable``, since retrying cannot help.
* A body that ends cleanly but short of the promised length is ``SourceBroken``; a
  connection that drops mid-body is ``SourceRetryable`` (aiohttp cannot tell a dying
  server from a dying network, and the scheduler's retry limit catches a habitual one).

aiohttp itself is imported when a request is first sent: a download of an ``http://`` file
through the raw client never imports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

from multidict import CIMultiDictProxy

from swarmget.core.errors import OriginUnusable, SourceBroken, SourceRetryable, SwarmgetError
from swarmget.core.urls import redact_url
from swarmget.net.lowat import ReadCoalescer

if TYPE_CHECKING:  # imported when first needed: a download of an http:// file never does
    import aiohttp

#: Makes the aiohttp session when it is first needed (and keeps returning it).
SessionFactory: TypeAlias = Callable[[], Awaitable["aiohttp.ClientSession"]]

__all__ = [
    "BULK_CHUNK_SIZE",
    "BULK_READ_BUFSIZE",
    "CHUNK_SIZE",
    "AiohttpAnswer",
    "AiohttpTransport",
    "CheckedBody",
    "HeldConnection",
    "SessionFactory",
    "translate_client_error",
]

#: Largest chunk a body iterator yields.
CHUNK_SIZE = 256 * 1024
#: ... a bulk one (``CheckedBody(bulk=True)``): what piled up while the loop was busy
#: comes in one piece, not in one iteration (and one ``on_data``) per 256 KiB
BULK_CHUNK_SIZE = 1024 * 1024
#: aiohttp's buffer limit for a bulk response (``read_bufsize``, 64 KiB by default): it
#: stops reading the socket (an ``epoll_ctl`` now and one when the buffer drained) at twice
#: this, which one wake-up of ``BULK_MAX_LOWAT`` bytes must not reach
BULK_READ_BUFSIZE = 256 * 1024


class HeldConnection:
    """An open connection that no request uses yet (``AiohttpTransport.connect``): it goes
    to the session's pool (``release``) or is closed (``close``); the first call wins."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiohttp.connector.Connection) -> None:
        self._conn: aiohttp.connector.Connection | None = conn

    def release(self) -> None:
        """Leave it idle in the pool, under the key a request to its origin looks for."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.release()

    def close(self) -> None:
        """Close it (nothing was sent on it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class AiohttpTransport:
    """Requests through an aiohttp session (given, or made by a ``SessionFactory`` when the
    first request needs it). ``connect_timeout`` bounds the TCP/TLS connect (not the wait for
    a pooled connection), ``read_timeout`` any wait for the next bytes from the server."""

    def __init__(
        self,
        session: aiohttp.ClientSession | SessionFactory,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._session_factory: SessionFactory | None = None
        if callable(session):
            self._session_factory = session
        else:
            self._session = session
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    async def _the_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            assert self._session_factory is not None
            session = self._session = await self._session_factory()
        return session

    async def connect(self, url: str, what: str) -> HeldConnection:
        """Open a connection (TCP, and TLS for ``https://``) to ``url``'s origin through
        the session's connector, as a request there would (its resolver, address policy and
        source address), and hand it over held: ``release()`` puts it idle in the pool,
        where the next request to that origin takes it; ``close()`` closes it. Sends
        nothing. Raises the error tree like ``request``."""
        import asyncio

        import aiohttp
        from yarl import URL

        session = await self._the_session()
        loop = asyncio.get_running_loop()
        probe = aiohttp.ClientRequest("GET", URL(url), loop=loop, session=session)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
        try:
            conn = await session.connector.connect(probe, [], timeout)  # type: ignore[union-attr]
        except (aiohttp.ClientError, OSError) as exc:  # OSError covers TimeoutError
            raise translate_client_error(exc, what) from exc
        return HeldConnection(conn)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        *,
        read_bufsize: int | None = None,
    ) -> AsyncIterator[AiohttpAnswer]:
        """Send one request and own its response: released for reuse when the body was
        read to the end, closed otherwise. ``read_bufsize``: aiohttp's buffer for its body
        (it stops reading the socket at about twice that; None: the session's)."""
        import aiohttp

        session = await self._the_session()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
        )
        try:
            resp = await session.request(
                method,
                url,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
                timeout=timeout,
                read_bufsize=read_bufsize,  # (None: the session's)
            )
        except (aiohttp.ClientError, OSError) as exc:  # OSError covers TimeoutError
            raise translate_client_error(exc, what) from exc
        try:
            yield AiohttpAnswer(resp, redact_url(url))
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()


class AiohttpAnswer:
    """An aiohttp response as a ``net.transport.Answer``."""

    def __init__(self, resp: aiohttp.ClientResponse, shown_url: str) -> None:
        self._resp = resp
        self._shown_url = shown_url

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._resp.headers

    def body(self, expected: int | None, what: str | None = None) -> CheckedBody:
        """The body's raw chunks, checked against ``expected`` (None: to the end)."""
        return CheckedBody(self._resp, expected, what or self._shown_url)


class CheckedBody:
    """The raw chunks of a response body, checked against the expected length.

    Never yields more than ``expected`` bytes in total; raises ``SourceBroken`` when the
    body is longer, or ends cleanly before ``expected``; ``SourceRetryable`` when reading
    fails. With ``expected=None`` it simply runs to the end of the body. Cancelling a waiting
    ``__anext__`` loses nothing (the bytes stay in aiohttp's buffer): a helper's forwarding
    loop puts a timeout on it. ``bulk``: bytes that only go to disk (the requester's peer
    streams): larger reads, and the kernel asked to collect more before waking the loop
    (``net.lowat``'s bulk setting); the response should have been asked for with
    ``read_bufsize=BULK_READ_BUFSIZE``.
    """

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        expected: int | None,
        what: str,
        *,
        bulk: bool = False,
    ) -> None:
        self._resp = resp
        self._expected = expected
        self._what = what
        self.received = 0
        self._read_size = BULK_CHUNK_SIZE if bulk else CHUNK_SIZE
        self._coalescer: ReadCoalescer | None = None
        if expected is not None and resp.connection is not None:
            transport = resp.connection.transport
            self._coalescer = (
                ReadCoalescer.bulk(transport) if bulk else ReadCoalescer.for_transport(transport)
            )
            # aiohttp hands the connection back to its pool as soon as the body's last byte
            # arrives, maybe before we read it: the mark goes back to 1 at that moment
            resp.content.on_eof(self._coalescer.reset)

    def __aiter__(self) -> CheckedBody:
        return self

    async def __anext__(self) -> bytes:
        import aiohttp  # already imported: this body came from an aiohttp response

        coalescer = self._coalescer
        if coalescer is not None and self._expected is not None:
            seen = self._resp.content.total_bytes
            coalescer.before_read(seen, self._expected - seen)
        try:
            chunk = await self._resp.content.read(self._read_size)
        except (aiohttp.ClientError, OSError) as exc:
            raise translate_client_error(exc, f"reading {self._what}") from exc
        if not chunk:
            self._check_complete()
            raise StopAsyncIteration
        self.received += len(chunk)
        if self._expected is not None and self.received >= self._expected:
            if coalescer is not None:
                coalescer.reset()  # the connection may serve another request next
            if self.received > self._expected:
                raise SourceBroken(f"{self._what}: body longer than {self._expected} bytes")
        return chunk

    def _check_complete(self) -> None:
        if self._expected is not None and self.received < self._expected:
            raise SourceBroken(
                f"{self._what}: body ended after {self.received} of {self._expected} bytes"
            )


def translate_client_error(exc: BaseException, what: str) -> SwarmgetError:
    """The error-tree exception for a library failure during ``what``."""
    import aiohttp

    from swarmget.net.guard import forbidden_target
    from swarmget.net.plain import plain_words

    if (refused := forbidden_target(exc, what)) is not None:  # the SSRF guard said no
        return refused
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return OriginUnusable(f"{what}: TLS certificate verification failed: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return OriginUnusable(f"{what}: aiohttp refused the URL: {exc}")
    if isinstance(exc, TimeoutError):
        return SourceRetryable(f"{what}: timed out")
    return SourceRetryable(f"{what}: {plain_words(exc)}")
