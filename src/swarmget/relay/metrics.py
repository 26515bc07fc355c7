"""The relay's Prometheus metrics, read from ``Relay.statistics()`` at scrape time."""

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
            "swarmget_relay_origin_downloads", "Files downloaded from origins",
            stats.origin_downloads,
        )  # fmt: skip
        yield counter("swarmget_relay_hits", "Fetches served from the cache", stats.hits)
        yield gauge("swarmget_relay_fetching", "Fetches in progress", stats.fetching)
