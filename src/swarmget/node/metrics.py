"""The node's Prometheus metrics, read from the download manager and the helper service at
scrape time. Counts of events (stalls, bans ...) are the download manager's
``EventCounters``, incremented when each event happens (so they never go down); the states
listed are every ``DownloadState``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmget.core.lifecycle import DownloadState
from swarmget.net.metrics import counter, gauge

if TYPE_CHECKING:
    from swarmget.node.downloads import DownloadManager
    from swarmget.node.helper import HelperService


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
        yield counter("swarmget_bytes_from_origin", "Bytes this node fetched itself", own)
        yield counter("swarmget_bytes_from_peers", "Bytes helpers delivered to us", peers)
        yield counter(
            "swarmget_bytes_served_to_peers",
            "Bytes this node streamed to requesters",
            self._helper.stats.bytes_served,
        )
        yield counter("swarmget_reassigned_bytes", "Bytes given back after failures", reassigned)
        yield counter("swarmget_stalls", "Leases revoked as stalled", counted.stalls)
        yield counter("swarmget_bans", "Sources banned from a download", counted.bans)
        yield counter("swarmget_stream_failures", "Streams that failed", counted.stream_failures)
        yield counter("swarmget_bad_data", "Ranges that failed a check", counted.bad_data)
        yield counter(
            "swarmget_refetches",
            "Times bytes were given back to be fetched again (bad data, a lease lost)",
            counted.refetches,
        )
        by_state = GaugeMetricFamily("swarmget_downloads", "Downloads by state", labels=["state"])
        for state in DownloadState:
            by_state.add_metric([state.value], states.get(state, 0))
        yield by_state
        yield gauge("swarmget_helper_streams", "Streams served now", self._helper.active())
        yield counter(
            "swarmget_helper_refusals",
            "Range requests refused (429/503)",
            self._helper.stats.refused,
        )
