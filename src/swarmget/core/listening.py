"""Limits on what clients of our servers may hold: the decisions, without sockets or clocks.

``ListenLimits`` says how long a client may take to send a request and how many connections
it may hold (``swarmget.net.serve`` explains each and enforces the timeouts);
``ConnectionTable`` counts open connections by client address and says whether one more may
open, or why not (``Refusal``). Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from swarmget.core.addresses import IPAddress, IPNetwork
from swarmget.core.forwarded import is_trusted

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_PER_ADDRESS",
    "ConnectionTable",
    "ListenLimits",
    "Refusal",
]

DEFAULT_HEAD_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 75.0
DEFAULT_PER_ADDRESS = 64


@dataclass(frozen=True, kw_only=True)
class ListenLimits:
    """How long a client may take to send a request, and how many connections it may hold
    (see ``swarmget.net.serve``)."""

    head_timeout: float = DEFAULT_HEAD_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    per_address: int = DEFAULT_PER_ADDRESS
    max_connections: int | None = None  # None: half the soft RLIMIT_NOFILE
    uncounted: tuple[IPNetwork, ...] = ()  # no per-address cap (trusted reverse proxies)

    def __post_init__(self) -> None:
        if min(self.head_timeout, self.body_timeout, self.idle_timeout) <= 0:
            raise ValueError("listen timeouts must be positive")
        if self.per_address < 1 or (self.max_connections is not None and self.max_connections < 1):
            raise ValueError("connection limits must be at least 1")


class Refusal(enum.Enum):
    """Why a new connection was closed at once."""

    ADDRESS_FULL = "too many connections from this address"
    SERVER_FULL = "too many connections in all"


class ConnectionTable:
    """Open connections by client address: whether one more may open (bookkeeping only)."""

    def __init__(self, *, per_address: int, total: int, uncounted: tuple[IPNetwork, ...]):
        self._per_address = per_address
        self._total = total
        self._uncounted = uncounted
        self._open: Counter[IPAddress | None] = Counter()

    def admit(self, client: IPAddress | None) -> Refusal | None:
        """Count a new connection from ``client``, or say why it may not open."""
        if self._open.total() >= self._total:
            return Refusal.SERVER_FULL
        if (
            client is not None
            and self._open[client] >= self._per_address
            and not is_trusted(client, self._uncounted)
        ):
            return Refusal.ADDRESS_FULL
        self._open[client] += 1
        return None

    def release(self, client: IPAddress | None) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    def open_from(self, client: IPAddress | None) -> int:
        return self._open[client]
