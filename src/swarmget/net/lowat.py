"""Fewer, larger reads from a slow socket: ``SO_RCVLOWAT`` sized to the stream's rate.

Through a capped link a TCP stream delivers a packet or two at a time, and the event loop
wakes, reads and parses for each: at a few MiB/s that is thousands of wake-ups a second,
and most of swarmget's CPU time. Linux lets a socket say "not readable until N bytes are
queued" (``SO_RCVLOWAT``, honoured by epoll). ``ReadCoalescer`` sets N to about
``latency`` seconds of the stream's measured rate (rounded down to a power of two, so a
rate that wobbles does not cost a ``setsockopt`` per read), at most ``max_mark``, and never
more than what is left of the response body (the kernel would otherwise sit on the last
bytes, since a keep-alive connection sends no FIN). Before the connection goes back to the
pool the mark is reset to 1, so the next response's headers are not held back.

Two settings: ``LATENCY``/``MAX_LOWAT`` (50 ms, 64 KiB) by default, for streams whose bytes
are passed on at once (a helper forwarding what the origin sends); and
``BULK_LATENCY``/``BULK_MAX_LOWAT`` (500 ms, 256 KiB) for the requester's streams from
its peers, which only go to the part file: there every wake-up of the event loop costs
the same Python work (aiohttp's parser, the body iterator, the scheduler's ``on_data``)
whatever it brings (issue #17; measured in bench/README.md, "The receive path measured":
30-40 % fewer chunks per MiB, ~12 % less CPU with long ranges; with short ranges the cost
per range dominates). A connection keeps its bulk coalescer, and the rate it measured, from
one response to the next (``ReadCoalescer.bulk``). The scheduler's silence and stall rules
measure a source's usual gaps between reports, so a report every 500 ms does not look like
a stall. Half a second rather than the 250 ms of before: a helper capped at 2 MiB/s over 3
streams (0.67 MiB/s each) was read 128 KiB at a time, now 256 KiB (44 % fewer reads of helper
streams, 11.1 -> 7.0 reads per MiB in all, 2-8 % less CPU in the requester: bench/README.md,
"Half-second marks"); a stream of 1 MiB/s or more already reached ``BULK_MAX_LOWAT`` and reads
as before, so the LAN testbed's helpers (1.6 MiB/s per stream) are not changed by it.

The kernel also wakes the reader when the receive window runs low, so a large mark
cannot deadlock a stream; a stream that slows down is re-measured on its next read. One
that slows down sharply keeps its old mark until then: below ``max_mark`` bytes per stall
timeout it is ended as stalled (a source that slow is of no use to a download anyway).
Elsewhere (no ``SO_RCVLOWAT``, not a TCP socket) this does nothing.
"""

from __future__ import annotations

import contextlib
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["BULK_LATENCY", "BULK_MAX_LOWAT", "LATENCY", "MAX_LOWAT", "ReadCoalescer"]

MAX_LOWAT = 64 * 1024
LATENCY = 0.05  # seconds of data we let the kernel collect before waking us
#: the same for bulk streams (bytes that only go to disk: the requester's peer streams)
BULK_MAX_LOWAT = 256 * 1024
BULK_LATENCY = 0.5
_MEASURE_EVERY = 0.2  # seconds between rate samples
_SO_RCVLOWAT: int | None = getattr(socket, "SO_RCVLOWAT", None)
#: the bulk coalescer of each connection (transport) that has one, while it lives
_BULK: weakref.WeakKeyDictionary[Any, ReadCoalescer] = weakref.WeakKeyDictionary()


class ReadCoalescer:
    """Adjusts one socket's receive low-water mark as a response body is read."""

    def __init__(
        self,
        sock: Any,
        clock: Callable[[], float] = time.monotonic,
        *,
        latency: float = LATENCY,
        max_mark: int = MAX_LOWAT,
    ) -> None:
        self._sock = sock if _SO_RCVLOWAT is not None and _is_tcp(sock) else None
        self._clock = clock
        self._latency = latency
        self._max_mark = max_mark
        self._mark = 1
        self._rate = 0.0
        self._t0 = clock()
        self._seen0 = 0

    @classmethod
    def for_transport(
        cls, transport: Any, *, latency: float = LATENCY, max_mark: int = MAX_LOWAT
    ) -> ReadCoalescer:
        sock = transport.get_extra_info("socket") if transport is not None else None
        return cls(sock, latency=latency, max_mark=max_mark)

    @classmethod
    def bulk(cls, transport: Any) -> ReadCoalescer:
        """The bulk setting's coalescer of ``transport``'s socket, for one more response
        body on it: the same one for every response on a keep-alive connection, so the rate
        measured during the last body sizes the next one's reads from its first byte (a
        peer stream's range lasts a second or less: measured anew each time, most of it
        would be read at the mark of 1)."""
        try:
            kept = _BULK.get(transport)
        except TypeError:  # not weakly referable, not hashable: a coalescer for this body
            kept = None
        if kept is None:
            kept = cls.for_transport(transport, latency=BULK_LATENCY, max_mark=BULK_MAX_LOWAT)
            with contextlib.suppress(TypeError):
                _BULK[transport] = kept
        kept.body_starts()
        return kept

    def body_starts(self) -> None:
        """A new response body begins (``seen`` counts from 0 again); the rate measured
        so far is kept."""
        self._t0, self._seen0 = self._clock(), 0

    @property
    def mark(self) -> int:
        return self._mark

    def before_read(self, seen: int, remaining: int) -> None:
        """``seen``: body bytes received so far; ``remaining``: not yet received."""
        if self._sock is None:
            return
        now = self._clock()
        if now - self._t0 >= _MEASURE_EVERY:
            self._rate = (seen - self._seen0) / (now - self._t0)
            self._t0, self._seen0 = now, seen
        by_rate = min(self._max_mark, int(self._rate * self._latency))
        # a power of two (1 << 0 == 1 for nothing measured yet); what is left, exactly
        self._set(max(1, min(1 << max(0, by_rate.bit_length() - 1), remaining)))

    def reset(self) -> None:
        """Back to the default (wake for any byte): before the connection is reused."""
        if self._sock is not None:
            self._set(1)

    def _set(self, mark: int) -> None:
        if mark == self._mark or self._sock is None:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVLOWAT, mark)
        except OSError:
            self._sock = None  # closed, or not supported here: read as usual
            return
        self._mark = mark


def _is_tcp(sock: Any) -> bool:
    try:
        return bool(
            sock is not None
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
        )
    except (AttributeError, OSError):
        return False
