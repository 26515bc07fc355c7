"""How the hub's writes go: batch sizes, time waiting for a turn, transaction times.

The store (``swarmget.hub.store``) and its group commits (``swarmget.hub.group_commit``)
observe into one ``WriteStats``; the hub's ``/metrics`` exports it (``swarmget.hub.metrics``):

* ``swarmget_hub_write_batch_size{kind}``: items per batch (heartbeats, nonces, liveness
  flushed);
* ``swarmget_hub_write_wait_seconds{kind}``: waiting, observed twice: once per item queued
  for a batch (from its submission to its batch's start: behind the previous batch), and once
  per transaction (the SQLite writers' turn and the connection pool's checkout);
* ``swarmget_hub_write_transaction_seconds{kind}``: BEGIN to COMMIT of one write.

``kind`` is one of ``KINDS``. An operator reads from them whether the hub waits (wait ≫
transaction: the pool or the writers' turn) or its database is slow (transaction).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

from swarmget.net.metrics import HistogramTally

__all__ = ["KINDS", "WriteStats"]

#: What a write is for: batched heartbeats, batched nonces, deferred nonces
#: (``swarmget.hub.nonce_log``), the liveness flush, the replica's own counter
#: (``swarmget.hub.replicas``), the rest.
KINDS = ("beats", "nonces", "nonce_log", "liveness", "register", "replicas", "other")
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WriteStats:
    """Histograms of the store's writes, by kind (see module doc)."""

    def __init__(self) -> None:
        self.sizes = HistogramTally(buckets=SIZE_BUCKETS)
        self.waits = HistogramTally(buckets=TIME_BUCKETS)
        self.transactions = HistogramTally(buckets=TIME_BUCKETS)

    def families(self) -> Iterable[Metric]:
        yield self.sizes.family(
            "swarmget_hub_write_batch_size", "Items written per batch", "kind", KINDS
        )
        yield self.waits.family(
            "swarmget_hub_write_wait_seconds",
            "Time from a write's submission to its transaction's start",
            "kind",
            KINDS,
        )
        yield self.transactions.family(
            "swarmget_hub_write_transaction_seconds", "Time from BEGIN to COMMIT", "kind", KINDS
        )
