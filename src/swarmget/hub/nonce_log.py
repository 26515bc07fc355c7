"""Nonces of heartbeats and peers queries, persisted in batches with the liveness flush.

Theory of operation. Every signed request's nonce is recorded so that a request is accepted
once: in this process's ``ReplayCache`` (``swarmget.net.auth``: a replay to the same hub is
refused at once, from memory) and in the registry database that replicas share (a replay to
another replica is refused there). Writing the shared record before answering cost every
heartbeat a database transaction (group-committed, but still a wait in the writer's queue:
39-213 ms on average at 2,000-5,000 nodes, most of a heartbeat's latency).

``NonceLog`` takes that write off the answer for the two hot, harmless kinds of request,
heartbeats and peers queries, of the nodes this process serves (seen here within the TTL:
nodes stay with one replica, ``HubPool``): their nonces are kept in memory and written with
the liveness flush (``flush``: one ``INSERT ... ON CONFLICT DO NOTHING`` per up to
``FLUSH_CHUNK`` nonces, every ``swarmget.hub.liveness.flush_interval``, ≤ 1 s). Any other
request (registrations, departures, the content index, and a heartbeat or peers query of a
node this process does not serve, such as a replay sent to another replica) keeps the
synchronous write: its nonce is checked against the shared table before the answer.

What is weaker, exactly: a heartbeat or peers query replayed to *another* replica before its
nonce is flushed there (≤ 1 s plus a transaction after its first use), or to any hub after
the one that saw it was SIGKILLed before flushing (its last ≤ 1 s of nonces are lost), is
accepted once more, within the signature's time window (30 s); a flush that finds a nonce
recorded already counts it (``swarmget_hub_late_replays``) and logs it. A replay to the same
process is refused at once (its ``ReplayCache``), and one to another replica after the
flush is refused by the shared table, as before. Why the gap is safe:

* a replayed heartbeat moves its node's ``last_seen`` to the replica's clock: at most the
  flush delay later than the real heartbeat did (a node that stops is still expired at most
  ~1 s after its TTL), and it can change nothing else (the stats are the node's own, signed);
* a replayed peers query answers the group's members to whoever replays it: the same answer
  the eavesdropper who captured the request could read from the original response (the hub
  speaks plain HTTP on the LAN; the answer is not secret from the LAN, only bounded);
* neither can register a node, move it to another address, or remove it: those requests
  keep the synchronous shared write.

Memory: one small tuple per deferred request since the last flush (≤ 1 s of requests); over
``max_pending`` (a flush failing for long: the database away) a deferred kind falls back to
the synchronous write, so memory stays bounded and nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from swarmget.hub.admission import RequestKind
from swarmget.hub.batched_writes import Nonce
from swarmget.hub.metrics import HubMetrics

__all__ = ["DEFAULT_MAX_PENDING", "DEFERRED_KINDS", "NonceBatches", "NonceLog"]

log = logging.getLogger(__name__)

#: Requests whose nonce is written with the next flush instead of before the answer.
DEFERRED_KINDS = frozenset({RequestKind.HEARTBEAT, RequestKind.PEERS})
#: Nonces kept unwritten at most (then deferred kinds are written at once again).
DEFAULT_MAX_PENDING = 200_000


class NonceBatches(Protocol):
    """Where deferred nonces are written (the registry: ``SqlRegistryStore``)."""

    async def record_nonces(self, items: Sequence[Nonce], now: float) -> list[bool]:
        """Record ``items``; for each, whether it was new (False: recorded already, a
        replay). Expired nonces may be swept first. May raise ``StorageError``."""
        ...


class NonceLog:
    """Deferred nonces of one hub process (see module doc). Not thread-safe (one loop)."""

    def __init__(
        self,
        store: NonceBatches,
        metrics: HubMetrics,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        """``metrics.late_replays`` counts the nonces a flush found recorded already:
        replays accepted within the flush delay."""
        self._store = store
        self._metrics = metrics
        self._max_pending = max_pending
        self._pending: list[Nonce] = []
        #: nonces put back by a flush cancelled while it wrote them (a hub stopping): the
        #: database may have them already, so finding them there is not a replay
        self._maybe_written: set[Nonce] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def defer(self, kind: RequestKind, node_id: str, nonce: str, expires_at: float) -> bool:
        """Keep the nonce of a request of ``kind`` for the next flush when the kind allows
        (``DEFERRED_KINDS``); False: the caller writes it at once (another kind, or too
        many pending)."""
        if kind not in DEFERRED_KINDS or len(self._pending) >= self._max_pending:
            return False
        self._pending.append(Nonce(node_id, nonce, expires_at))
        return True

    async def flush(self, now: float) -> int:
        """Write the pending nonces; returns how many. On a failure (``StorageError``) they
        stay pending, for the next flush."""
        pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            fresh = await self._store.record_nonces(pending, now)
        except BaseException as exc:
            self._pending = pending + self._pending
            if not isinstance(exc, Exception):  # cancelled: the write may have been done
                self._maybe_written.update(pending)
            raise
        maybe, self._maybe_written = self._maybe_written, set()
        late = [
            item for item, new in zip(pending, fresh, strict=True) if not new and item not in maybe
        ]
        if late:
            self._metrics.late_replays += len(late)
            shown = ", ".join(sorted({item.node_id for item in late})[:10])
            log.warning("%d request(s) were replayed within a flush (from %s)", len(late), shown)
        return len(pending)
