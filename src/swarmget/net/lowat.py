"""Fewer, larger reads from a slow socket: ``SO_RCVLOWAT`` sized to the stream's rate.

Through a capped link a TCP stream delivers a packet or two at a time, and the event loop
wakes, reads and parses for each: at a few MiB/s that is thousands of wake-ups a second,
and most of swarmget's CPU time. Linux lets a socket say "not readable until N bytes are
queued" (``SO_RCVLOWAT``, honoured by epoll). ``ReadCoalescer`` sets N to about
``LATENCY`` seconds of the stream's measured rate, at most ``MAX_LOWAT``, and never more
than what is left of the response body (the kernel would otherwise sit on the last bytes,
since a keep-alive connection sends no FIN). Before the connection goes back to the pool
the mark is reset to 1, so the next response's headers are not held back.

The kernel also wakes the reader when the receive window runs low, so a large mark
cannot deadlock a stream; a stream that slows down is re-measured on every read.
Elsewhere (no ``SO_RCVLOWAT``, not a TCP socket) this does nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LATENCY", "MAX_LOWAT", "ReadCoalescer"]

MAX_LOWAT = 64 * 1024
LATENCY = 0.05  # seconds of data we let the kernel collect before waking us
_MEASURE_EVERY = 0.2  # seconds between rate samples
_SO_RCVLOWAT: int | None = getattr(socket, "SO_RCVLOWAT", None)


class ReadCoalescer:
    """Adjusts one socket's receive low-water mark as a response body is read."""

    def __init__(self, sock: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._sock = sock if _SO_RCVLOWAT is not None and _is_tcp(sock) else None
        self._clock = clock
        self._mark = 1
        self._rate = 0.0
        self._t0 = clock()
        self._seen0 = 0

    @classmethod
    def for_transport(cls, transport: Any) -> ReadCoalescer:
        sock = transport.get_extra_info("socket") if transport is not None else None
        return cls(sock)

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
        want = max(1, min(MAX_LOWAT, int(self._rate * LATENCY), remaining))
        self._set(want)

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
