"""One interface for "send a request to an origin, read its answer", and the choice of
which of the two implementations serves a request.

The two transports
    * ``net.aio_transport.AiohttpTransport``: aiohttp's client, for everything (TLS, any
      framing, whole-file streams, the node daemons and the relay).
    * ``net.rawhttp.RawHttp``: our own plain-HTTP connections, read by threads with
      ``recv_into`` (the fast path of ``swarmget get``; see that module).

    Both have ``request(method, url, headers, what)``, an async context manager yielding an
    ``Answer``: its ``status`` and ``headers`` are read, ``body(expected, what)`` iterates
    the body's chunks, exactly ``expected`` bytes or an error of the error tree. What an
    answer *means* is decided by ``core.http``, by the caller (``net.origin.OriginClient``).

The choice (``TransportChoice``), a pure decision
    =====================================  ============================================
    request                                transport
    =====================================  ============================================
    no raw client given                    aiohttp
    https://, or credentials in the URL    aiohttp (``raw_can_fetch``)
    a whole-file stream, a revalidation    aiohttp
    a probe of an http:// URL              raw
    a range of an http:// URL              raw, unless its origin once framed a range's
                                           body with a Transfer-Encoding: aiohttp from
                                           then on (``on_framed_body``)
    =====================================  ============================================

    A range whose raw answer turns out to be framed (``RawUnsupported``, raised before any
    byte is yielded) is repeated through aiohttp by the caller.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from yarl import URL

from swarmget.core.ranges import Chunk

__all__ = ["Answer", "Purpose", "Route", "Transport", "TransportChoice", "raw_can_fetch"]


class Answer(Protocol):
    """A response whose head was read."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def body(self, expected: int, what: str | None = None) -> AsyncIterator[Chunk]:
        """The body's chunks: exactly ``expected`` bytes or an error (``what`` names the
        body in error messages)."""
        ...


class Transport(Protocol):
    """Sends one request (no redirects followed, no decompression) and owns its answer:
    leaving the block releases the connection for reuse if the body was read to the end,
    else closes it."""

    def request(
        self, method: str, url: str, headers: Mapping[str, str], what: str
    ) -> AbstractAsyncContextManager[Answer]: ...


class Route(enum.Enum):
    RAW = "raw"
    AIOHTTP = "aiohttp"


class Purpose(enum.Enum):
    PROBE = "probe"  # HEAD or GET bytes=0-0, body never read
    RANGE = "range"  # GET with Range, the body read
    STREAM = "stream"  # the whole file, without Range
    REVALIDATE = "revalidate"  # a conditional HEAD


def raw_can_fetch(url: str) -> bool:
    """True for an ``http://`` URL with a host and without user or password in it."""
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


class TransportChoice:
    """Which transport serves a request (the table in the module docstring). Holds the one
    piece of state: the origins (``scheme://host:port``) whose ranges stay on aiohttp."""

    def __init__(self, *, raw_available: bool) -> None:
        self.raw_available = raw_available
        self._framed: set[str] = set()

    def route(self, purpose: Purpose, url: str) -> Route:
        if not self.raw_available or purpose in (Purpose.STREAM, Purpose.REVALIDATE):
            return Route.AIOHTTP
        if not raw_can_fetch(url):
            return Route.AIOHTTP
        if purpose is Purpose.RANGE and _origin(url) in self._framed:
            return Route.AIOHTTP
        return Route.RAW

    def on_framed_body(self, url: str) -> None:
        """The origin of ``url`` framed a range's body with a Transfer-Encoding (the raw
        client leaves decoding to aiohttp): its ranges go to aiohttp from now on."""
        self._framed.add(_origin(url))

    def aiohttp_only(self) -> frozenset[str]:
        """The origins whose ranges were moved to aiohttp (for statistics and tests)."""
        return frozenset(self._framed)


def _origin(url: str) -> str:
    return str(URL(url).origin())
