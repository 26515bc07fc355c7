"""The node's Prometheus collector: every download state listed, counters from counted
events, bytes and finished downloads counted as they happen, refusals by reason."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from swarmget.core.byte_sources import SourceKind
from swarmget.core.events import EventCounters
from swarmget.core.lifecycle import DownloadState
from swarmget.node.helper_service import HelperStats
from swarmget.node.metrics import NodeCollector
from swarmget.node.tally import DownloadTally


def scrape(downloads: Any, stats: HelperStats | None = None) -> str:
    helper = SimpleNamespace(stats=stats or HelperStats(), active=lambda: 0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector("me", downloads, helper))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def manager(records: dict[str, Any], counters: EventCounters, tally: DownloadTally) -> Any:
    return SimpleNamespace(records=records, counters=counters, tally=tally)


def test_every_state_is_listed_and_counters_come_from_counted_events() -> None:
    records = {
        "a": SimpleNamespace(state=DownloadState.STOPPED, download=None),
        "b": SimpleNamespace(state=DownloadState.DONE, download=None),
    }
    counted = EventCounters(stalls=2, bans=1, refetches=4)
    text = scrape(manager(records, counted, DownloadTally()))
    for state in DownloadState:
        assert f'swarmget_downloads{{state="{state.value}"}}' in text
    assert 'swarmget_downloads{state="stopped"} 1.0' in text
    assert "swarmget_stalls_total 2.0" in text
    assert "swarmget_bans_total 1.0" in text
    assert "swarmget_refetches_total 4.0" in text


def test_counters_do_not_go_down_when_downloads_are_forgotten() -> None:
    counters = EventCounters(stalls=3, bans=2)
    tally = DownloadTally()
    tally.received(SourceKind.ORIGIN, 1000)
    tally.received(SourceKind.HELPER, 500)
    tally.received(SourceKind.LAN, 300)
    tally.received(SourceKind.CHECK, 20)
    tally.finished(DownloadState.DONE, 2.0)
    text = scrape(manager({}, counters, tally))
    assert "swarmget_stalls_total 3.0" in text
    assert "swarmget_bans_total 2.0" in text
    assert "swarmget_origin_received_bytes_total 1000.0" in text
    assert "swarmget_peer_received_bytes_total 800.0" in text  # helpers and LAN holders
    for kind, n in (("origin", 1000), ("helper", 500), ("lan", 300), ("check", 20)):
        assert f'swarmget_download_received_bytes_total{{source="{kind}"}} {n}.0' in text
    assert 'swarmget_downloads_finished_total{result="done"} 1.0' in text


def test_finished_downloads_by_result_with_a_duration_histogram() -> None:
    tally = DownloadTally()
    tally.finished(DownloadState.DONE, 3.0)
    tally.finished(DownloadState.DONE, 40.0)
    tally.finished(DownloadState.FAILED, 0.05)
    text = scrape(manager({}, EventCounters(), tally))
    assert 'swarmget_downloads_finished_total{result="done"} 2.0' in text
    assert 'swarmget_downloads_finished_total{result="failed"} 1.0' in text
    assert 'swarmget_downloads_finished_total{result="cancelled"} 0.0' in text
    assert 'swarmget_download_duration_seconds_bucket{le="5.0",result="done"} 1.0' in text
    assert 'swarmget_download_duration_seconds_bucket{le="+Inf",result="done"} 2.0' in text
    assert 'swarmget_download_duration_seconds_count{result="done"} 2.0' in text
    assert 'swarmget_download_duration_seconds_sum{result="done"} 43.0' in text
    assert 'swarmget_download_duration_seconds_bucket{le="0.1",result="failed"} 1.0' in text


def test_helper_refusals_carry_their_reason() -> None:
    stats = HelperStats()
    stats.refuse("busy")
    stats.refuse("busy")
    stats.refuse("quota")
    text = scrape(manager({}, EventCounters(), DownloadTally()), stats)
    assert 'swarmget_helper_refusals_total{reason="busy"} 2.0' in text
    assert 'swarmget_helper_refusals_total{reason="quota"} 1.0' in text
    assert 'swarmget_helper_refusals_total{reason="draining"} 0.0' in text
    assert stats.refused == 3


def test_warm_ups_and_leads_by_outcome() -> None:
    stats = HelperStats(warm_done=3, warm_unused=1, warm_failed=2)
    stats.lead_used, stats.lead_unfit, stats.lead_unused, stats.lead_unusable = 4, 1, 2, 5
    text = scrape(manager({}, EventCounters(), DownloadTally()), stats)
    assert 'swarmget_helper_warmups_total{outcome="done"} 3.0' in text
    assert 'swarmget_helper_warmups_total{outcome="unused"} 1.0' in text
    assert 'swarmget_helper_warmups_total{outcome="failed"} 2.0' in text
    assert 'swarmget_helper_leads_total{outcome="used"} 4.0' in text
    assert 'swarmget_helper_leads_total{outcome="unfit"} 1.0' in text
    assert 'swarmget_helper_leads_total{outcome="unused"} 2.0' in text
    assert 'swarmget_helper_leads_total{outcome="unusable"} 5.0' in text
