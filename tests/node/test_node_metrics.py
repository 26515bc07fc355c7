"""The node's Prometheus collector: every download state listed, counters from counted events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from swarmget.core.events import EventCounters
from swarmget.core.lifecycle import DownloadState
from swarmget.node.metrics import NodeCollector


def scrape(downloads: Any) -> str:
    helper = SimpleNamespace(stats=SimpleNamespace(bytes_served=0, refused=0), active=lambda: 0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector("me", downloads, helper))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_every_state_is_listed_and_counters_come_from_counted_events() -> None:
    records = {
        "a": SimpleNamespace(state=DownloadState.STOPPED, download=None),
        "b": SimpleNamespace(state=DownloadState.DONE, download=None),
    }
    counted = EventCounters(stalls=2, bans=1, refetches=4)
    downloads = SimpleNamespace(records=records, counters=counted)
    text = scrape(downloads)
    for state in DownloadState:
        assert f'swarmget_downloads{{state="{state.value}"}}' in text
    assert 'swarmget_downloads{state="stopped"} 1.0' in text
    assert "swarmget_stalls_total 2.0" in text
    assert "swarmget_bans_total 1.0" in text
    assert "swarmget_refetches_total 4.0" in text


def test_counters_do_not_go_down_when_downloads_are_forgotten() -> None:
    counters = EventCounters(stalls=3, bans=2)
    downloads = SimpleNamespace(records={}, counters=counters)
    assert "swarmget_stalls_total 3.0" in scrape(downloads)
    assert "swarmget_bans_total 2.0" in scrape(downloads)
