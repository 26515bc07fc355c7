"""The nonces a receiver of signed requests has seen: ``ReplayCache``.

A signed request (``swarmget.core.auth``) carries a nonce that its sender never reuses; a
receiver that remembers the nonces of the last ``window`` seconds refuses a request sent
twice. The cache is bounded, and its capacity is shared out per sender and per source
address so that one member flooding it refuses only its own requests (see the class).

This module is pure: the time comes in as ``now``.
"""

from __future__ import annotations

import heapq

from swarmget.core.auth import DEFAULT_WINDOW
from swarmget.core.errors import ReplayCacheFull, ReplayedRequest

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_SENDERS",
    "DEFAULT_PER_SENDER",
    "DEFAULT_SENDERS_PER_ORIGIN",
    "ReplayCache",
]

#: Live nonces a ReplayCache keeps per sender (node id): 2048 per 30 s is ~68 requests/s.
DEFAULT_PER_SENDER = 2048
#: Senders (node ids) a ReplayCache keeps nonces for at once: a hub hears from every live
#: node in every window, so this is far above any real swarm (the per-address share below is
#: what stops one member from filling it: that takes 4,096 addresses).
DEFAULT_MAX_SENDERS = 65_536
#: Live nonces a ReplayCache keeps in all (memory: ~150 bytes each); one address's senders
#: can hold at most 16 x 2048 of them, so filling it takes 16 addresses flooding at full rate.
DEFAULT_MAX_ENTRIES = 524_288
#: Senders one source address may have in a ReplayCache at once (minting keys is cheap).
DEFAULT_SENDERS_PER_ORIGIN = 16


class ReplayCache:
    """Remembers the (node id, nonce) pairs of recent requests and refuses a second use.

    An entry is kept until its request's timestamp leaves the window (``timestamp +
    window``): after that the clock-skew check refuses the request anyway. A full cache
    refuses new requests rather than forget a nonce that could still be replayed, and its
    capacity is shared out so that one member cannot lock the others out:

    * each sender (node id) keeps at most ``per_sender`` live nonces: a sender over that
      gets ``ReplayCacheFull`` until its own entries expire; nobody else notices;
    * minting node ids is cheap (a new key), so one source address (``origin``) may have
      at most ``senders_per_origin`` senders in the cache at once;
    * at most ``max_senders`` senders and ``max_entries`` nonces are kept at all (which
      bounds memory); filling either takes ``max_senders / senders_per_origin`` addresses,
      or ``max_entries / (senders_per_origin * per_sender)`` addresses flooding at full rate.

    A sender counts against the origin it first came from until its entries expire.
    """

    __slots__ = (
        "_expiry",
        "_origin_of",
        "_seen",
        "_senders_of",
        "max_entries",
        "max_senders",
        "per_sender",
        "senders_per_origin",
        "window",
    )

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        per_sender: int = DEFAULT_PER_SENDER,
        max_senders: int = DEFAULT_MAX_SENDERS,
        senders_per_origin: int = DEFAULT_SENDERS_PER_ORIGIN,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if window <= 0 or min(per_sender, max_senders, senders_per_origin, max_entries) <= 0:
            raise ValueError("window and capacities must be positive")
        self.max_entries = max_entries
        self.window = window
        self.per_sender = per_sender
        self.max_senders = max_senders
        self.senders_per_origin = senders_per_origin
        self._seen: dict[str, set[str]] = {}  # node id -> its live nonces
        self._origin_of: dict[str, str] = {}  # node id -> the origin it counts against
        self._senders_of: dict[str, set[str]] = {}  # origin -> its node ids
        self._expiry: list[tuple[float, str, str]] = []  # heap of (expires_at, node, nonce)

    def __len__(self) -> int:
        return sum(len(nonces) for nonces in self._seen.values())

    def senders(self) -> int:
        return len(self._seen)

    def check_and_remember(
        self,
        node_id: str,
        nonce: str,
        *,
        timestamp: float,
        now: float,
        origin: str | None = None,
    ) -> None:
        """Raise ``ReplayedRequest`` if this (node, nonce) was seen and has not expired,
        ``ReplayCacheFull`` if the sender (or its origin) is over its share; else remember."""
        self.expire(now)
        nonces = self._seen.get(node_id)
        if nonces is not None and nonce in nonces:
            raise ReplayedRequest("replayed request: this nonce was already used")
        if nonces is None:
            nonces = self._admit(node_id, origin)
        elif len(nonces) >= self.per_sender:
            raise ReplayCacheFull(
                f"node {node_id} sent more than {self.per_sender} requests within "
                f"{self.window:.0f} s; try again shortly"
            )
        if len(self._expiry) >= self.max_entries:  # one heap entry per live nonce
            if not nonces:
                self._forget_sender(node_id)
            raise ReplayCacheFull("too many requests within one window; try again shortly")
        nonces.add(nonce)
        heapq.heappush(self._expiry, (timestamp + self.window, node_id, nonce))

    def _admit(self, node_id: str, origin: str | None) -> set[str]:
        """A new sender's (empty) share, if there is room for it."""
        if len(self._seen) >= self.max_senders:
            raise ReplayCacheFull("too many senders within one window; try again shortly")
        if origin is not None:
            siblings = self._senders_of.setdefault(origin, set())
            if len(siblings) >= self.senders_per_origin:
                raise ReplayCacheFull(
                    f"more than {self.senders_per_origin} node ids from {origin} within "
                    f"{self.window:.0f} s; try again shortly"
                )
            siblings.add(node_id)
            self._origin_of[node_id] = origin
        nonces: set[str] = set()
        self._seen[node_id] = nonces
        return nonces

    def expire(self, now: float) -> None:
        """Forget every entry whose request would now be refused for its age."""
        while self._expiry and self._expiry[0][0] < now:
            _, node_id, nonce = heapq.heappop(self._expiry)
            nonces = self._seen.get(node_id)
            if nonces is None:
                continue
            nonces.discard(nonce)
            if not nonces:
                self._forget_sender(node_id)

    def _forget_sender(self, node_id: str) -> None:
        del self._seen[node_id]
        origin = self._origin_of.pop(node_id, None)
        if origin is not None:
            siblings = self._senders_of[origin]
            siblings.discard(node_id)
            if not siblings:
                del self._senders_of[origin]
