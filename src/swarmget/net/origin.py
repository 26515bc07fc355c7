"""The origin client: probe a URL, then fetch byte ranges of it, over aiohttp (or, for
``http://`` URLs when given one, over the raw range client of ``net.rawhttp``).

A thin adapter around the rules of ``swarmget.core.http`` and the probe machine of
``swarmget.core.probe``: this module sends requests and reads bytes; every decision about
what a response means is made there. Requests go through one of two transports behind one
interface (``net.transport``: ``net.aio_transport`` or ``net.rawhttp``), chosen by
``net.transport.TransportChoice``.

* ``probe`` performs the actions of ``core.probe.Probe``: HEAD, following redirects by hand
  (bounded, loops refused, each Location validated), and ``GET`` with ``Range: bytes=0-0``
  when HEAD cannot tell. ``probe_first`` starts with the download's first range instead
  (``Probe(first_range=N)``, issue #14): when its 206 answers the probe, the answer is kept
  open (``FirstRange``) and ``open_first`` reads its body as the start of the first range
  the download asks for (the rest, if it asks for more, by a range request of its own).
  The result, an ``OriginInfo``, pins the final URL, size and validator for the rest of the
  download. ``accepts_ranges`` from a HEAD is only a hint: the first ``open_range`` is the
  real test and raises ``RangesIgnored`` if the server sends the whole file.
* ``open_lead`` asks for a range of a file not probed yet (a helper told the first range it
  will be asked, issue #14): no If-Range, since nothing is pinned; a 206 is kept open
  (``LeadRange``), anything else closed. ``open_lead_range`` is ``open_range`` for the
  range that was then asked, read from that answer once it passed the very checks a range
  answer must pass against what the requester pinned (``check_range_response``: status,
  Content-Range, size, validator); a lead that does not pass, or does not start the range,
  is closed and the range fetched as ``open_range`` does (which then decides, e.g. that the
  file changed).
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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from multidict import CIMultiDict

from swarmget import __version__
from swarmget.core.errors import SwarmgetError
from swarmget.core.http import (
    Validator,
    check_range_response,
    check_stream_response,
    forwardable_headers,
)
from swarmget.core.probe import Action, Done, Failed, Fetch, OriginInfo, Probe
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.urls import redact_url
from swarmget.net.aio_transport import (
    CHUNK_SIZE,
    AiohttpTransport,
    CheckedBody,
    HeldConnection,
    SessionFactory,
    translate_client_error,
)
from swarmget.net.rawbody import RawUnsupported
from swarmget.net.transport import Answer, Purpose, Route, Transport, TransportChoice

if TYPE_CHECKING:  # imported when first needed: a download of an http:// file never does
    import aiohttp

    from swarmget.net.rawhttp import RawHttp

__all__ = [
    "CHUNK_SIZE",
    "CheckedBody",
    "FirstRange",
    "LeadRange",
    "OriginClient",
    "OriginInfo",
    "SessionFactory",
    "translate_client_error",
]

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"swarmget/{__version__}"
#: aiohttp's buffer for a lead's body (``open_lead``): while nobody reads it, aiohttp stops
#: reading the socket at about twice this, so the body does not all come in unread (aiohttp
#: would then put the connection back in its pool at once, and a lead nobody takes would
#: leave an idle connection to the origin behind it instead of being closed)
LEAD_READ_BUFSIZE = 16 * 1024
#: seconds a connection ``probe_first`` warms may take after the probe's answer
WARM_GRACE = 0.05


class OriginClient:
    """Talks to one HTTP origin through a session the caller owns (and closes).

    ``headers`` are added to every request (after the credential rule above); the protocol
    fields this client sets itself (Range, If-Range, Accept-Encoding) override them.
    ``connect_timeout`` bounds the TCP/TLS connect (not the wait for a pooled connection),
    ``read_timeout`` any wait for the next bytes from the server.

    With ``raw`` (owned by the caller, who gives it the same address policy, source
    address and timeouts as the session), ranges of ``http://`` files are fetched on its
    connections and read off the socket by its threads (``net.rawhttp``: the fast path);
    the answers are checked by the same rules. Which transport serves a request is decided
    by a ``net.transport.TransportChoice``: if an origin frames a range's body with a
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
        self._aiohttp = AiohttpTransport(
            session, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self._raw = raw
        self.choice = TransportChoice(raw_available=raw is not None)
        self._headers = CIMultiDict({"User-Agent": DEFAULT_USER_AGENT})
        self._headers.update(headers or {})  # case-insensitive: a given user-agent wins
        self._max_redirects = max_redirects
        self._clock = clock

    # --- probing ---------------------------------------------------------------------------------

    async def probe(self, url: str) -> OriginInfo:
        """Find out what ``url`` serves and pin it: performs the actions of a
        ``core.probe.Probe`` (redirects, the HEAD-then-range-GET rule, every check).

        Raises ``InvalidURL`` for a bad ``url``, ``OriginUnusable`` for 4xx answers, bad or
        looping redirects, ``SourceRetryable``/``SourceRateLimited`` for transient failures
        and ``SourceBroken`` for nonsense answers.
        """
        info, first = await self._probe(Probe(url, max_redirects=self._max_redirects))
        assert first is None
        return info

    async def probe_first(
        self, url: str, first_range: int, *, warm: int = 0
    ) -> tuple[OriginInfo, FirstRange | None]:
        """``probe``, starting with ``GET`` of the file's first ``first_range`` bytes (see
        ``core.probe``): when the 206 answers it, its answer is returned open, its body
        unread (the caller reads it with ``open_first`` or closes it: ``FirstRange``);
        otherwise None, the probe having gone on as ``probe`` does (same errors).

        ``warm``: while the probe is on its way, open that many more connections to
        ``url``'s origin and leave them in the pool for the download's next ranges (issue
        #14: on a first download from an origin each of its other streams would otherwise
        wait for a connect, a round trip, after the probe's answer; a connection already
        pooled is taken and put back, so a warm origin costs nothing). Only when ranges of
        ``url`` go through aiohttp (the raw client pools its own). When the probe is
        answered, a connect still on its way gets ``WARM_GRACE`` more, then is given up.
        A failed connect is not an error here (the ranges will meet it, or not)."""
        machine = Probe(url, max_redirects=self._max_redirects, first_range=first_range)
        if warm <= 0 or self.choice.route(Purpose.RANGE, url) is not Route.AIOHTTP:
            return await self._probe(machine)
        loop = asyncio.get_running_loop()
        warming = [
            loop.create_task(self._warm_one(url), name="warm a connection") for _ in range(warm)
        ]
        try:
            result = await self._probe(machine)
        except BaseException:
            await _settle(warming, 0.0)
            raise
        await _settle(warming, WARM_GRACE)
        return result

    async def _warm_one(self, url: str) -> None:
        try:
            held = await self.warm(url)
        except SwarmgetError as exc:  # (the probe and the ranges say what is wrong)
            log.debug("warming a connection to %s failed: %s", redact_url(url), exc)
            return
        except Exception:  # a bug here must not end unseen in a gather
            log.exception("warming a connection to %s failed", redact_url(url))
            return
        held.release()

    async def _probe(self, machine: Probe) -> tuple[OriginInfo, FirstRange | None]:
        action: Action = machine.start()
        while True:
            if isinstance(action, Done):
                return action.info, None
            if isinstance(action, Failed):
                raise action.error
            stack = AsyncExitStack()
            try:
                try:
                    answer = await self._send(action, machine.url, stack)
                except SwarmgetError as exc:
                    action = machine.on_error(exc)
                    continue
                action = machine.on_answer(answer.status, answer.headers, now_epoch=self._clock())
                if isinstance(action, Done) and action.first is not None:
                    first = FirstRange(stack.pop_all(), answer, action.first, action.info)
                    return action.info, first
            finally:
                await stack.aclose()  # (empty when the answer was handed on)

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
        transport = self._transport(Purpose.REVALIDATE, final_url)
        async with transport.request("HEAD", final_url, headers, _what("HEAD", final_url)) as ans:
            if ans.status == 304:
                return True
            if ans.status != 200:
                return False
            return Validator.from_headers(ans.headers) == pinned

    async def _send(self, fetch: Fetch, original_url: str, stack: AsyncExitStack) -> Answer:
        """Send a probe request; its answer (head read, body unread) lives on ``stack``."""
        headers = self._request_headers(original_url, fetch.url, dict(fetch.headers))
        transport = self._transport(Purpose.PROBE, fetch.url)
        what = _what(fetch.method, fetch.url)
        return await stack.enter_async_context(
            transport.request(fetch.method, fetch.url, headers, what)
        )

    async def warm(self, url: str) -> HeldConnection:
        """Open a connection to ``url``'s origin and hand it over held, for the next
        request there (a helper told of a download before its first range, issue #14):
        ``release()`` pools it, ``close()`` gives it up. Through the aiohttp session, whose
        connector holds the SSRF guard when the caller gave it one; nothing is sent.
        Raises the error tree like any request (``ForbiddenTarget`` from the guard)."""
        return await self._aiohttp.connect(url, _what("CONNECT", url))

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
        url = info.final_url
        what = _what("GET", url)
        shown = f"{redact_url(url)} {rng}"
        if self.choice.route(Purpose.RANGE, url) is Route.RAW:
            assert self._raw is not None
            yielded = False
            try:
                async with self._raw.request("GET", url, headers, what) as answer:
                    check_range_response(
                        answer.status,
                        answer.headers,
                        rng,
                        info.validator,
                        size,
                        now_epoch=self._clock(),
                    )
                    body = answer.body(rng.length, shown)
                    yielded = True
                    yield body
                return
            except RawUnsupported:
                if yielded:
                    raise
                self.choice.on_framed_body(url)  # then once more, through aiohttp
        async with self._aiohttp.request("GET", url, headers, what) as answer:
            check_range_response(
                answer.status, answer.headers, rng, info.validator, size, now_epoch=self._clock()
            )
            yield answer.body(rng.length, shown)

    @asynccontextmanager
    async def open_first(
        self, first: FirstRange, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        """``open_range(info, rng)`` for a ``rng`` that starts where ``first`` does (the
        probe's answer, ``probe_first``): its bytes come from that answer's body, and when
        ``rng`` is longer, the rest from a range request of its own, sent once they are read
        (on the connection they came on). ``first`` is closed when the block is left. As
        with ``open_range``'s body, cancelling a waiting read loses nothing (``FirstThenRest``)."""
        if rng.start != first.range.start or first.info != info:
            raise ValueError(f"range {rng} does not start the probe's answer {first.range}")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(first.aclose)
            body = FirstThenRest(self, first, info, rng, stack)
            stack.push_async_callback(body.aclose)  # (first: an opening under way ends)
            yield body

    async def open_lead(self, url: str, rng: ByteRange) -> LeadRange | None:
        """``GET`` ``rng`` of ``url`` before anything is pinned (see the module docstring);
        its answer open, body unread, when it is a 206 (the caller reads it with
        ``open_lead_range`` or closes it), else None. Raises like ``open_range``."""
        if rng.is_empty():
            raise ValueError("an empty lead")
        headers = self._request_headers(url, url, {"Range": rng.http_spec()})
        stack = AsyncExitStack()
        try:
            answer = await stack.enter_async_context(
                self._aiohttp.request(
                    "GET", url, headers, _what("GET", url), read_bufsize=LEAD_READ_BUFSIZE
                )
            )
        except BaseException:
            await stack.aclose()
            raise
        if answer.status != 206:
            await stack.aclose()
            return None
        return LeadRange(stack, answer, rng, url)

    @asynccontextmanager
    async def open_lead_range(
        self, lead: LeadRange, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        """``open_range(info, rng)``, its first bytes from ``lead`` if it answers them (see
        the module docstring); ``lead`` is closed when the block is left, or at once if it
        is not used."""
        size = _require_range_size(info, rng)
        usable = ByteRange(lead.range.start, min(lead.range.end, size))
        fits = rng.start == usable.start and lead.url == info.final_url and not usable.is_empty()
        if fits:
            try:
                check_range_response(
                    lead.answer.status,
                    lead.answer.headers,
                    usable,
                    info.validator,
                    size,
                    now_epoch=self._clock(),
                )
            except SwarmgetError:
                fits = False
        lead.used = fits
        if not fits:
            await lead.aclose()
            async with self.open_range(info, rng) as body:
                yield body
            return
        first = FirstRange(lead.stack, lead.answer, usable, info)
        async with self.open_first(first, info, rng) as body:
            yield body

    @asynccontextmanager
    async def open_stream(self, info: OriginInfo) -> AsyncIterator[AsyncIterator[Chunk]]:
        """GET the whole pinned file without Range: the single-stream fallback.

        Checked by ``check_stream_response`` (200 only; a different validator or length is
        ``OriginChanged``). The iterator raises ``SourceBroken`` when the body ends short
        of Content-Length (or the pinned size); with neither, it runs to the end.
        """
        url = info.final_url
        headers = self._request_headers(info.url, url, {})
        async with self._aiohttp.request("GET", url, headers, _what("GET", url)) as answer:
            expected = check_stream_response(
                answer.status, answer.headers, info.validator, info.size, now_epoch=self._clock()
            )
            yield answer.body(expected, redact_url(url))

    # --- plumbing -------------------------------------------------------------------------------

    def _transport(self, purpose: Purpose, url: str) -> Transport:
        if self.choice.route(purpose, url) is Route.RAW:
            assert self._raw is not None
            return self._raw
        return self._aiohttp

    def _request_headers(
        self, original_url: str, url: str, extra: Mapping[str, str]
    ) -> CIMultiDict[str]:
        headers = CIMultiDict(forwardable_headers(self._headers, original_url, url))
        headers["Accept-Encoding"] = "identity"
        headers.update(extra)
        return headers


async def _settle(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``tasks``, then cancel what is left and wait for it."""
    late = [t for t in tasks if not t.done()]
    if late and grace > 0:
        _, left = await asyncio.wait(late, timeout=grace)
        late = list(left)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _what(method: str, url: str) -> str:
    return f"{method} {redact_url(url)}"


def _require_range_size(info: OriginInfo, rng: ByteRange) -> int:
    """The pinned size, checking that ``rng`` lies inside it (misuse is a ValueError)."""
    if info.size is None:
        shown = redact_url(info.final_url)
        raise ValueError(f"cannot request ranges of {shown}: its size is unknown")
    if rng.is_empty() or rng.end > info.size:
        raise ValueError(f"range {rng} is empty or beyond the {info.size}-byte file")
    return info.size


class FirstRange:
    """The answer to a probe that was the download's first range (``probe_first``), open,
    its body unread: it holds ``range`` of the file ``info`` pinned. Read it with
    ``OriginClient.open_first``, or close it (``aclose``, idempotent)."""

    def __init__(
        self, stack: AsyncExitStack, answer: Answer, rng: ByteRange, info: OriginInfo
    ) -> None:
        self._stack = stack
        self.answer = answer
        self.range = rng
        self.info = info

    async def aclose(self) -> None:
        await self._stack.aclose()


class LeadRange:
    """The answer to ``open_lead``: a 206 for ``range`` of ``url``, open, its body unread and
    nothing checked but its status. Read it with ``OriginClient.open_lead_range`` (which
    sets ``used`` when it served its bytes), or close it (``aclose``, idempotent)."""

    def __init__(self, stack: AsyncExitStack, answer: Answer, rng: ByteRange, url: str) -> None:
        self.stack = stack
        self.answer = answer
        self.range = rng
        self.url = url
        self.used = False  # its bytes were served (``open_lead_range`` found it fit)

    async def aclose(self) -> None:
        await self.stack.aclose()


class FirstThenRest:
    """The chunks of ``rng``: ``first``'s body up to ``rng``'s end, then, when ``rng`` goes
    on past it, the body of a range request for the rest (``first`` closed before it is
    sent, so its connection is the one reused). Cancelling a waiting ``__anext__`` loses
    nothing, as with ``CheckedBody``: a helper's forwarding loop cancels a read when it
    sends what it has (a generator would end there, cutting the stream short); the rest's
    request, once sent, is awaited by the next call."""

    def __init__(
        self,
        client: OriginClient,
        first: FirstRange,
        info: OriginInfo,
        rng: ByteRange,
        stack: AsyncExitStack,
    ) -> None:
        self._client = client
        self._first = first
        self._info = info
        self._rng = rng
        self._stack = stack  # the rest's response is closed with it
        self._stop = min(rng.end, first.range.end)
        self._pos = first.range.start
        shown = f"{redact_url(info.final_url)} {first.range}"
        self._body = aiter(first.answer.body(first.range.length, shown))
        self._opening: asyncio.Task[AsyncIterator[Chunk]] | None = None
        self._rest: AsyncIterator[Chunk] | None = None

    def __aiter__(self) -> FirstThenRest:
        return self

    async def __anext__(self) -> Chunk:
        if self._pos < self._stop:
            chunk = await anext(self._body)  # (the body raises if it ends short)
            n = min(len(chunk), self._stop - self._pos)
            self._pos += n
            return chunk if n == len(chunk) else memoryview(chunk)[:n]
        if self._rng.end <= self._first.range.end:
            raise StopAsyncIteration
        if self._rest is None:
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(
                    self._open_rest(), name="the first range's rest"
                )
            self._rest = await asyncio.shield(self._opening)  # cancelled: awaited next call
        return await anext(self._rest)

    async def _open_rest(self) -> AsyncIterator[Chunk]:
        await self._first.aclose()  # read to the end: its connection goes back to the pool
        rest = ByteRange(self._first.range.end, self._rng.end)
        return aiter(
            await self._stack.enter_async_context(self._client.open_range(self._info, rest))
        )

    async def aclose(self) -> None:
        """End a request for the rest still on its way (its response is not kept)."""
        opening = self._opening
        if opening is not None and not opening.done():
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
