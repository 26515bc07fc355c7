"""Prometheus plumbing shared by every service: the text format's content type, metric
families, a histogram tally (``net.tally``, re-exported) and an aiohttp handler serving
collectors. Each service keeps its
own collector next to the state it reads (``node/metrics.py``, ``hub/metrics.py``,
``relay/metrics.py``), on a registry of its own (no global state, so several services in one
process — tests — do not mix), with the default process, platform and GC collectors beside it.

Names follow the Prometheus conventions: ``swarmget_`` first, the unit as a suffix
(``_bytes``, ``_seconds``) and ``_total`` last on counters. Counters are counted when the
event happens (never recomputed from state that can shrink), so they only go up."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from swarmget.net.tally import DURATION_BUCKETS, HistogramTally

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "HistogramTally",
    "counter",
    "gauge",
    "labelled_counter",
    "metrics_handler",
    "service_registry",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def labelled_counter(
    name: str, doc: str, label: str, values: Iterable[tuple[str, float]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in values:
        family.add_metric([key], value)
    return family


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class CollectorSettings(Collector):
    """How the garbage collector is set (``net.serving_gc``): the objects frozen out of its
    sight and its thresholds by generation (the default GC collector counts collections)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield gauge(
            "swarmget_gc_frozen_objects",
            "Objects in the collector's permanent generation (never walked: net.serving_gc)",
            gc.get_freeze_count(),
        )
        family = GaugeMetricFamily(
            "swarmget_gc_threshold",
            "The collector's threshold per generation (0: young allocations, then counts "
            "of the generation below)",
            labels=["generation"],
        )
        for generation, threshold in enumerate(gc.get_threshold()):
            family.add_metric([str(generation)], threshold)
        yield family


def service_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of ``collectors`` plus the default process, platform and GC collectors
    and the collector's settings (``CollectorSettings``)."""
    registry = CollectorRegistry(auto_describe=False)
    defaults = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, CollectorSettings())
    for collector in (*defaults, *collectors):
        registry.register(collector)
    return registry


def metrics_handler(*collectors: Collector) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving the collectors in the Prometheus text format."""
    registry = service_registry(*collectors)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    return handle
