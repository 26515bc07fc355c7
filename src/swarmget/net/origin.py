"""The origin client: probe a URL, then fetch byte ranges of it, over aiohttp (or, for
``http://`` URLs when given one, over the raw range client of ``net.rawhttp``).

A thin adapter around the rules of ``swarmget.core.http``: this module sends requests and
reads bytes; every decision about what a response means is made there.

* ``probe`` sends HEAD, following redirects by hand (bounded, loops refused, each Location
  validated), and falls back to ``GET`` with ``Range: bytes=0-0`` when HEAD cannot tell.
  The result, an ``OriginInfo``, pins the final URL, size and validator for the rest of the
  download. ``accepts_ranges`` from a HEAD is only a hint: the first ``open_range`` is the
  real test and raises ``RangesIgnored`` if the server sends the whole file.
* ``open_range`` and ``open_stream`` fetch from the pinned final URL with
  ``allow_redirects=False``: a redirect there means the URL moved after pinning, which
  ``check_range_response`` turns into ``OriginChanged``.
* Every request says ``Accept-Encoding: identity`` and is read with ``auto_decompress``
  off, so the bytes we get are the file's own bytes and ranges line up.
* aiohttp errors and socket timeouts become ``SourceRetryable`` (``raise ... from exc``);
  a failed TLS certificate check becomes ``OriginUnusable``, since retrying cannot help.
* A body that ends cleanly but short of the promised length is ``SourceBroken``; a
  connection that drops mid-body is ``SourceRetryable`` (aiohttp cannot tell a dying
  server from a dying network, and the scheduler's retry limit catches a habitual one).
* Digests come from ``Repr-Digest`` only: it describes the whole representation on any
  response, while ``Content-Digest`` on a HEAD or 206 covers other bytes (RFC 9530 §2-3).

Credentials (``Authorization``, ``Cookie``) from the caller's headers are not sent to
another origin than the one the user named, neither on redirects nor to a pinned final URL
on another host.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from swarmget import __version__
from swarmget.core.digests import Digest
from swarmget.core.errors import (
    OriginUnusable,
    SourceBroken,
    SourceRetryable,
    SwarmgetError,
)
from swarmget.core.filenames import choose_filename
from swarmget.core.http import (
    ProbeFacts,
    RedirectChain,
    Validator,
    check_range_response,
    check_stream_response,
    facts_from_head,
    facts_from_range_probe,
    forwardable_headers,
    redirect_target,
)
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.urls import redact_url, validate_url
from swarmget.net.lowat import ReadCoalescer
from swarmget.net.rawhttp import RawHttp, RawUnsupported

if TYPE_CHECKING:  # imported when first needed: a download of an http:// file never does
    import aiohttp

#: Makes the aiohttp session when it is first needed (and keeps returning it).
SessionFactory: TypeAlias = Callable[[], Awaitable["aiohttp.ClientSession"]]

__all__ = [
    "CHUNK_SIZE",
    "CheckedBody",
    "OriginClient",
    "OriginInfo",
    "SessionFactory",
    "translate_client_error",
]

#: Largest chunk a body iterator yields.
CHUNK_SIZE = 256 * 1024
DEFAULT_USER_AGENT = f"swarmget/{__version__}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginInfo:
    """What a probe pinned. ``size`` is None when the server would not say (then only
    ``open_stream`` can fetch the file); ``filename`` is already sanitised."""

    url: str
    final_url: str
    size: int | None
    validator: Validator | None
    accepts_ranges: bool
    filename: str
    digests: tuple[Digest, ...] = ()


class OriginClient:
    """Talks to one HTTP origin through a session the caller owns (and closes).

    ``headers`` are added to every request (after the credential rule above); the protocol
    fields this client sets itself (Range, If-Range, Accept-Encoding) override them.
    ``connect_timeout`` bounds the TCP/TLS connect (not the wait for a pooled connection),
    ``read_timeout`` any wait for the next bytes from the server.

    With ``raw`` (owned by the caller, who gives it the same address policy, source
    address and timeouts as the session), ranges of ``http://`` files are fetched on its
    connections and read off the socket by its threads (``net.rawhttp``: the fast path);
    the answers are checked by the same rules. If an origin frames a range's body with a
    Transfer-Encoding, that request is repeated through aiohttp and the origin's ranges stay
    there from then on. With ``raw``, probes of ``http://`` URLs go through it too, so a
    download of an ``http://`` file never needs aiohttp: ``session`` may then be a
    ``SessionFactory`` that makes the session only if some request needs it (an https hop,
    a chunked answer), and the process does not even import aiohttp.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | SessionFactory,
        *,
        headers: Mapping[str, str] | None = None,
        max_redirects: int = 10,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        raw: RawHttp | None = None,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._session_factory: SessionFactory | None = None
        if callable(session):
            self._session_factory = session
        else:
            self._session = session
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._raw = raw
        self._raw_refused: set[str] = set()  # origins (scheme://host:port) raw cannot read
        self._headers = CIMultiDict({"User-Agent": DEFAULT_USER_AGENT})
        self._headers.update(headers or {})  # case-insensitive: a given user-agent wins
        self._max_redirects = max_redirects
        self._clock = clock

    # --- probing ---------------------------------------------------------------------------------

    async def probe(self, url: str) -> OriginInfo:
        """Find out what ``url`` serves and pin it (see the module docstring).

        Raises ``InvalidURL`` for a bad ``url``, ``OriginUnusable`` for 4xx answers, bad or
        looping redirects, ``SourceRetryable``/``SourceRateLimited`` for transient failures
        and ``SourceBroken`` for nonsense answers.
        """
        url = validate_url(url)
        chain = RedirectChain(url, self._max_redirects)
        method = "HEAD"
        while True:
            status, headers = await self._exchange(method, chain.current, url)
            target = redirect_target(chain.current, status, headers)
            if target is not None:
                chain.follow(target)
                continue
            facts = self._probe_facts(method, status, headers)
            if facts is not None:
                return _origin_info(url, chain.current, facts)
            method = "GET"  # HEAD could not tell: ask for the first byte instead

    async def is_unchanged(self, final_url: str, original_url: str, pinned: Validator) -> bool:
        """Revalidate a cached copy with a conditional HEAD (RFC 9110 §13.1.2/§13.1.3):
        ``If-None-Match`` with the strong ETag (else ``If-Modified-Since``). True on 304, or
        on a 200 carrying the same validator; False when the origin has something else."""
        conditional = (
            {"If-None-Match": pinned.etag}
            if pinned.etag
            else {"If-Modified-Since": pinned.last_modified or ""}
        )
        headers = self._request_headers(original_url, final_url, conditional)
        async with self._send("HEAD", final_url, headers) as resp:
            if resp.status == 304:
                return True
            if resp.status != 200:
                return False
            return Validator.from_headers(resp.headers) == pinned

    def _probe_facts(
        self, method: str, status: int, headers: CIMultiDictProxy[str]
    ) -> ProbeFacts | None:
        if method == "HEAD":
            return facts_from_head(status, headers, now_epoch=self._clock())
        return facts_from_range_probe(status, headers, now_epoch=self._clock())

    async def _exchange(
        self, method: str, url: str, original_url: str
    ) -> tuple[int, CIMultiDictProxy[str]]:
        """Send a probe request and return its status and headers; the body is never read."""
        extra = {"Range": "bytes=0-0"} if method == "GET" else {}
        headers = self._request_headers(original_url, url, extra)
        if self._raw is not None and self._raw.supports(url):
            what = f"{method} {redact_url(url)}"
            async with self._raw.request(method, url, headers, what) as answer:
                return answer.status, answer.headers
        async with self._send(method, url, headers) as resp:
            return resp.status, resp.headers

    # --- fetching ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        """GET ``rng`` of the pinned file; yields an async iterator of its raw chunks.

        The response is checked by ``check_range_response`` before anything is yielded.
        The iterator yields exactly ``len(rng)`` bytes or raises (``SourceBroken`` for a
        short or long body, ``SourceRetryable`` for a dropped connection or read timeout).
        Leaving the block early closes the connection instead of draining it.
        """
        size = _require_range_size(info, rng)
        extra = {"Range": rng.http_spec()}
        if info.validator is not None:
            extra["If-Range"] = info.validator.if_range_value()
        headers = self._request_headers(info.url, info.final_url, extra)
        raw = self._raw
        if raw is not None and raw.supports(info.final_url):
            origin = str(URL(info.final_url).origin())
            if origin not in self._raw_refused:
                yielded = False
                try:
                    what = f"GET {redact_url(info.final_url)}"
                    async with raw.request("GET", info.final_url, headers, what) as answer:
                        check_range_response(
                            answer.status,
                            answer.headers,
                            rng,
                            info.validator,
                            size,
                            now_epoch=self._clock(),
                        )
                        body = answer.body(rng.length)
                        yielded = True
                        yield body
                    return
                except RawUnsupported:
                    if yielded:
                        raise
                    self._raw_refused.add(origin)
        async with self._send("GET", info.final_url, headers) as resp:
            check_range_response(
                resp.status, resp.headers, rng, info.validator, size, now_epoch=self._clock()
            )
            yield CheckedBody(resp, rng.length, f"{redact_url(info.final_url)} {rng}")

    @asynccontextmanager
    async def open_stream(self, info: OriginInfo) -> AsyncIterator[AsyncIterator[Chunk]]:
        """GET the whole pinned file without Range: the single-stream fallback.

        Checked by ``check_stream_response`` (200 only; a different validator or length is
        ``OriginChanged``). The iterator raises ``SourceBroken`` when the body ends short
        of Content-Length (or the pinned size); with neither, it runs to the end.
        """
        headers = self._request_headers(info.url, info.final_url, {})
        async with self._send("GET", info.final_url, headers) as resp:
            expected = check_stream_response(
                resp.status, resp.headers, info.validator, info.size, now_epoch=self._clock()
            )
            yield CheckedBody(resp, expected, redact_url(info.final_url))

    # --- plumbing -------------------------------------------------------------------------------

    def _request_headers(
        self, original_url: str, url: str, extra: Mapping[str, str]
    ) -> CIMultiDict[str]:
        headers = CIMultiDict(forwardable_headers(self._headers, original_url, url))
        headers["Accept-Encoding"] = "identity"
        headers.update(extra)
        return headers

    @asynccontextmanager
    async def _send(
        self, method: str, url: str, headers: CIMultiDict[str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request (no redirects, no decompression) and own its response: released
        for reuse when the body was read to the end, closed otherwise."""
        import aiohttp

        session = self._session
        if session is None:
            assert self._session_factory is not None
            session = self._session = await self._session_factory()
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
            )
        except (aiohttp.ClientError, OSError) as exc:  # OSError covers TimeoutError
            raise translate_client_error(exc, f"{method} {redact_url(url)}") from exc
        try:
            yield resp
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()


class CheckedBody:
    """The raw chunks of a response body, checked against the expected length.

    Never yields more than ``expected`` bytes in total; raises ``SourceBroken`` when the
    body is longer, or ends cleanly before ``expected``; ``SourceRetryable`` when reading
    fails. With ``expected=None`` it simply runs to the end of the body. Cancelling a waiting
    ``__anext__`` loses nothing (the bytes stay in aiohttp's buffer): a helper's forwarding
    loop puts a timeout on it.
    """

    def __init__(self, resp: aiohttp.ClientResponse, expected: int | None, what: str) -> None:
        self._resp = resp
        self._expected = expected
        self._what = what
        self.received = 0
        self._coalescer: ReadCoalescer | None = None
        if expected is not None and resp.connection is not None:
            self._coalescer = ReadCoalescer.for_transport(resp.connection.transport)
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
            chunk = await self._resp.content.read(CHUNK_SIZE)
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


def _origin_info(url: str, final_url: str, facts: ProbeFacts) -> OriginInfo:
    return OriginInfo(
        url=url,
        final_url=final_url,
        size=facts.size,
        validator=facts.validator,
        accepts_ranges=facts.accepts_ranges,
        filename=choose_filename(facts.content_disposition, final_url, url),
        digests=facts.digests,
    )


def _require_range_size(info: OriginInfo, rng: ByteRange) -> int:
    """The pinned size, checking that ``rng`` lies inside it (misuse is a ValueError)."""
    if info.size is None:
        shown = redact_url(info.final_url)
        raise ValueError(f"cannot request ranges of {shown}: its size is unknown")
    if rng.is_empty() or rng.end > info.size:
        raise ValueError(f"range {rng} is empty or beyond the {info.size}-byte file")
    return info.size


def translate_client_error(exc: BaseException, what: str) -> SwarmgetError:
    """The error-tree exception for a library failure during ``what``."""
    import aiohttp

    from swarmget.net.guard import forbidden_target

    if (refused := forbidden_target(exc, what)) is not None:  # the SSRF guard said no
        return refused
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return OriginUnusable(f"{what}: TLS certificate verification failed: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return OriginUnusable(f"{what}: aiohttp refused the URL: {exc}")
    if isinstance(exc, TimeoutError):
        return SourceRetryable(f"{what}: timed out")
    return SourceRetryable(f"{what}: {type(exc).__name__}: {exc}")
