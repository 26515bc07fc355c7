"""Prometheus metrics, read from live state at scrape time.

Each service (node, hub, relay) registers one collector on a registry of its own (no global
state, so several services in one process — tests — do not mix). The collectors compute
every value from the objects that already keep the numbers (the download manager, the
helper service, the relay), so nothing is counted twice and nothing can drift. Counts of
events (stalls, bans ...) are the download manager's ``EventCounters``, incremented when
each event happens (so they never go down); the states listed are every ``DownloadState``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmget.core.lifecycle import DownloadState

if TYPE_CHECKING:
    from swarmget.node.downloads import DownloadManager
    from swarmget.node.helper import HelperService
    from swarmget.relay.service import Relay

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeCollector(Collector):
    def __init__(self, node_id: str, downloads: DownloadManager, helper: HelperService) -> None:
        self._node_id = node_id
        self._downloads = downloads
        self._helper = helper

    def collect(self) -> Iterable[Metric]:
        own = peers = reassigned = 0
        states: dict[DownloadState, int] = {}
        for record in self._downloads.records.values():
            states[record.state] = states.get(record.state, 0) + 1
            download = record.download
            if download is None:
                continue
            for s in download.statistics().sources:
                if s.source_id == self._node_id:
                    own += s.claimed
                else:
                    peers += s.claimed
            reassigned += download.reassigned_bytes()
        counted = self._downloads.counters  # counted as the events happened
        yield _counter("swarmget_bytes_from_origin", "Bytes this node fetched itself", own)
        yield _counter("swarmget_bytes_from_peers", "Bytes helpers delivered to us", peers)
        yield _counter(
            "swarmget_bytes_served_to_peers",
            "Bytes this node streamed to requesters",
            self._helper.stats.bytes_served,
        )
        yield _counter("swarmget_reassigned_bytes", "Bytes given back after failures", reassigned)
        yield _counter("swarmget_stalls", "Leases revoked as stalled", counted.stalls)
        yield _counter("swarmget_bans", "Sources banned from a download", counted.bans)
        yield _counter("swarmget_stream_failures", "Streams that failed", counted.stream_failures)
        yield _counter("swarmget_bad_data", "Ranges that failed a check", counted.bad_data)
        by_state = GaugeMetricFamily("swarmget_downloads", "Downloads by state", labels=["state"])
        for state in DownloadState:
            by_state.add_metric([state.value], states.get(state, 0))
        yield by_state
        yield _gauge("swarmget_helper_streams", "Streams served now", self._helper.active())
        yield _counter(
            "swarmget_helper_refusals",
            "Range requests refused (429/503)",
            self._helper.stats.refused,
        )


class RelayCollector(Collector):
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def collect(self) -> Iterable[Metric]:
        stats = self._relay.statistics()
        yield _counter(
            "swarmget_relay_origin_downloads", "Files downloaded from origins",
            stats.origin_downloads,
        )  # fmt: skip
        yield _counter("swarmget_relay_hits", "Fetches served from the cache", stats.hits)
        yield _gauge("swarmget_relay_fetching", "Fetches in progress", stats.fetching)


class HubMetrics:
    """The hub's registered nodes (read from the store at scrape time) and how long
    heartbeats take to record."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.nodes = Gauge(
            "swarmget_hub_registered_nodes", "Live nodes in the registry", registry=self.registry
        )
        self.heartbeat = Histogram(
            "swarmget_hub_heartbeat_seconds",
            "Time to record a heartbeat",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def handler(
        self, live_nodes: Callable[[], Awaitable[int]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            self.nodes.set(await live_nodes())
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        return handle


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def metrics_handler(*collectors: Collector) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving the collectors in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    return handle
