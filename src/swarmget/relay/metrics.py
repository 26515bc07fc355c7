"""The relay's Prometheus metrics, read from ``Relay.statistics()`` at scrape time (its
counters are counted by the relay as each fetch is decided or done)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from swarmget.net.metrics import counter, gauge

if TYPE_CHECKING:
    from swarmget.relay.service import Relay


class RelayCollector(Collector):
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def collect(self) -> Iterable[Metric]:
        stats = self._relay.statistics()
        yield counter(
            "swarmget_relay_origin_downloads", "Files downloaded whole from origins",
            stats.origin_downloads,
        )  # fmt: skip
        yield counter("swarmget_relay_cache_hits", "Fetches served from the cache", stats.hits)
        yield counter(
            "swarmget_relay_cache_misses",
            "Fetches the cache could not serve (not cached, or changed at the origin)",
            stats.misses,
        )
        yield gauge("swarmget_relay_fetches_in_progress", "Fetches in progress", stats.fetching)
        yield gauge(
            "swarmget_relay_reserved_bytes",
            "Cache budget held by fetches in progress",
            stats.reserved_bytes,
        )
