"""Prometheus plumbing shared by every service: the text format's content type, metric
families and an aiohttp handler serving collectors. Each service keeps its own collector
next to the state it reads (``node/metrics.py``, ``hub/metrics.py``, ``relay/metrics.py``),
on a registry of its own (no global state, so several services in one process — tests — do
not mix); values are read from live state at scrape time, so nothing is counted twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "counter", "gauge", "metrics_handler"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def metrics_handler(*collectors: Collector) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving the collectors in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    return handle
