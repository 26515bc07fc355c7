"""The node's Prometheus metrics. Counters are counted as things happen: bytes as they come
in (``node.tally.DownloadTally.received``, called by each download for every chunk),
finished downloads as they end (``DownloadTally.finished``), events (stalls, bans ...) by
the download manager's ``EventCounters``, refusals by the helper service; so they never go
down, even when a download is forgotten or its bad bytes are given back. Gauges (downloads
by state, streams served now) are read from live state at scrape time; every
``DownloadState`` is listed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmget.core.byte_sources import SourceKind
from swarmget.core.lifecycle import DownloadState
from swarmget.net.metrics import counter, gauge, labelled_counter

if TYPE_CHECKING:
    from swarmget.node.daily import DailyBytes
    from swarmget.node.downloads import DownloadManager
    from swarmget.node.helper_service import HelperService
    from swarmget.node.holder import HolderService
    from swarmget.node.share_cache import ShareCache

#: the results a finished download is counted under (``swarmget_downloads_finished_total``)
FINISHED_RESULTS = (DownloadState.DONE, DownloadState.FAILED, DownloadState.CANCELLED)
#: the reasons a helper refuses a range request (the peer error codes it answers with)
REFUSAL_REASONS = ("busy", "quota", "draining", "bad_request")


class NodeCollector(Collector):
    def __init__(
        self,
        node_id: str,
        downloads: DownloadManager,
        helper: HelperService,
        daily: DailyBytes | None = None,
        *,
        holder: HolderService | None = None,
        share_cache: ShareCache | None = None,
    ) -> None:
        self._node_id = node_id
        self._downloads = downloads
        self._helper = helper
        self._daily = daily
        self._holder = holder
        self._share_cache = share_cache

    def collect(self) -> Iterable[Metric]:
        yield from self._bytes()
        yield from self._events()
        yield from self._downloads_now()
        yield from self._helping()
        yield from self._sharing()

    def _bytes(self) -> Iterable[Metric]:
        tally = self._downloads.tally
        yield counter(
            "swarmget_origin_received_bytes",
            "Bytes this node's downloads received from origins",
            tally.origin_bytes,
        )
        yield counter(
            "swarmget_peer_received_bytes",
            "Bytes this node's downloads received from helpers",
            tally.peer_bytes,
        )
        yield labelled_counter(
            "swarmget_download_received_bytes",
            "Bytes this node's downloads received, by kind of source (origin: its own "
            "connections, helper, lan: LAN holders, check: from the origin to check others)",
            "source",
            ((k.value, tally.by_source[k]) for k in SourceKind),
        )
        yield counter(
            "swarmget_helper_sent_bytes",
            "Bytes this node streamed to requesters as a helper",
            self._helper.stats.bytes_served,
        )
        if self._daily is not None:  # the history's total plus this run's: kept across restarts
            yield counter(
                "swarmget_origin_saved_bytes",
                "Bytes this node received from peers instead of over its own origin link, "
                "since its history began",
                self._daily.saved_total(),
            )
            yield counter(
                "swarmget_group_saved_bytes",
                "Origin bytes this node saved its group since its history began: bytes it "
                "served to LAN peers from its holdings plus bytes it received from LAN holders",
                self._daily.group_saved_total(),
            )
            yield gauge(
                "swarmget_group_saved_today_bytes",
                "Origin bytes this node saved its group today (the UTC day of the daily quota)",
                self._daily.group_saved_today(),
            )

    def _events(self) -> Iterable[Metric]:
        counted = self._downloads.counters  # counted as the events happened
        yield counter("swarmget_stalls", "Leases revoked as stalled", counted.stalls)
        yield counter("swarmget_bans", "Sources banned from a download", counted.bans)
        yield counter("swarmget_stream_failures", "Streams that failed", counted.stream_failures)
        yield counter("swarmget_bad_data", "Ranges that failed a check", counted.bad_data)
        yield counter(
            "swarmget_refetches",
            "Times bytes were given back to be fetched again (bad data, a lease lost)",
            counted.refetches,
        )
        yield counter(
            "swarmget_refetched_bytes",
            "Bytes given back to be fetched again (bad data, a lease lost)",
            counted.refetched_bytes,
        )

    def _downloads_now(self) -> Iterable[Metric]:
        states: dict[DownloadState, int] = {}
        for record in self._downloads.records.values():
            states[record.state] = states.get(record.state, 0) + 1
        by_state = GaugeMetricFamily("swarmget_downloads", "Downloads by state", labels=["state"])
        for state in DownloadState:
            by_state.add_metric([state.value], states.get(state, 0))
        yield by_state
        durations = self._downloads.tally.durations
        results = [r.value for r in FINISHED_RESULTS]
        yield labelled_counter(
            "swarmget_downloads_finished",
            "Downloads that ended, by result",
            "result",
            ((r, durations.count(r)) for r in results),
        )
        yield durations.family(
            "swarmget_download_duration_seconds",
            "Time from a download's start to its end, by result",
            "result",
            results,
        )

    def _helping(self) -> Iterable[Metric]:
        stats = self._helper.stats
        yield gauge("swarmget_helper_streams", "Streams served now", self._helper.active())
        reasons = dict.fromkeys(REFUSAL_REASONS, 0) | stats.refusals
        yield labelled_counter(
            "swarmget_helper_refusals",
            "Range requests refused, by reason (busy, quota, draining, bad_request)",
            "reason",
            sorted(reasons.items()),
        )
        yield counter(
            "swarmget_helper_lent_slots",
            "Streams admitted on a slot lent by one of the same requester about to end",
            stats.lent,
        )
        yield labelled_counter(
            "swarmget_helper_warmups",
            "Origin connections opened ahead of a requester's first range (issue #14), by "
            "outcome (done: opened; unused: no range took it; failed: could not open, "
            "refused by the address policy included; spare: opened beside it for the "
            "requester's other streams; spare_used, spare_unused: taken by one, or closed)",
            "outcome",
            (
                ("done", stats.warm_done),
                ("unused", stats.warm_unused),
                ("failed", stats.warm_failed),
                ("spare", stats.warm_spares),
                ("spare_used", stats.warm_spares_used),
                ("spare_unused", stats.warm_spares_unused),
            ),
        )
        yield labelled_counter(
            "swarmget_helper_leads",
            "First ranges asked of the origin when a requester's health check named them, by "
            "outcome (used: a range request served it; unfit: its range request pinned "
            "something else, fetched anew; unused: nobody asked in time; unusable: no 206)",
            "outcome",
            (
                ("used", stats.lead_used),
                ("unfit", stats.lead_unfit),
                ("unused", stats.lead_unused),
                ("unusable", stats.lead_unusable),
            ),
        )

    def _sharing(self) -> Iterable[Metric]:
        """Fetch once per LAN (#15): bytes served to LAN peers from this node's disk (not
        counted in ``swarmget_helper_sent_bytes``, nor against the daily quota) and the
        share cache."""
        if self._holder is not None:
            yield counter(
                "swarmget_lan_served_bytes",
                "Bytes this node served to LAN peers from content it holds",
                self._holder.stats.lan_bytes_served,
            )
            yield counter(
                "swarmget_lan_quota_refusals",
                "LAN range requests refused: the daily LAN allowance was used up",
                self._holder.stats.lan_quota_refused,
            )
        if self._share_cache is not None:
            yield gauge(
                "swarmget_share_cache_bytes",
                "Bytes of finished downloads kept for LAN peers",
                self._share_cache.kept_bytes(),
            )
            yield counter(
                "swarmget_share_evictions",
                "Files the share cache stopped keeping (least recently used, over budget)",
                self._share_cache.evicted,
            )
